"""Secrets of the profile (mailbox and SMTP passwords) kept apart from the settings table.

They live in `<data dir>/secrets.json`, mode 0600 like the secret key, so that dumping the
settings (`status --json`, the settings page, a bug report) can never include them, and a
logging filter masks every stored value should one ever reach a log line.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from sync.redaction import remember_secret

FILE_NAME = "secrets.json"

_lock = threading.Lock()


class Vault:
    """A small JSON file of named secrets, readable only by the user."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / FILE_NAME

    def _load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        values: dict[str, str] = json.loads(self.path.read_text() or "{}")
        for value in values.values():
            remember_secret(value)
        return values

    def get(self, name: str) -> str | None:
        with _lock:
            return self._load().get(name)

    def set(self, name: str, value: str | None) -> None:
        """Store (or with None, forget) a secret; the file is rewritten atomically."""
        with _lock:
            values = self._load()
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
                remember_secret(value)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(values, handle)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)

    def names(self) -> list[str]:
        with _lock:
            return sorted(self._load())
