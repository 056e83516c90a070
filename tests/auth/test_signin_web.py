"""The sign-in blueprint end to end: Flask test client + the sandbox IdP over real HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from sandbox.identity import TENANT_ID
from sync.auth import EncryptionUnavailable, open_token_cache, provider_from_config
from sync.runs import open_alerts
from sync.settings import get_setting
from tests.auth.helpers import ALICE, Idp, answer_of, form_action, sign_in
from tests.helpers import csrf_token_from, signed_in

DISCOVERY_URL = "http://127.0.0.1:9/api/discovery/v2.0/Instances"


@pytest.fixture
def signin_app(data_dir: Path, idp: Idp) -> Iterator[Flask]:
    from webapp import create_app, signin

    app = create_app(
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
    if "signin" not in app.blueprints:  # until webapp/__init__.py registers it
        app.register_blueprint(signin.bp)
    _register_pending_blueprints(app)
    yield app
    app.extensions["mailbox_sync.database"].dispose()


def _register_pending_blueprints(app: Flask) -> None:
    """base.html links to pages other helpers are adding; register those not yet wired in."""
    import importlib

    for module in ("webapp.settings_page",):
        try:
            blueprint = importlib.import_module(module).bp
        except (ImportError, AttributeError):
            continue
        if blueprint.name not in app.blueprints:
            app.register_blueprint(blueprint)


@pytest.fixture
def web(signin_app: Flask) -> FlaskClient:
    return signed_in(signin_app)


def _encrypted(tmp_path: Path) -> bool:
    try:
        open_token_cache(tmp_path / "probe.bin", allow_plaintext=False)
    except EncryptionUnavailable:
        return False
    return True


def _start(web: FlaskClient, **form: str) -> tuple[int, str, str]:
    page = web.get("/signin")
    assert page.status_code == 200
    response = web.post("/signin/start", data={"csrf_token": csrf_token_from(page.text), **form})
    return response.status_code, response.headers.get("Location", ""), response.text


def _start_sandbox(web: FlaskClient, tmp_path: Path) -> str:
    """Start a sandbox sign-in, agreeing to a plaintext cache when the machine has no keyring."""
    status, location, html = _start(web, provider="sandbox")
    if not _encrypted(tmp_path):
        assert status == 200 and 'data-testid="consent-plaintext"' in html
        status, location, html = _start(web, provider="sandbox", consent_plaintext="yes")
    assert status == 302, html
    return location


def test_signin_page_offers_microsoft_and_the_sandbox(web: FlaskClient) -> None:
    page = web.get("/signin").text
    assert 'id="signin-microsoft-submit"' in page
    assert 'id="signin-sandbox-submit"' in page


def test_sign_in_with_the_sandbox_end_to_end(
    web: FlaskClient, signin_app: Flask, idp: Idp, browser: requests.Session, tmp_path: Path
) -> None:
    auth_uri = _start_sandbox(web, tmp_path)
    # the page a person sees is the plain-HTTP loopback listener (no certificate warning)
    assert auth_uri.startswith(f"{idp.server.browser_url}/{TENANT_ID}/oauth2/v2.0/authorize?")
    answer_page = sign_in(browser, auth_uri, *ALICE)
    action = form_action(answer_page)  # response_mode=form_post: the IdP posts back to us
    assert urlsplit(action).path == "/signin/callback"

    done = web.post("/signin/callback", data=answer_of(answer_page))
    assert done.status_code == 302, done.text
    assert done.headers["Location"] in ("/", "/setup/organization")
    database = signin_app.extensions["mailbox_sync.database"]
    assert get_setting(database, "account_upn") == ALICE[0]
    assert get_setting(database, "mode") == "sandbox"
    config = get_setting(database, "auth")
    assert config["provider"] == "sandbox" and config["username"] == ALICE[0]
    # the signed-in account's tokens work for the sandbox services
    provider = provider_from_config(
        config, signin_app.config["DATA_DIR"], signin_app.config["SANDBOX_INFO"]
    )
    token = provider.token_for([f"{DISCOVERY_URL.split('/api')[0]}/user_impersonation"])
    assert idp.tokens.user_for(token).upn == ALICE[0]  # type: ignore[union-attr]
    if not provider.cache_is_encrypted:
        codes = [a.code for a in open_alerts(database)]
        assert "token_cache_unencrypted" in codes

    assert "Signed in as alice@contoso.example" in web.get("/signin").text
    page = web.get("/signin").text
    out = web.post("/signin/signout", data={"csrf_token": csrf_token_from(page)})
    assert out.status_code == 302
    assert get_setting(database, "account_upn") is None
    assert provider.accounts() == []
    assert "token_cache_unencrypted" not in [a.code for a in open_alerts(database)]


def test_callback_without_the_cookie_is_bounced_back_from_our_origin(
    web: FlaskClient, signin_app: Flask, idp: Idp, browser: requests.Session, tmp_path: Path
) -> None:
    auth_uri = _start_sandbox(web, tmp_path)
    answer = answer_of(sign_in(browser, auth_uri, *ALICE))
    # the cross-site post arrives without the SameSite=Strict session cookie
    stranger = signin_app.test_client()
    bounce = stranger.post("/signin/callback", data=answer)
    assert bounce.status_code == 200
    assert "Set-Cookie" not in bounce.headers  # the withheld session is left alone
    assert 'name="bounced"' in bounce.text and answer["code"] in bounce.text
    # the browser re-posts from our page, now with its cookie
    done = web.post("/signin/callback", data={**answer, "bounced": "1"})
    assert done.status_code == 302
    database = signin_app.extensions["mailbox_sync.database"]
    assert get_setting(database, "account_upn") == ALICE[0]
    # a bounced answer with no local session at all goes to the welcome page
    lost = stranger.post("/signin/callback", data={**answer, "bounced": "1"})
    assert lost.status_code == 302 and "/welcome" in lost.headers["Location"]


def test_a_refused_sign_in_is_shown_on_the_page(
    web: FlaskClient, signin_app: Flask, browser: requests.Session, tmp_path: Path
) -> None:
    auth_uri = _start_sandbox(web, tmp_path)
    page = browser.get(auth_uri)
    cancelled = browser.post(
        auth_uri.split("?")[0],
        data={
            "login": page.text.split('name="login" value="')[1].split('"')[0],
            "action": "cancel",
        },
        allow_redirects=False,
    )
    result = web.post("/signin/callback", data=answer_of(cancelled))
    assert result.status_code == 400
    assert "Sign-in failed" in result.text and "AADSTS65004" in result.text
    assert get_setting(signin_app.extensions["mailbox_sync.database"], "account_upn") is None


def test_start_validates_the_microsoft_choice_and_needs_csrf(web: FlaskClient) -> None:
    status, _, html = _start(web, provider="microsoft", client_id="not-a-guid")
    assert status == 400 and "application (client) ID" in html
    assert web.post("/signin/start", data={"provider": "sandbox"}).status_code == 400


def test_signin_needs_the_local_sign_in_link(signin_app: Flask) -> None:
    anonymous = signin_app.test_client()
    response = anonymous.get("/signin")
    assert response.status_code == 302 and "/welcome" in response.headers["Location"]


# --- issue 11, point 3: the token-encryption prompt in plain words, once --------------------


def _no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Linux machine without PyGObject: msal-extensions fails to import `gi`."""

    def refuse(_location: str) -> None:
        raise ImportError("Unable to import module 'gi'")

    monkeypatch.setattr("sync.auth.build_encrypted_persistence", refuse)


def test_no_keyring_is_said_in_plain_words_with_the_command(
    web: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_keyring(monkeypatch)
    status, _location, html = _start(web, provider="sandbox")
    assert status == 200 and 'data-testid="consent-plaintext"' in html
    assert "gi'" not in html and "Unable to import" not in html
    assert "PyGObject with libsecret" in html
    if Path("/etc/debian_version").exists():  # the one command for this system
        assert 'data-testid="keyring-command"' in html and "sudo apt install" in html
        assert "pip install" in html
    assert "Keep them unencrypted, I understand" in html


def test_the_unencrypted_alert_can_be_kept_for_good(
    web: FlaskClient, signin_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync.setup.signin import PLAINTEXT_ALERT, note_unencrypted_cache

    _no_keyring(monkeypatch)
    database = signin_app.extensions["mailbox_sync.database"]
    status, _location, _html = _start(web, provider="sandbox", consent_plaintext="yes")
    assert status == 302
    (alert,) = [a for a in open_alerts(database) if a.code == PLAINTEXT_ALERT]
    assert "sign out and sign in again" in alert.action
    page = web.get("/alerts").text
    assert 'data-testid="keep-unencrypted"' in page
    answer = web.post(
        f"/alerts/{alert.id}/keep-unencrypted", data={"csrf_token": csrf_token_from(page)}
    )
    assert answer.status_code == 302
    assert not [a for a in open_alerts(database) if a.code == PLAINTEXT_ALERT]
    note_unencrypted_cache(database, "any command")  # the next sign-in does not raise it again
    _start(web, provider="sandbox", consent_plaintext="yes")
    assert not [a for a in open_alerts(database) if a.code == PLAINTEXT_ALERT]


def test_the_unencrypted_cache_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _no_keyring(monkeypatch)
    for _ in range(3):  # every request that needs a token opens the cache
        open_token_cache(tmp_path / "cache.bin", allow_plaintext=True)
    warnings = [r for r in caplog.records if "unencrypted" in r.getMessage()]
    assert len(warnings) == 1


def test_signing_in_is_the_first_step_of_the_step_bar(web: FlaskClient) -> None:
    """Issue 11, point 11: the sign-in page said "Step 1 of the setup" while the step bar
    began at Organization; both now show one bar whose first step is signing in."""
    page = web.get("/signin").text
    assert "Step 1 of the setup" not in page
    bar = page[page.index('data-testid="wizard-steps"') :]
    assert bar.index('data-testid="step-signin"') < bar.index('data-testid="step-organization"')
    assert 'data-testid="step-signin" aria-current="step"' in page


def test_the_welcome_page_shows_this_apps_address(signin_app: Flask) -> None:
    page = signin_app.test_client().get("/welcome", base_url="http://127.0.0.1:8765").text
    assert "Open http://127.0.0.1:8765/login?token=" in page and ":5000" not in page
