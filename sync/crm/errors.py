"""Turn Dataverse's OData error answers into the typed errors of `sync.sides`.

Dataverse answers errors as `{"error": {"code": "0x…", "message": …}}`; the code says more
than the status (a duplicate key comes back as 412 like a stale ETag, or as 400/500 from
other paths), so the code and message are checked before the status.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

from sync.sides import (
    AuthError,
    Conflict,
    Duplicate,
    Invalid,
    NotFound,
    SideError,
    Throttled,
    TokenExpired,
    Unavailable,
)

DUPLICATE_CODES = frozenset({"0x80040237", "0x80060892"})
""""Cannot insert duplicate key" / "A record with matching key values already exists"."""
NOT_FOUND_CODES = frozenset({"0x80040217"})
STALE_VERSION_CODES = frozenset({"0x80060882"})
THROTTLE_CODES = frozenset({"0x80072322", "0x80072321", "0x80072326"})
"""Service protection: number of requests, execution time, concurrent requests."""
_DUPLICATE_TEXTS = ("duplicate key", "matching key values already exists")
_TOKEN_EXPIRED_TEXTS = ("version stamp", "perform a full sync", "deltatoken", "delta token")


def odata_error(body: bytes | str | Mapping[str, Any] | None) -> tuple[str | None, str]:
    """The (code, message) of an OData error body; the raw text when it is not one."""
    data: Any = body
    if isinstance(body, bytes | str):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError:
            return None, text.strip()[:500]
    if isinstance(data, Mapping) and isinstance(data.get("error"), Mapping):
        error = data["error"]
        code = error.get("code") or None
        message = str(error.get("message") or "")
        inner = error.get("innererror")
        if isinstance(inner, Mapping) and inner.get("message") and not message:
            message = str(inner["message"])
        return (str(code) if code is not None else None), message
    return None, ""


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header: a number, or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def is_duplicate(code: str | None, message: str) -> bool:
    lowered = message.lower()
    return (code or "").lower() in DUPLICATE_CODES or any(t in lowered for t in _DUPLICATE_TEXTS)


def error_for(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    *,
    delta: bool = False,
) -> SideError:
    """The typed error for one failed answer. `delta`: the request followed a delta link,
    so a refusal of the link itself means the token is no longer accepted."""
    code, message = odata_error(body)
    code_l = (code or "").lower()
    message = message or f"HTTP {status}"
    lowered = message.lower()
    if status in (401, 403):
        return AuthError(message, code)
    if status == 429 or code_l in THROTTLE_CODES:
        retry = retry_after_seconds((headers or {}).get("retry-after")) or 0.0
        return Throttled(message, code, retry_after=retry)
    if delta and (
        status in (400, 404, 410, 422) or any(t in lowered for t in _TOKEN_EXPIRED_TEXTS)
    ):
        return TokenExpired(message, code)
    if any(t in lowered for t in _TOKEN_EXPIRED_TEXTS[:2]):
        return TokenExpired(message, code)
    if is_duplicate(code, message):
        return Duplicate(message, code)
    if status == 412 or code_l in STALE_VERSION_CODES:
        return Conflict(message, code)
    if status == 404 or code_l in NOT_FOUND_CODES:
        return NotFound(message, code)
    if status >= 500 or status == 0:
        return Unavailable(message, code)
    return Invalid(message, code)
