"""Issue 11 (small): the sign-in page's Entra client-id question, explained for an
administrator with Microsoft's "Register an application" page, and not asked on the sandbox."""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask

from tests.helpers import page_text, signed_in
from webapp import create_app

REGISTER_APP = "https://learn.microsoft.com/entra/identity-platform/quickstart-register-app"
SANDBOX_INFO = {"authority": "https://127.0.0.1:9/tenant/", "client_id": "sandbox-client"}


def signin_page(data_dir: Path, sandbox: bool) -> str:
    config = {"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token"}
    if sandbox:
        config["SANDBOX_INFO"] = SANDBOX_INFO  # type: ignore[assignment]
    app: Flask = create_app(config)
    try:
        answer = signed_in(app).get("/signin")
        assert answer.status_code == 200
        return page_text(answer)
    finally:
        app.extensions["mailbox_sync.database"].dispose()


def test_a_real_tenant_is_asked_the_client_id_with_what_it_is_and_where_to_get_it(
    data_dir: Path,
) -> None:
    page = signin_page(data_dir, sandbox=False)
    assert 'data-testid="microsoft-folded"' not in page  # the question itself, open
    assert 'id="client_id"' in page and 'aria-describedby="client-id-help"' in page
    help_text = re.search(r'id="client-id-help"[^>]*>(.*?)</div>', page, re.S)
    assert help_text is not None
    assert "For your administrator" in help_text.group(1)
    assert "It is not a secret." in help_text.group(1)
    assert "App registrations, New registration" in help_text.group(1)
    assert f'href="{REGISTER_APP}"' in help_text.group(1)
    assert "Microsoft: Register an application" in help_text.group(1)
    # the Microsoft sign-in comes first; the sandbox only says it is not running
    assert page.index('id="signin-microsoft"') < page.index('id="sandbox-off"')


def test_on_the_sandbox_the_client_id_is_not_asked(data_dir: Path) -> None:
    page = signin_page(data_dir, sandbox=True)
    # the sandbox first; the tenant's sign-in folded away (closed) beneath it
    assert page.index('id="signin-sandbox-submit"') < page.index('id="signin-microsoft"')
    folded = re.search(r'<details class="card" id="signin-microsoft"[^>]*>', page)
    assert folded is not None and " open" not in folded.group(0)
    details = page[folded.end() : page.index("</details>")]
    assert 'id="client_id"' in details  # only inside the closed fold
    assert page.count('id="client_id"') == 1
    assert "Microsoft 365 instead</summary>" in page
