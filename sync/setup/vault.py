"""Secrets of the profile (mailbox and SMTP passwords) kept apart from the settings table.

Apart, so that dumping the settings (`status --json`, the settings page, a bug report) can never
include them; encrypted at rest like the token cache (msal-extensions: DPAPI on Windows, the
keychain on macOS, libsecret on Linux), with `<data dir>/secrets.bin` as the store's file.
Where the platform cannot encrypt, they go to `secrets.json` (mode 0600) only if the user agreed
to unencrypted tokens at sign-in: one consent and one alert for both, as DESIGN.md §5 asks of
tokens. Without that consent storing is refused with a message that says what to do. A clear
`secrets.json` (an older version's store, or kept while no keyring was there) moves into the
encrypted store on the first read that can encrypt. sync.redaction remembers every value read or
written, so no log line shows one.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from msal_extensions import build_encrypted_persistence
from msal_extensions.persistence import PersistenceNotFound
from sqlalchemy import select

from sync.redaction import remember_secret
from sync.runs import raise_alert, resolve_alerts
from sync.settings import get_setting
from sync.setup.messages import N_, SetupError
from sync.store.db import Database
from sync.store.models import Alert

log = logging.getLogger(__name__)

FILE_NAME = "secrets.json"
"""The clear store: only with the user's consent (or left by an older version, until moved)."""
ENCRYPTED_FILE_NAME = "secrets.bin"
"""The encrypted store's file (DPAPI) or its change-signal file (keychain, libsecret)."""
PLAINTEXT_CONSENT = "token_cache_plaintext_consent"
"""The setting webapp/signin.py sets when the user agrees to unencrypted tokens (and secrets)."""
PLAINTEXT_ALERT = "token_cache_unencrypted"
"""webapp/signin.py's alert code for the unencrypted token cache; secrets raise it too."""
ALERT_SUBJECT = "secrets"
"""Our alert's subject: signing out resolves the tokens' alert, not this one (passwords stay)."""
FORM_FIELDS = {"mailbox_password": "password", "smtp_password": "smtp_password"}
"""The wizard's form field of each secret, so a refusal is shown beside the right field."""

_lock = threading.Lock()


class SecretsNotStored(SetupError):
    """No encryption here and no consent to keep secrets unencrypted: nothing was written."""


class Vault:
    """Named secrets, encrypted at rest where the platform allows, readable only by the user.

    `database` is where the consent and the alert live; without it (a bare vault) unencrypted
    storage is never consented to.
    """

    def __init__(self, data_dir: Path | str, database: Database | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / FILE_NAME
        self.encrypted_path = self.data_dir / ENCRYPTED_FILE_NAME
        self.database = database
        self._persistence: Any = None
        self._unavailable: str | None = None
        self._alert_checked = False

    # -- the stores ---------------------------------------------------------------------
    def _encrypted(self) -> Any:
        """The encrypted persistence, or None when this platform has none (probed once)."""
        if self._persistence is None and self._unavailable is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                self._persistence = build_encrypted_persistence(str(self.encrypted_path))
            except Exception as exc:  # ImportError (no PyGObject), keyring errors, other OS
                lines = str(exc).strip().splitlines()
                self._unavailable = lines[0] if lines else type(exc).__name__
        return self._persistence

    @property
    def is_encrypted(self) -> bool:
        """Whether secrets stored now are encrypted at rest."""
        with _lock:
            return self._encrypted() is not None

    def _read_encrypted(self, persistence: Any) -> dict[str, str]:
        try:
            text = persistence.load()
        except PersistenceNotFound:
            return {}
        values: dict[str, str] = json.loads(text or "{}")
        return values

    def _read_clear(self) -> dict[str, str]:
        values: dict[str, str] = json.loads(self.path.read_text() or "{}")
        return values

    def _write_clear(self, values: dict[str, str]) -> None:
        """Rewrite the clear file atomically, created with mode 0600 (never readable by others)."""
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(values, handle)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def _save_encrypted(self, persistence: Any, values: dict[str, str]) -> None:
        """Save and read back: libsecret's save() reports a failure only by returning False."""
        persistence.save(json.dumps(values))
        if self._read_encrypted(persistence) != values:
            raise OSError(f"the encrypted store did not keep the secrets ({self.encrypted_path})")

    def _load(self) -> dict[str, str]:
        persistence = self._encrypted()
        if persistence is not None:
            values = self._read_encrypted(persistence)
            if self.path.exists():  # clear secrets and a keyring now: move them in
                values.update(self._read_clear())
                self._save_encrypted(persistence, values)
                self.path.unlink()
                log.info("secrets moved from %s into the encrypted store", self.path.name)
                if self.database is not None:
                    resolve_alerts(self.database, PLAINTEXT_ALERT, ALERT_SUBJECT)
        elif self.path.exists():
            values = self._read_clear()
            self._alert(only_if_never=True)
        else:
            values = {}
        for value in values.values():
            remember_secret(value)
        return values

    # -- consent and alert --------------------------------------------------------------
    def _consented(self) -> bool:
        return self.database is not None and bool(get_setting(self.database, PLAINTEXT_CONSENT))

    def _alert(self, only_if_never: bool = False) -> None:
        """Tell the user their passwords are in clear on disk.

        A write raises (or bumps) the alert; a read of a clear file raises it only if it was
        never raised, so that dismissing it sticks (the next page would read the vault again).
        """
        if self.database is None:
            return
        if only_if_never:
            if self._alert_checked:
                return
            self._alert_checked = True
            with self.database.session() as session:
                seen = session.scalars(
                    select(Alert.id).where(
                        Alert.code == PLAINTEXT_ALERT, Alert.subject == ALERT_SUBJECT
                    )
                ).first()
            if seen is not None:
                return
        message = (
            N_(
                "This computer has no keyring to encrypt secrets, so the mailbox and SMTP "
                "passwords are kept in a file in the data folder that only your user account "
                "may read (you agreed)."
            )
            if self._consented()
            else N_(
                "This computer has no keyring to encrypt secrets, so the mailbox and SMTP "
                "passwords are kept in a file in the data folder that only your user account "
                "may read."
            )
        )
        raise_alert(
            self.database,
            PLAINTEXT_ALERT,
            N_("Passwords stored unencrypted"),
            message,
            N_(
                "Install and unlock a keyring (libsecret with GNOME Keyring or KWallet, and "
                "PyGObject), then restart the app: the passwords move into it by themselves."
            ),
            subject=ALERT_SUBJECT,
        )

    def _refusal(self, name: str) -> SecretsNotStored:
        return SecretsNotStored(
            N_(
                "Passwords cannot be stored encrypted on this computer (%(reason)s), and "
                "keeping them unencrypted needs your consent. Sign out, sign in again and "
                "agree to unencrypted storage when asked; or install and unlock a keyring "
                "(libsecret with GNOME Keyring or KWallet, and PyGObject), then retry.",
                reason=self._unavailable or "no keyring",
            ),
            FORM_FIELDS.get(name, ""),
        )

    # -- the API ------------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        with _lock:
            return self._load().get(name)

    def set(self, name: str, value: str | None) -> None:
        """Store (or with None, forget) a secret.

        Raises SecretsNotStored when it would have to be stored unencrypted without consent.
        """
        with _lock:
            values = self._load()
            if value is None:
                if values.pop(name, None) is None:
                    return
            else:
                remember_secret(value)
                values[name] = value
            persistence = self._encrypted()
            if persistence is not None:
                self._save_encrypted(persistence, values)
            elif not values:
                self.path.unlink(missing_ok=True)  # nothing left to keep in clear
                if self.database is not None:
                    resolve_alerts(self.database, PLAINTEXT_ALERT, ALERT_SUBJECT)
            elif value is not None and not self._consented():
                raise self._refusal(name)
            else:  # consented, or forgetting one of the clear file's secrets
                self._write_clear(values)
                if value is not None:
                    self._alert()

    def names(self) -> list[str]:
        with _lock:
            return sorted(self._load())
