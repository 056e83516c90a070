"""No secret in any log line: known values and token-shaped fields are masked.

Two nets, because libraries at DEBUG level print what they hold (requests-oauthlib prints the
whole token dict it adds to a request): every secret this process reads or hands out (stored
passwords, access tokens) is remembered and masked wherever it appears, and values of fields
named like secrets (`access_token`, `refresh_token`, `password`, `Authorization: Bearer …`, the
authorization `code` msal prints at DEBUG, the `/login?token=…` of werkzeug's access log) are
masked whatever they are. `RedactingFilter` goes on every handler (run.py does it).
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "********"

_lock = threading.Lock()
_known_values: set[str] = set()
"""Every secret value read, written or handed out in this process."""

_SECRET_FIELD = re.compile(
    r"""(?P<name>\b[\w-]*token|client_secret|password|code_verifier|assertion"""
    r"""|(?<![\w-])(?:device_|user_)?code)"""
    r"""(?P<sep>['"]?\s*[:=]\s*['"]?)(?P<value>[^'"\s,&}]{4,})""",
    re.IGNORECASE,
)
"""A secret-named field and its value: `name=v` (query strings, access log lines), `name: v`,
JSON's `"name": "v"` and a dict's `'name': 'v'`. Any `…token` (access, refresh, id, the one-time
login `token`, csrf) and the authorization `code` (msal's DEBUG cache event prints the request
that redeemed it); `error_code` or `status_code` are not a `code`. `\b` first: a long word is
scanned once, not from each of its letters."""
_AUTH_HEADER = re.compile(r"(?P<scheme>\b(?:Bearer|Basic)\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})")


def remember_secret(value: str | None) -> None:
    """Mask `value` in every later log line (values shorter than 4 characters are ignored)."""
    if value and len(value) >= 4:
        with _lock:
            _known_values.add(value)


def redact(text: str) -> str:
    """`text` with every known secret and every secret-looking field value masked."""
    with _lock:
        known = sorted(_known_values, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    text = _SECRET_FIELD.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
    return _AUTH_HEADER.sub(lambda m: f"{m['scheme']}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's final message (and in the text of its exception)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is logging's problem, not ours
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            shown = str(record.exc_info[1])
            hidden = redact(shown)
            if hidden != shown:
                record.msg = f"{record.msg} ({type(record.exc_info[1]).__name__}: {hidden})"
                record.exc_info = None
                record.exc_text = None
        return True


def protect_all_handlers() -> None:
    """Put a RedactingFilter on each root handler that has none (idempotent)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
