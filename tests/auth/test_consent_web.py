"""Issue 10 point 1 in the browser flow: the Sign-in page names the resource that lacks consent,
/signin/consent asks for exactly its scope and returns to where the user was, and a tenant
where only an administrator may consent gets the admin consent URL.

Microsoft behaviour relied on: AADSTS65001 "Send an interactive authorization request for this
user and resource" and AADSTS90094 AdminConsentRequired (learn.microsoft.com
entra/identity-platform/reference-error-codes); the admin consent URL
`/{organization}/adminconsent?client_id=…` (entra/identity/enterprise-apps/grant-admin-consent).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from sync.auth import (
    SIGN_IN_ALERT,
    ConsentRequired,
    pending_consents,
    provider_from_config,
)
from sync.runs import open_alerts, raise_alert
from sync.settings import get_setting
from tests.auth.helpers import ALICE, Idp, answer_of, login_handle
from tests.helpers import csrf_token_from, page_text, signed_in

DISCOVERY_URL = "http://127.0.0.1:9/api/discovery/v2.0/Instances"
CONTOSO = "http://127.0.0.1:9/contoso/user_impersonation"


@pytest.fixture
def app(data_dir: Path, idp: Idp) -> Iterator[Flask]:
    from webapp import create_app

    application = create_app(
        {
            "DATA_DIR": str(data_dir),
            "LOGIN_TOKEN": "test-login-token",
            "SANDBOX_INFO": {
                "authority": idp.authority + "/",
                "identity_ca_file": idp.server.ca_file,
                "client_id": idp.server.client_id,
                "discovery_url": DISCOVERY_URL,
            },
        }
    )
    yield application
    application.extensions["mailbox_sync.database"].dispose()
    idp.server.consents.revoke()
    idp.server.consent_mode = "granted"


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    return signed_in(app)


def _idp_form(browser: requests.Session, auth_uri: str, data: dict[str, str]) -> requests.Response:
    return browser.post(
        urlsplit(auth_uri)._replace(query="").geturl(), data=data, allow_redirects=False
    )


def _log_in(browser: requests.Session, auth_uri: str) -> requests.Response:
    page = browser.get(auth_uri)
    handle = login_handle(page.text)
    return _idp_form(
        browser, auth_uri, {"login": handle, "upn": ALICE[0], "password": ALICE[1], "action": "x"}
    )


def _press(browser: requests.Session, auth_uri: str, page: requests.Response, action: str):
    return _idp_form(browser, auth_uri, {"login": login_handle(page.text), "action": action})


def _sign_in(web: FlaskClient, browser: requests.Session) -> None:
    """The first sign-in (Global Discovery), consenting to it on the sandbox's consent page."""
    page = web.get("/signin")
    started = web.post(
        "/signin/start",
        data={"csrf_token": csrf_token_from(page.text), "provider": "sandbox",
              "consent_plaintext": "yes"},
    )  # fmt: skip
    assert started.status_code == 302, started.text
    auth_uri = started.headers["Location"]
    asked = _log_in(browser, auth_uri)
    if "Permissions requested" in asked.text:
        asked = _press(browser, auth_uri, asked, "consent-accept")
    done = web.post("/signin/callback", data=answer_of(asked))
    assert done.status_code == 302, done.text


def _provider(app: Flask):
    config = get_setting(app.extensions["mailbox_sync.database"], "auth")
    return provider_from_config(config, app.config["DATA_DIR"], app.config["SANDBOX_INFO"])


def test_the_missing_consent_is_named_and_asked_for_alone(
    app: Flask, web: FlaskClient, idp: Idp, browser: requests.Session
) -> None:
    idp.server.consent_mode = "user"
    _sign_in(web, browser)
    database = app.extensions["mailbox_sync.database"]
    with pytest.raises(ConsentRequired) as missing:  # what a sync run meets
        _provider(app).token_for([CONTOSO], ALICE[0])
    raise_alert(database, SIGN_IN_ALERT, "Sign in again", missing.value.message, "…")

    page = web.get("/signin?next=/setup/organization")
    text = page_text(page)
    assert "Consent needed" in text and "access to the Contoso organization" in text
    assert f'name="scope" value="{CONTOSO}"' in page.text
    assert 'name="next" value="/setup/organization"' in page.text

    started = web.post(
        "/signin/consent",
        data={"csrf_token": csrf_token_from(page.text), "scope": CONTOSO,
              "next": "/setup/organization"},
    )  # fmt: skip
    assert started.status_code == 302
    auth_uri = started.headers["Location"]
    query = parse_qs(urlsplit(auth_uri).query)
    assert CONTOSO in query["scope"][0].split() and query["login_hint"] == [ALICE[0]]
    assert "prompt" not in query  # the authority asks only what it must

    asked = _log_in(browser, auth_uri)
    listed = [unescape(s) for s in re.findall(r"<li>([^<]+)</li>", asked.text)]
    assert listed == [CONTOSO]  # exactly the missing scope
    back = web.post(
        "/signin/callback", data=answer_of(_press(browser, auth_uri, asked, "consent-accept"))
    )
    assert back.status_code == 302 and back.headers["Location"] == "/setup/organization"
    assert pending_consents(app.config["DATA_DIR"]) == []
    assert SIGN_IN_ALERT not in [a.code for a in open_alerts(database)]
    assert _provider(app).token_for([CONTOSO], ALICE[0])
    assert "Consent needed" not in page_text(web.get("/signin"))


def test_an_admin_only_tenant_shows_the_admin_consent_url(
    app: Flask, web: FlaskClient, idp: Idp, browser: requests.Session
) -> None:
    _sign_in(web, browser)  # consent granted as the demo has it
    idp.server.consents.revoke()
    idp.server.consent_mode = "admin"
    with pytest.raises(ConsentRequired):
        _provider(app).token_for([CONTOSO], ALICE[0])

    consent_page = web.get(f"/signin/consent?scope={CONTOSO}&next=/setup/mailbox")
    assert "access to the Contoso organization" in page_text(consent_page)
    started = web.post(
        "/signin/consent",
        data={"csrf_token": csrf_token_from(consent_page.text), "scope": CONTOSO,
              "next": "/setup/mailbox"},
    )  # fmt: skip
    auth_uri = started.headers["Location"]
    asked = _log_in(browser, auth_uri)
    assert "Administrator approval needed" in asked.text
    answer = web.post(
        "/signin/callback", data=answer_of(_press(browser, auth_uri, asked, "admin-back"))
    )
    assert answer.status_code == 400
    url = idp.server.admin_consent_url
    assert 'id="admin-consent-url"' in answer.text and url in unescape(answer.text)
    [pending] = pending_consents(app.config["DATA_DIR"])
    assert pending.admin and pending.scopes == (CONTOSO,)

    # from now on the sync's message and the Sign-in page give the administrator's link
    with pytest.raises(ConsentRequired) as again:
        _provider(app).token_for([CONTOSO], ALICE[0])
    assert again.value.admin and again.value.admin_url == url and url in again.value.message
    assert url in unescape(web.get("/signin").text)


def test_the_consent_links_are_checked(web: FlaskClient, browser: requests.Session) -> None:
    _sign_in(web, browser)
    assert web.get("/signin/consent?scope=not%20a%20scope").status_code == 400
    two = f"/signin/consent?scope={CONTOSO}&scope=https://other.example/user_impersonation"
    assert web.get(two).status_code == 400  # one resource at a time
    page = web.get(f"/signin/consent?scope={CONTOSO}&next=//evil.example/x")
    assert 'name="next" value="/"' in page.text  # never back to another site
    assert web.post("/signin/consent", data={"scope": CONTOSO}).status_code == 400  # CSRF


def test_the_wizard_names_the_missing_consent(app: Flask) -> None:
    from webapp.wizard import failure

    error = ConsentRequired("…", [CONTOSO], "access to the Contoso organization")
    with app.test_request_context("/setup/organization"):
        assert "access to the Contoso organization" in str(failure(error))
        assert "Give consent" in str(failure(error))
