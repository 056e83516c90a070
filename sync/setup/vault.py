"""Secrets of the profile (mailbox and SMTP passwords) kept apart from the settings table.

They live in `<data dir>/secrets.json`, mode 0600 like the secret key, so that dumping the
settings (`status --json`, the settings page, a bug report) can never include them, and a
logging filter masks every stored value should one ever reach a log line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

FILE_NAME = "secrets.json"
MASK = "********"

_lock = threading.Lock()
_known_values: set[str] = set()
"""Every secret value read or written in this process, for the logging filter."""


class Vault:
    """A small JSON file of named secrets, readable only by the user."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / FILE_NAME

    def _load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        values: dict[str, str] = json.loads(self.path.read_text() or "{}")
        _known_values.update(v for v in values.values() if v)
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
                _known_values.add(value)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(values, handle)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)

    def names(self) -> list[str]:
        with _lock:
            return sorted(self._load())


def redact(text: str) -> str:
    """`text` with every known secret value replaced by a mask."""
    for value in sorted(_known_values, key=len, reverse=True):
        if len(value) >= 4 and value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks known secrets in a record's final message (attach it to every handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _known_values:
            message = record.getMessage()
            masked = redact(message)
            if masked != message:
                record.msg, record.args = masked, None
        return True
