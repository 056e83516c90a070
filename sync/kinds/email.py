"""A tracked mailbox message as the CRM email to create (pure mapping, no I/O).

From the message vocabulary (`sync.mailbox.fields.MESSAGE_FIELDS`): the subject, the body as
HTML (sanitised: the CRM shows `description` as HTML in the browser, so nothing of a message
may run there — no script or style elements, no `on…` handlers, no `javascript:` URLs; a plain
text message becomes escaped paragraphs), the direction (a message in Sent Items, or sent by
the user, is outgoing), the sent and received times, the Message-Id, In-Reply-To and
conversation index, and the parties From/To/Cc/Bcc resolved to CRM records (an address no
record has stays as the address used).
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from html.parser import HTMLParser
from typing import Any

from sync.mail.correlate import message_id_of, normalize_id
from sync.mail.facade import RecordRef
from sync.mail.ports import BCC, CC, FROM, TO, NewEmail, Party

SUBJECT_MAX = 800
"""`email.subject` MaxLength (email.md)."""
SENT_FOLDERS = frozenset({"sentitems"})

# elements dropped with everything inside them (they run code or restyle the CRM's page)
_DROPPED = frozenset(
    {"script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "noscript",
     "template", "base", "link", "meta", "title", "head", "svg", "math", "form"}
)  # fmt: skip
_VOID = frozenset(
    {"area", "br", "col", "hr", "img", "input", "source", "track", "wbr", "param", "keygen"}
)
_URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "background", "lowsrc", "dynsrc", "poster",
     "cite", "longdesc", "usemap", "data", "codebase", "xlink:href", "srcset", "ping"}
)  # fmt: skip
_SAFE_SCHEMES = ("http:", "https:", "mailto:", "tel:", "cid:", "#", "/")
_CONTROL = re.compile(r"[\x00-\x20\x7f]+")


def _safe_url(name: str, value: str) -> bool:
    """Whether a URL attribute's value is harmless: a plain link or an embedded image."""
    cleaned = _CONTROL.sub("", html.unescape(value)).lower()
    if ":" not in cleaned.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]:
        return True  # relative (no scheme)
    if cleaned.startswith(_SAFE_SCHEMES):
        return True
    return name == "src" and cleaned.startswith("data:image/") and "svg" not in cleaned[:30]


def _safe_style(value: str) -> bool:
    lowered = _CONTROL.sub("", html.unescape(value)).lower()
    return not any(bad in lowered for bad in ("expression(", "javascript:", "vbscript:",
                                               "url(", "@import", "behavior:", "-moz-binding"))  # fmt: skip


class _Sanitizer(HTMLParser):
    """Rebuilds HTML keeping only harmless elements and attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping: list[str] = []

    def _attributes(self, attrs: Iterable[tuple[str, str | None]]) -> str:
        kept: list[str] = []
        for raw_name, value in attrs:
            name = raw_name.lower()
            if (
                name.startswith("on")
                or name in ("srcdoc", "formaction")
                or ":" in name.replace("xlink:href", "")
            ):
                continue
            text = value or ""
            if name in _URL_ATTRIBUTES and not _safe_url(name, text):
                continue
            if name == "style" and not _safe_style(text):
                continue
            kept.append(
                f' {name}="{html.escape(text, quote=True)}"' if value is not None else f" {name}"
            )
        return "".join(kept)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping:
            if tag in _DROPPED and tag not in _VOID:
                self.skipping.append(tag)
            return
        if tag in _DROPPED:
            if tag not in ("base", "link", "meta"):  # void elements: nothing to skip
                self.skipping.append(tag)
            return
        self.out.append(f"<{tag}{self._attributes(attrs)}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping or tag in _DROPPED:
            return
        self.out.append(f"<{tag}{self._attributes(attrs)}>")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            elif tag in self.skipping:
                while self.skipping and self.skipping.pop() != tag:
                    pass
            return
        if tag in _DROPPED or tag in _VOID:
            return
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(html.escape(data, quote=False))

    # comments (Internet Explorer's conditional ones hold markup), doctypes and processing
    # instructions are dropped: handle_comment / handle_decl / handle_pi do nothing
    def unknown_decl(self, data: str) -> None:  # CDATA sections: their text only
        if not self.skipping and data.upper().startswith("CDATA["):
            self.out.append(html.escape(data[6:], quote=False))


def sanitize_html(text: str) -> str:
    """`text` without anything that runs or loads code in a browser."""
    parser = _Sanitizer()
    parser.feed(text)
    parser.close()
    return "".join(parser.out)


def text_to_html(text: str) -> str:
    """Plain text as HTML: paragraphs at blank lines, line breaks kept, everything escaped."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n").strip())
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in paragraph.split("\n")) + "</p>"
        for paragraph in paragraphs
        if paragraph.strip()
    )


def body_html(fields: Mapping[str, Any]) -> str:
    """The message body as safe HTML."""
    body = str(fields.get("body") or "")
    if not body:
        return ""
    if fields.get("body_type") == "HTML":
        return sanitize_html(body)
    return text_to_html(body)


def is_outgoing(fields: Mapping[str, Any], folder: str, my_addresses: Collection[str]) -> bool:
    """A message in Sent Items, or one the user sent (a copy filed elsewhere), is outgoing."""
    if folder in SENT_FOLDERS:
        return True
    sender = str(fields.get("sender") or "").strip().lower()
    return bool(sender) and sender in {a.lower() for a in my_addresses}


def _addresses(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        value = [value]
    return [str(a).strip() for a in value if a and "@" in str(a)]


def addresses(fields: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(participation mask, address) of every party, From first, each address once per mask."""
    found: list[tuple[int, str]] = []
    for mask, name in ((FROM, "sender"), (TO, "to"), (CC, "cc"), (BCC, "bcc")):
        seen: set[str] = set()
        for address in _addresses(fields.get(name)):
            if address.lower() not in seen:
                seen.add(address.lower())
                found.append((mask, address))
    return found


def all_addresses(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every address of the messages, once (lower-case), for one resolve call."""
    found: dict[str, None] = {}
    for fields in messages:
        found.update(dict.fromkeys(a.lower() for _, a in addresses(fields)))
    return list(found)


def counterparts(fields: Mapping[str, Any], outgoing: bool) -> list[str]:
    """Whom a message is from (incoming) or to (outgoing): what "email from CRM records"
    looks at."""
    if outgoing:
        return [a.lower() for m, a in addresses(fields) if m != FROM]
    return [a.lower() for m, a in addresses(fields) if m == FROM]


def parties(fields: Mapping[str, Any], resolved: Mapping[str, RecordRef]) -> tuple[Party, ...]:
    """The email's parties, each address resolved (lower-case key) or kept as used."""
    return tuple(
        Party(mask, address, resolved.get(address.lower())) for mask, address in addresses(fields)
    )


def my_party(
    fields: Mapping[str, Any], me: RecordRef, my_addresses: Collection[str], outgoing: bool
) -> Party:
    """The party a second tracker adds for themselves: as the sender of their own sent copy,
    else as the recipient their address is in (a blind copy when it is in none)."""
    mine = {a.lower() for a in my_addresses}
    address = next(iter(sorted(mine)), "")
    if outgoing:
        return Party(FROM, address, me)
    for mask, candidate in addresses(fields):
        if mask != FROM and candidate.lower() in mine:
            return Party(mask, candidate, me)
    return Party(BCC, address, me)


def has_party(existing: Sequence[Party], me: RecordRef, my_addresses: Collection[str]) -> bool:
    """Whether the user is a party of the email already (by record or by address)."""
    mine = {a.lower() for a in my_addresses}
    return any(
        (p.record is not None and p.record.id.lower() == me.id.lower())
        or (p.record is None and p.address.lower() in mine)
        for p in existing
    )


def new_email(
    email_id: str,
    item_id: str,
    fields: Mapping[str, Any],
    *,
    outgoing: bool,
    resolved: Mapping[str, RecordRef],
    regarding: RecordRef | None,
) -> NewEmail:
    """The CRM email for a tracked message (its id chosen by the caller, before the create)."""
    subject = str(fields.get("subject") or "")[:SUBJECT_MAX]
    references = [normalize_id(fields.get("in_reply_to"))]
    return NewEmail(
        id=email_id,
        subject=subject,
        body_html=body_html(fields),
        message_id=message_id_of(fields, item_id),
        outgoing=outgoing,
        sent_on=fields.get("sent") or None,
        received_on=None if outgoing else (fields.get("received") or None),
        parties=parties(fields, resolved),
        in_reply_to=references[0],
        conversation_index=fields.get("conversation_index") or None,
        tracking_token=None,
        regarding=regarding,
    )
