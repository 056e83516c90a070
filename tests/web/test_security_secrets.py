"""Issue 14.5, secrets: the mailbox and SMTP passwords are encrypted at rest like the token cache,
kept in clear only with the sign-in's consent (and its alert), refused otherwise.

This machine has no keyring (no libsecret / PyGObject), so the encrypted path runs on a fake
msal-extensions persistence (`fake_keyring`) and the unencrypted one on a refused probe
(`no_keyring`): each test says which machine it is on, whatever this one has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from msal_extensions.persistence import PersistenceNotFound

import sync.setup.vault as vault_module
from sync.runs import open_alerts, raise_alert, resolve_alerts
from sync.settings import set_setting
from sync.setup.memory import MemoryWorld, demo_world, memory_ports
from sync.setup.profile import Profile
from sync.setup.vault import (
    ALERT_SUBJECT,
    FILE_NAME,
    PLAINTEXT_ALERT,
    PLAINTEXT_CONSENT,
    SecretsNotStored,
    Vault,
)
from sync.store.db import Database, open_database
from tests.helpers import csrf_token_from, page_text, signed_in
from webapp import create_app
from webapp.signin import PLAINTEXT_ALERT as SIGNIN_PLAINTEXT_ALERT
from webapp.wizard import PORTS_KEY

ALICE = "alice@contoso.example"
SECRET = "Pop3-Secret-4711"
SMTP_SECRET = "Smtp-Secret-0815"


class FakeKeyring:
    """What msal-extensions' encrypted persistences keep, by location (the real ones are keyed
    by their file's path too)."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}
        self.saves_work = True

    def persistence(self, location: str) -> FakeEncryptedPersistence:
        return FakeEncryptedPersistence(self, location)


class FakeEncryptedPersistence:
    """msal_extensions.persistence.BasePersistence's interface, "encrypted" into FakeKeyring."""

    is_encrypted = True

    def __init__(self, keyring: FakeKeyring, location: str) -> None:
        self.keyring, self.location = keyring, location

    def save(self, content: str) -> None:
        if self.keyring.saves_work:  # libsecret's save() only returns False when it fails
            self.keyring.items[self.location] = content

    def load(self) -> str:
        if self.location not in self.keyring.items:
            raise PersistenceNotFound(location=self.location)
        return self.keyring.items[self.location]

    def get_location(self) -> str:
        return self.location


@pytest.fixture
def fake_keyring(monkeypatch: pytest.MonkeyPatch) -> FakeKeyring:
    keyring = FakeKeyring()
    monkeypatch.setattr(vault_module, "build_encrypted_persistence", keyring.persistence)
    return keyring


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(location: str) -> None:
        raise RuntimeError("libsecret is not installed\nmore detail")

    monkeypatch.setattr(vault_module, "build_encrypted_persistence", refuse)


@pytest.fixture
def database(data_dir: Path) -> Iterator[Database]:
    db = open_database(data_dir)
    yield db
    db.dispose()


def _files_hold(data_dir: Path, text: str) -> list[Path]:
    """Every file under the data dir whose bytes contain `text`."""
    return [p for p in data_dir.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def _secrets_alerts(database: Database) -> list[object]:
    return [
        a for a in open_alerts(database) if a.code == PLAINTEXT_ALERT and a.subject == ALERT_SUBJECT
    ]


# --- with a keyring: encrypted, never in clear ------------------------------------------------


def test_secrets_are_stored_encrypted_when_the_platform_can(
    fake_keyring: FakeKeyring, data_dir: Path, database: Database
) -> None:
    vault = Vault(data_dir, database)
    assert vault.is_encrypted
    vault.set("mailbox_password", SECRET)
    vault.set("smtp_password", SMTP_SECRET)
    assert not (data_dir / FILE_NAME).exists()
    assert _files_hold(data_dir, SECRET) == [] and _files_hold(data_dir, SMTP_SECRET) == []
    (stored,) = fake_keyring.items.values()
    assert json.loads(stored) == {"mailbox_password": SECRET, "smtp_password": SMTP_SECRET}
    again = Profile(database, data_dir)  # another request, another process: same secrets
    assert again.mailbox_secrets() == {"mailbox_password": SECRET, "smtp_password": SMTP_SECRET}
    again.vault.set("smtp_password", None)
    assert Vault(data_dir, database).names() == ["mailbox_password"]
    assert _secrets_alerts(database) == []  # nothing to warn about


def test_a_clear_secrets_json_moves_into_the_encrypted_store_on_first_read(
    fake_keyring: FakeKeyring, data_dir: Path, database: Database
) -> None:
    # what an older version (or this one, before a keyring was installed) left behind
    (data_dir / FILE_NAME).write_text(json.dumps({"mailbox_password": SECRET}))
    raise_alert(database, PLAINTEXT_ALERT, "clear", subject=ALERT_SUBJECT)
    assert Profile(database, data_dir).mailbox_secrets() == {"mailbox_password": SECRET}
    assert not (data_dir / FILE_NAME).exists()
    assert _files_hold(data_dir, SECRET) == []
    assert json.loads(next(iter(fake_keyring.items.values()))) == {"mailbox_password": SECRET}
    assert _secrets_alerts(database) == []  # they are encrypted now: the alert is resolved


def test_the_clear_file_is_kept_when_the_keyring_did_not_take_the_secrets(
    fake_keyring: FakeKeyring, data_dir: Path, database: Database
) -> None:
    (data_dir / FILE_NAME).write_text(json.dumps({"mailbox_password": SECRET}))
    fake_keyring.saves_work = False
    with pytest.raises(OSError, match="did not keep"):
        Vault(data_dir, database).get("mailbox_password")
    assert json.loads((data_dir / FILE_NAME).read_text()) == {"mailbox_password": SECRET}


# --- without a keyring: the sign-in's consent, or nothing ------------------------------------


@pytest.mark.usefixtures("no_keyring")
def test_without_encryption_and_consent_nothing_is_stored_and_the_message_says_why(
    data_dir: Path, database: Database
) -> None:
    vault = Vault(data_dir, database)
    assert not vault.is_encrypted
    with pytest.raises(SecretsNotStored) as refused:
        vault.set("mailbox_password", SECRET)
    assert refused.value.field == "password"  # shown beside the wizard's password field
    text = str(refused.value)
    assert "cannot be stored encrypted" in text and "libsecret is not installed" in text
    assert "sign in again and agree" in text
    with pytest.raises(SecretsNotStored) as smtp:
        vault.set("smtp_password", SMTP_SECRET)
    assert smtp.value.field == "smtp_password"
    assert _files_hold(data_dir, SECRET) == [] and not (data_dir / FILE_NAME).exists()
    assert Vault(data_dir).get("mailbox_password") is None
    with pytest.raises(SecretsNotStored):  # a vault that knows no consent never stores in clear
        Vault(data_dir).set("mailbox_password", SECRET)


@pytest.mark.usefixtures("no_keyring")
def test_with_the_sign_in_consent_they_are_kept_in_a_private_file_with_an_alert(
    data_dir: Path, database: Database
) -> None:
    set_setting(database, PLAINTEXT_CONSENT, True)  # what agreeing at sign-in stores
    Profile(database, data_dir).vault.set("mailbox_password", SECRET)
    clear = data_dir / FILE_NAME
    assert os.stat(clear).st_mode & 0o777 == 0o600
    assert Vault(data_dir, database).get("mailbox_password") == SECRET
    (alert,) = _secrets_alerts(database)
    assert PLAINTEXT_ALERT == SIGNIN_PLAINTEXT_ALERT  # the same alert as the token cache's
    assert alert.title == "Passwords stored unencrypted" and "(you agreed)" in alert.message
    assert "keyring" in alert.action

    # signing out resolves the tokens' alert; the passwords are still in clear: ours stays
    raise_alert(database, PLAINTEXT_ALERT, "Token cache stored unencrypted")
    resolve_alerts(database, PLAINTEXT_ALERT)
    assert len(_secrets_alerts(database)) == 1
    # dismissed, it stays dismissed although every page reads the vault again
    resolve_alerts(database, PLAINTEXT_ALERT, ALERT_SUBJECT)
    assert Profile(database, data_dir).mailbox_secrets() == {"mailbox_password": SECRET}
    assert _secrets_alerts(database) == []
    # forgetting the last secret removes the clear file
    Vault(data_dir, database).set("mailbox_password", None)
    assert not clear.exists()


@pytest.mark.usefixtures("no_keyring")
def test_a_clear_file_found_without_consent_is_still_read_and_raises_the_alert(
    data_dir: Path, database: Database
) -> None:
    (data_dir / FILE_NAME).write_text(json.dumps({"mailbox_password": SECRET}))
    assert Vault(data_dir, database).get("mailbox_password") == SECRET  # sync keeps working
    (alert,) = _secrets_alerts(database)
    assert "(you agreed)" not in alert.message
    with pytest.raises(SecretsNotStored):  # but nothing new is written in clear
        Vault(data_dir, database).set("smtp_password", SMTP_SECRET)


# --- the wizard shows the refusal ----------------------------------------------------------


@pytest.fixture
def world() -> MemoryWorld:
    return demo_world()


@pytest.fixture
def wizard_app(data_dir: Path, world: MemoryWorld, no_keyring: None) -> Iterator[Flask]:
    """Signed in (account stored) but without the consent a keyring-less sign-in records."""
    app = create_app({"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token"})
    app.extensions[PORTS_KEY] = memory_ports(world, ALICE)
    set_setting(app.extensions["mailbox_sync.database"], "account_upn", ALICE)
    yield app
    app.extensions["mailbox_sync.database"].dispose()


def test_the_wizard_shows_the_refusal_beside_the_password_field(
    wizard_app: Flask, world: MemoryWorld
) -> None:
    web = signed_in(wizard_app)
    token = csrf_token_from(web.get("/settings").get_data(as_text=True))
    contoso = next(o.info.id for o in world.orgs.values() if o.info.unique_name == "contoso")
    chosen = web.post("/setup/organization", data={"csrf_token": token, "synchronizing": contoso})
    assert chosen.status_code == 303
    response = web.post(
        "/setup/mailbox",
        data={
            "csrf_token": token,
            "type": "exchange",
            "email": ALICE,
            "auth": "basic",
            "username": "alice",
            "password": "alice-Sandbox-1",
            "action": "save",
        },
    )
    assert response.status_code == 422
    page = page_text(response)
    assert "Passwords cannot be stored encrypted on this computer" in page
    assert 'data-testid="error-password"' in page
    assert not (Path(wizard_app.config["DATA_DIR"]) / FILE_NAME).exists()
