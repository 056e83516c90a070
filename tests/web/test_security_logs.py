"""Issue 14.5, logs: with `-v` (everything at DEBUG), neither msal's line with the authorization
code nor werkzeug's access log line with the one-time sign-in token shows them.

Both run the real thing: msal redeems a code at the sandbox identity provider, werkzeug serves
the app; the log is captured the way `run.py -v` sets it up (a root handler at DEBUG with
sync.redaction's filter on it).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
from werkzeug.serving import make_server

from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry
from sandbox.idp import SANDBOX_CLIENT_ID, IdentityServer
from sandbox.requestlog import RequestLog
from sync.auth import TokenProvider
from sync.redaction import MASK, RedactingFilter, redact
from tests.auth.helpers import ALICE, answer_of, sign_in
from webapp import create_app
from webapp.access import new_login_token


@pytest.fixture
def verbose_log() -> Iterator[io.StringIO]:
    """What `run.py -v` would print: the root logger at DEBUG, the redacting filter on."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    quiet = {name: logging.getLogger(name).level for name in ("werkzeug", "msal")}
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    for name, was in quiet.items():
        logging.getLogger(name).setLevel(was)


def test_msal_debug_line_does_not_show_the_authorization_code(
    verbose_log: io.StringIO, tmp_path: Path
) -> None:
    server = IdentityServer(
        TokenRegistry(), RequestLog(), FaultProfile(), tls_dir=str(tmp_path / "tls")
    )
    server.start()
    try:
        provider = TokenProvider(
            server.authority,
            SANDBOX_CLIENT_ID,
            tmp_path / "cache.bin",
            ca_file=server.ca_file,
            sandbox=True,
            allow_plaintext=True,
        )
        flow = provider.begin(
            "http://127.0.0.1:8765/signin/callback", ["http://127.0.0.1:9/user_impersonation"]
        )
        browser = requests.Session()
        browser.verify, browser.trust_env = server.ca_file, False
        answer = answer_of(sign_in(browser, flow["auth_uri"], *ALICE))
        assert provider.complete(flow, answer).username == ALICE[0]
    finally:
        server.stop()
    printed = verbose_log.getvalue()
    assert "event=" in printed and '"grant_type": "authorization_code"' in printed  # msal spoke
    assert answer["code"] not in printed
    assert f'"code": "{MASK}"' in printed


def test_access_log_does_not_show_the_one_time_sign_in_token(
    verbose_log: io.StringIO, data_dir: Path
) -> None:
    token = new_login_token()
    app = create_app({"DATA_DIR": str(data_dir), "LOGIN_TOKEN": token})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        opened = httpx.get(f"{base}/login?token={token}", follow_redirects=False)
        assert opened.status_code == 302
        # a token that is not (or no longer) the one is masked as well
        guessed = "Guessed-token-0123456789"
        assert httpx.get(f"{base}/login?token={guessed}").status_code == 403
    finally:
        server.shutdown()
        server.server_close()
        app.extensions["mailbox_sync.database"].dispose()
    printed = verbose_log.getvalue()
    assert f"GET /login?token={MASK} HTTP/1.1" in printed  # werkzeug's access log line
    assert token not in printed and guessed not in printed


def test_a_code_field_is_masked_however_it_is_printed() -> None:
    code = "0.AXEA-authorization-code_value"
    for line in (
        f"redeem {{'code': '{code}', 'grant_type': 'authorization_code'}}",
        f'{{"code": "{code}"}}',
        f"GET /signin/callback?bounced=1&code={code}&state=abc HTTP/1.1",
        f"code={code}",
    ):
        assert code not in redact(line), line
    kept = "status_code=200 error_code=invalid_grant tokens: 5"  # not secrets: left alone
    assert redact(kept) == kept
