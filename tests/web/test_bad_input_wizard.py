"""The wizard's pages given bad input (issue 14, point 4): a message on the field and a 4xx
answer, never an HTTP 500, and nothing stored — on the in-memory ports and on the real
adapters against the sandbox (where these inputs used to raise)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import sync.auth
from sandbox.launcher import RunningSandbox, start_sandbox
from sync.settings import get_setting, set_setting
from sync.setup.memory import demo_world, memory_ports
from tests.helpers import csrf_token_from, page_text, signed_in
from webapp import create_app
from webapp.wizard import PORTS_KEY

ALICE = "alice@contoso.example"
HUGE_EMAIL = "a" * 100_000 + "@contoso.example"


def _client(app: Flask) -> tuple[FlaskClient, str]:
    client = signed_in(app)
    return client, csrf_token_from(client.get("/settings").get_data(as_text=True))


def _choose_contoso(web: FlaskClient, token: str) -> None:
    page = page_text(web.get("/setup/organization"))
    contoso = re.search(r'value="([0-9a-f-]{36})" id="sync-contoso"', page)
    assert contoso is not None
    answer = web.post(
        "/setup/organization", data={"csrf_token": token, "synchronizing": contoso.group(1)}
    )
    assert answer.status_code == 303


def _mailbox(web: FlaskClient, token: str, action: str, **fields: str) -> Any:
    form = {"csrf_token": token, "type": "exchange", "email": ALICE, "auth": "oauth"}
    return web.post("/setup/mailbox", data={**form, **fields, "action": action})


# --- on the in-memory ports ------------------------------------------------------------------


@pytest.fixture
def memory_app(data_dir: Path) -> Iterator[Flask]:
    app = create_app({"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token"})
    app.extensions[PORTS_KEY] = memory_ports(demo_world(), ALICE)
    set_setting(app.extensions["mailbox_sync.database"], "account_upn", ALICE)
    yield app
    app.extensions["mailbox_sync.database"].dispose()


@pytest.mark.parametrize("action", ["test", "save"])
def test_a_look_alike_loopback_ews_address_is_refused_on_the_page(
    memory_app: Flask, action: str
) -> None:
    web, token = _client(memory_app)
    _choose_contoso(web, token)
    answer = _mailbox(web, token, action, ews_url="http://127.0.0.1.evil.example/EWS")
    assert answer.status_code == 422
    assert "The EWS address must start with https://" in page_text(answer)
    assert get_setting(memory_app.extensions["mailbox_sync.database"], "mailbox") is None


@pytest.mark.parametrize("action", ["test", "save"])
def test_a_huge_email_address_is_refused_on_the_page(memory_app: Flask, action: str) -> None:
    web, token = _client(memory_app)
    _choose_contoso(web, token)
    answer = _mailbox(web, token, action, email=HUGE_EMAIL)
    assert answer.status_code == 422
    assert "An e-mail address has at most 254 characters" in page_text(answer)


def test_an_overlong_computer_name_is_refused_not_cut(memory_app: Flask) -> None:
    web, token = _client(memory_app)
    _choose_contoso(web, token)
    assert _mailbox(web, token, "save").status_code == 303
    answer = web.post(
        "/setup/instance",
        data={"csrf_token": token, "take_over": "yes", "instance_name": "x" * 100_000},
    )
    assert answer.status_code == 422
    assert "is one line of at most 100 characters" in page_text(answer)
    database = memory_app.extensions["mailbox_sync.database"]
    assert get_setting(database, "instance_name") is None
    assert get_setting(database, "instance_decided") in (None, False)


# --- on the real adapters, against the sandbox ------------------------------------------------


class StaticTokens:
    """Stands in for sync.auth.TokenProvider: the sandbox's static token for one user."""

    def __init__(self, token: str) -> None:
        self.token = token

    def token_callable(self, scopes: Any, username: str | None = None) -> Any:
        return lambda: self.token


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with start_sandbox(tmp_path_factory.mktemp("sandbox"), demo_scale=0.05) as running:
        yield running


@pytest.fixture
def sandbox_app(
    data_dir: Path, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Flask]:
    token = sandbox.tokens.static_token(ALICE)
    monkeypatch.setattr(sync.auth, "provider_from_config", lambda *a, **k: StaticTokens(token))
    config = {"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token"}
    app = create_app({**config, "SANDBOX_INFO": sandbox.describe()})
    database = app.extensions["mailbox_sync.database"]
    set_setting(database, "account_upn", ALICE)
    set_setting(database, "auth", {"provider": "sandbox"})
    yield app
    database.dispose()


@pytest.mark.parametrize("action", ["test", "save"])
def test_plain_http_to_the_sandboxs_ews_is_a_message_not_a_crash(
    sandbox_app: Flask, sandbox: RunningSandbox, action: str
) -> None:
    """It used to pass the page's check and then raise (HTTP 500): EWS is https only, even
    to this computer, and the page says so on the field."""
    web, token = _client(sandbox_app)
    _choose_contoso(web, token)
    plain = str(sandbox.describe()["ews_url"]).replace("https://", "http://", 1)
    answer = _mailbox(web, token, action, ews_url=plain)
    assert answer.status_code == 422
    assert "The EWS address must start with https://" in page_text(answer)
    assert get_setting(sandbox_app.extensions["mailbox_sync.database"], "mailbox") is None


@pytest.mark.parametrize("action", ["test", "save"])
def test_a_huge_email_address_never_reaches_the_crm_query(sandbox_app: Flask, action: str) -> None:
    """It used to become an OData URL too long for httpx (InvalidURL, HTTP 500)."""
    web, token = _client(sandbox_app)
    _choose_contoso(web, token)
    answer = _mailbox(web, token, action, email=HUGE_EMAIL)
    assert answer.status_code == 422
    assert "An e-mail address has at most 254 characters" in page_text(answer)
