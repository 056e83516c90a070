"""The tracking token: a prefix and a number in the subject that ties a reply to its CRM email.

Dynamics appends a token such as `CRM:0001234` to the subject of email it sends; a reply keeps
the subject, so the token finds the CRM email again even when the reply's In-Reply-To is lost
(a forward, a client that drops headers). The organization table names the parts: a prefix
(`trackingprefix`, "CRM:" by default) and a number of `trackingtokeniddigits` digits; the CRM
keeps each email's token in `email.trackingtoken` (at most 50 characters, email.md). Our own
number is derived from the email's id, so every computer and every retry gives the same token
without a shared counter. Subjects stay within 255 characters (what Outlook and Exchange keep),
the token included: the subject text is shortened, never the token.
"""

from __future__ import annotations

import re
import uuid

DEFAULT_PREFIX = "CRM:"
DEFAULT_DIGITS = 10
"""Ten digits: ids from GUIDs collide once in ten thousand million pairs, so two CRM emails
practically never share a token (seven, as Dynamics' example, collide among a few thousand)."""
SUBJECT_MAX = 255
TOKEN_MAX = 50
"""`email.trackingtoken` MaxLength (email.md)."""


def format_token(number: int, prefix: str = DEFAULT_PREFIX, digits: int = DEFAULT_DIGITS) -> str:
    """`prefix` followed by `number` with at least `digits` digits (zero-padded)."""
    token = f"{prefix}{number:0{digits}d}"
    if len(token) > TOKEN_MAX:
        raise ValueError(f"a tracking token has at most {TOKEN_MAX} characters")
    return token


def token_for(email_id: str, prefix: str = DEFAULT_PREFIX, digits: int = DEFAULT_DIGITS) -> str:
    """The token of the CRM email `email_id` (a GUID): the same on every computer."""
    try:
        number = uuid.UUID(email_id).int
    except ValueError:
        number = int.from_bytes(email_id.encode(), "big")
    return format_token(number % 10**digits, prefix, digits)


def _pattern(prefix: str) -> re.Pattern[str]:
    # not glued to a word before it ("XCRM:1" is not ours), digits up to the next non-digit
    return re.compile(r"(?<![\w:])" + re.escape(prefix) + r"(\d+)(?!\d)", re.IGNORECASE)


def find_token(subject: str | None, prefix: str = DEFAULT_PREFIX) -> str | None:
    """The last token with `prefix` in `subject` (Dynamics appends it), as it is written with
    the prefix's own spelling; None when there is none."""
    if not subject or not prefix:
        return None
    found = list(_pattern(prefix).finditer(subject))
    if not found:
        return None
    return f"{prefix}{found[-1].group(1)}"


def strip_token(subject: str, prefix: str = DEFAULT_PREFIX) -> str:
    """`subject` without its tokens (and the space before them)."""
    if not prefix:
        return subject
    return re.sub(r"\s*" + _pattern(prefix).pattern, "", subject, flags=re.IGNORECASE).strip()


def add_token(subject: str | None, token: str, limit: int = SUBJECT_MAX) -> str:
    """`subject` ending with `token`, at most `limit` characters: the text is shortened to
    make room; a subject that carries the token already is only shortened if needed."""
    text = (subject or "").strip()
    if token in text.split():
        text = " ".join(part for part in text.split(" ") if part != token).strip()
    room = limit - len(token) - (1 if text else 0)
    if room < 0:
        raise ValueError(f"a token of {len(token)} characters does not fit in {limit}")
    if len(text) > room:
        text = text[:room].rstrip()
    return f"{text} {token}" if text else token
