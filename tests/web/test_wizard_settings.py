"""The settings page (what the wizard stored, preferences) and the log view (secrets masked)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sync.redaction import MASK
from sync.settings import get_setting, set_setting
from sync.setup.ports import MailboxConfig
from sync.setup.profile import Profile
from sync.setup.vault import PLAINTEXT_CONSENT
from tests.helpers import csrf_token_from, page_text, signed_in
from webapp import create_app

SECRET = "Very-Secret-Pa55word"


@pytest.fixture
def settings_app(data_dir: Path) -> Iterator[Flask]:
    app = create_app({"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token"})
    # signing in without a keyring records this consent; the vault needs it here
    set_setting(app.extensions["mailbox_sync.database"], PLAINTEXT_CONSENT, True)
    yield app
    app.extensions["mailbox_sync.database"].dispose()


@pytest.fixture
def web(settings_app: Flask) -> FlaskClient:
    return signed_in(settings_app)


def test_settings_show_the_profile_but_never_the_password(
    settings_app: Flask, web: FlaskClient, data_dir: Path
) -> None:
    profile = Profile(settings_app.extensions["mailbox_sync.database"], data_dir)
    profile.save_mailbox(
        MailboxConfig(type="pop3", email="alice@contoso.example", pop3_host="pop.example"),
        {"mailbox_password": SECRET},
    )
    profile.set("instance_name", "desk-pc")
    page = page_text(web.get("/settings"))
    assert 'data-testid="settings-mailbox"> alice@contoso.example (POP3 and SMTP)' in page
    assert "password stored" in page and SECRET not in page
    assert "This computer (desk-pc)" in page


def test_preferences_set_zone_name_and_language(settings_app: Flask, web: FlaskClient) -> None:
    token = csrf_token_from(web.get("/settings").get_data(as_text=True))
    response = web.post(
        "/settings/preferences",
        data={
            "csrf_token": token,
            "timezone": "Asia/Tokyo",
            "instance_name": "laptop",
            "lang": "ja",
        },
    )
    assert response.status_code == 303
    assert "lang=ja" in response.headers.getlist("Set-Cookie")[0]
    database = settings_app.extensions["mailbox_sync.database"]
    assert get_setting(database, "timezone") == "Asia/Tokyo"
    assert get_setting(database, "instance_name") == "laptop"
    page = page_text(web.get("/settings?saved=1"))
    assert "保存しました。" in page and '<option value="Asia/Tokyo" selected>' in page

    web.post("/settings/preferences", data={"csrf_token": token, "timezone": "Mars/Olympus"})
    assert get_setting(database, "timezone") == "Asia/Tokyo"  # an unknown zone is ignored


def test_log_view_masks_stored_secrets(
    settings_app: Flask, web: FlaskClient, data_dir: Path
) -> None:
    Profile(settings_app.extensions["mailbox_sync.database"], data_dir).vault.set(
        "mailbox_password", SECRET
    )
    logging.getLogger("sync.test").warning("POP3 login as alice with %s refused", SECRET)
    page = page_text(web.get("/log"))
    assert "POP3 login as alice with" in page and MASK in page
    assert SECRET not in page


def test_the_dashboard_banner_setting_is_what_the_dashboard_reads(settings_app: Flask) -> None:
    """The instance step writes the two settings the dashboard's banner reads."""
    database = settings_app.extensions["mailbox_sync.database"]
    profile = Profile(database, settings_app.config["DATA_DIR"])
    profile.set_messaging(False, "This computer does not synchronize messaging data; x does.")
    assert get_setting(database, "messaging_enabled") is False
    assert get_setting(database, "messaging_disabled_reason").endswith("x does.")
    set_setting(database, "messaging_enabled", True)
    assert Profile(database, settings_app.config["DATA_DIR"]).messaging_enabled
