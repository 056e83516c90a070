"""RFC 5322 messages ↔ the mailbox message vocabulary (`fields.MESSAGE_FIELDS`).

POP3 hands us raw bytes and SMTP wants raw bytes, while the kinds speak the neutral vocabulary;
this module is the one translation, so the POP3 reader, the SMTP sender and the EWS helper
(which can fetch and send MIME too) agree on what a message's fields are.

Parsing is lenient — a malformed header yields None or an empty list, never an exception — because
one odd message from the internet must not stop a whole sync.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

KEY_HEADER = "X-MailboxSync-CrmId"
"""Header carrying the CRM id of a message we sent: the idempotency key, as the EWS property."""

THREAD_INDEX_HEADER = "Thread-Index"
"""Outlook's conversation index (base64), the last resort of reply correlation."""


@dataclass(frozen=True)
class Attachment:
    """A file to attach to an outgoing message."""

    name: str
    content: bytes
    content_type: str = "application/octet-stream"


def utc_moment(value: datetime) -> str:
    """The vocabulary's moment format: ISO 8601 UTC with a `Z`, to the second."""
    if value.tzinfo is None:  # RFC 5322 "-0000": the zone is unknown; UTC is the honest guess
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_date(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return utc_moment(email.utils.parsedate_to_datetime(text.strip()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _header(message: Message, name: str) -> str | None:
    """A header's decoded text (RFC 2047 words decoded), None when absent or unreadable."""
    try:
        value: object = message.get(name)
    except Exception:  # policy.default's header parser can fail on broken input: use raw text
        raw = next((v for k, v in message.raw_items() if k.lower() == name.lower()), None)
        value = raw
        if raw is not None:
            with contextlib.suppress(Exception):
                value = str(make_header(decode_header(str(raw))))
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _addresses(message: Message, name: str) -> list[str]:
    """The bare addresses (addr-spec) of an address header, display names dropped."""
    values: list[str] = []
    try:
        for header in message.get_all(name, failobj=[]):
            addresses = getattr(header, "addresses", None)
            if addresses is not None:
                values += [a.addr_spec for a in addresses if a.username]
            else:
                values += [addr for _, addr in email.utils.getaddresses([str(header)]) if addr]
    except Exception:  # unparsable: fall back to the raw text
        raw = [str(v) for v in message.get_all(name, failobj=[])]
        values = [addr for _, addr in email.utils.getaddresses(raw) if "@" in addr]
    return [v.strip("<>") for v in values]


def _ids(text: str | None) -> list[str]:
    """The `<…>` message ids in a header (References, In-Reply-To), in order."""
    return re.findall(r"<[^<>\s]+>", text or "")


def _text_of(part: Message) -> str:
    """A text part's content, decoding with replacement when the charset lies or is unknown."""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, KeyError, AttributeError):
        pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _attachments(message: Message) -> list[dict[str, Any]]:
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        name = part.get_filename()
        disposition = part.get_content_disposition()
        if name is None and disposition != "attachment":
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        found.append(
            {"name": name or "attachment", "size": size, "content_type": part.get_content_type()}
        )
    return found


def _received(message: Message) -> str | None:
    """When our server got the message: the newest Received header's date, else the Date."""
    for value in message.get_all("Received", failobj=[]):
        moment = _parse_date(str(value).rpartition(";")[2])
        if moment:
            return moment
    return _parse_date(_header(message, "Date"))


def parse_message(raw: bytes, folder: str = "inbox") -> dict[str, Any]:
    """Parse RFC 5322 bytes into the message vocabulary.

    Returns every MESSAGE_FIELDS key plus `attachments` (a list of `{name, size, content_type}`:
    names and sizes are what tracking needs to apply the CRM's attachment limit before any
    upload) and `key` (our KEY_HEADER, or None).
    """
    message = BytesParser(policy=policy.default).parsebytes(raw)
    body_part = None
    try:
        body_part = message.get_body(preferencelist=("html", "plain"))
    except Exception:
        body_part = None
    body = _text_of(body_part) if body_part is not None else None
    body_type = (
        "HTML" if body_part is not None and body_part.get_content_subtype() == "html" else "Text"
    )
    attachments = _attachments(message)
    message_ids = _ids(_header(message, "Message-Id"))
    references = _ids(_header(message, "References"))
    reply_to = _ids(_header(message, "In-Reply-To"))
    sender = _addresses(message, "From") or _addresses(message, "Sender")
    return {
        "message_id": message_ids[0] if message_ids else None,
        "in_reply_to": reply_to[0] if reply_to else None,
        "references": " ".join(references) or None,
        "conversation_index": _header(message, THREAD_INDEX_HEADER),
        "subject": _header(message, "Subject"),
        "sender": sender[0] if sender else None,
        "to": _addresses(message, "To"),
        "cc": _addresses(message, "Cc"),
        "bcc": _addresses(message, "Bcc"),
        "body": body or None,
        "body_type": body_type,
        "received": _received(message),
        "sent": _parse_date(_header(message, "Date")),
        "categories": [],
        "folder": folder,
        "has_attachments": bool(attachments),
        "attachments": attachments,
        "key": _header(message, KEY_HEADER),
    }


def _domain_of(address: str | None) -> str | None:
    if address and "@" in address:
        return address.rpartition("@")[2].strip("<> ") or None
    return None


def new_message_id(sender: str | None = None) -> str:
    """A fresh, globally unique Message-Id in the sender's domain (`<…@domain>`)."""
    return email.utils.make_msgid(domain=_domain_of(sender) or "mailbox-sync.invalid")


def _join(values: Iterable[str] | str | None) -> str:
    if values is None:
        return ""
    if isinstance(values, str):
        return values
    return ", ".join(v for v in values if v)


def recipients(fields: Mapping[str, Any]) -> list[str]:
    """Every envelope recipient (To, Cc and Bcc), each once, in order."""
    seen: dict[str, None] = {}
    for name in ("to", "cc", "bcc"):
        value = fields.get(name) or []
        items = [value] if isinstance(value, str) else list(value)
        for _, address in email.utils.getaddresses(items):
            if address:
                seen.setdefault(address, None)
    return list(seen)


def build_message(
    fields: Mapping[str, Any],
    *,
    key: str | None = None,
    attachments: Sequence[Attachment] = (),
    sender: str | None = None,
) -> EmailMessage:
    """Build a MIME message from the vocabulary, with a fresh Message-Id.

    `sender` overrides `fields["sender"]` (the account we send as). Bcc is left out of the headers
    on purpose: pass `recipients(fields)` as the envelope. `key` (the CRM id) goes into
    KEY_HEADER so the message can be recognised if it comes back (sent to self, Bcc).
    """
    message = EmailMessage(policy=policy.SMTP)
    from_address = sender or fields.get("sender")
    if from_address:
        message["From"] = from_address
    if fields.get("to"):
        message["To"] = _join(fields["to"])
    if fields.get("cc"):
        message["Cc"] = _join(fields["cc"])
    message["Subject"] = " ".join(str(fields.get("subject") or "").split())
    message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    message["Message-Id"] = new_message_id(from_address)
    if fields.get("in_reply_to"):
        message["In-Reply-To"] = fields["in_reply_to"]
    references = fields.get("references")
    if references:
        text = references if isinstance(references, str) else " ".join(references)
        message["References"] = " ".join(_ids(text)) or text
    if fields.get("conversation_index"):
        message[THREAD_INDEX_HEADER] = fields["conversation_index"]
    if key:
        message[KEY_HEADER] = key
    body = fields.get("body") or ""
    subtype = "html" if str(fields.get("body_type") or "").lower() == "html" else "plain"
    message.set_content(body, subtype=subtype)
    for attachment in attachments:
        maintype, _, subtype_ = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content,
            maintype=maintype or "application",
            subtype=subtype_ or "octet-stream",
            filename=attachment.name,
        )
    return message
