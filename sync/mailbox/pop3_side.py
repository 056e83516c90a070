"""A POP3 account (+ its SMTP server) as a `MailboxSide` for the kind "messages" only.

POP3 has no contacts, calendar or tasks, and its messages cannot be changed: so `read_changes`
reports new Inbox messages as Upserts (never a Deleted: a message gone from the server was
fetched or removed by another client, which must not untrack the CRM email), and `write` only
creates — a CreateOp sends the mail through SMTP. Updates and deletes are `Invalid` results.

The token is the `Pop3State` token (the seen-UIDL set, compressed). To keep the cost of saving
tokens linear in the mailbox size on a first read of a big mailbox, a token is attached to at
most about `MAX_TOKENS_PER_READ` pages; the pages between carry `token=None` (resume is safe at
any token, the engine deduplicates by Message-Id anyway).

It is also a `TrackingMailbox` (sync.mail.ports) as far as POP3 goes: attachments come from the
MIME it fetched (kept for the latest messages, fetched again otherwise); POP3 has no categories
(`set_categories` answers each id with an Invalid result saying so, raising nothing) and no
folders (`subfolders` is empty); `recent` is the newest messages by arrival order, from their
headers (TOP).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from sync.mail.ports import AttachmentData
from sync.mailbox.mime import parse_message
from sync.mailbox.pop3 import NewMessage, Pop3Reader, Pop3Settings, Pop3State
from sync.mailbox.smtp import SentMail, SmtpSender, SmtpSettings
from sync.sides import (
    AuthError,
    CreateOp,
    Invalid,
    KnownVersions,
    NotFound,
    Page,
    Result,
    SideError,
    Unavailable,
    Upsert,
    WriteOp,
    Written,
)

KINDS = ("messages", "email", "messages:inbox")
""""messages" is the kind name; "email" is the same kind as fields.KIND_FIELDS names it, and
"messages:inbox" as email tracking names a folder's messages (POP3 has the Inbox only)."""

MAX_TOKENS_PER_READ = 32
KEEP_RAW_BYTES = 32 * 1024 * 1024
"""The MIME of the latest messages read is kept up to this size, so tracking can take their
attachments without fetching them again."""
POP3_NO_CATEGORIES = "pop3-no-categories"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"a POP3 mailbox has only messages, not {kind!r}")


class Pop3Side:
    """The mailbox side of a POP3 + SMTP account (see the module docstring)."""

    name = "mailbox"

    def __init__(
        self,
        pop3: Pop3Settings | Pop3Reader,
        smtp: SmtpSettings | SmtpSender | None = None,
        *,
        page_size: int = 50,
        folder: str = "inbox",
    ) -> None:
        self.reader = pop3 if isinstance(pop3, Pop3Reader) else Pop3Reader(pop3)
        self.sender = SmtpSender(smtp) if isinstance(smtp, SmtpSettings) else smtp
        self.page_size = max(1, page_size)
        self.folder = folder
        self._raw: OrderedDict[str, bytes] = OrderedDict()
        self._raw_bytes = 0

    def _keep(self, message: NewMessage) -> None:
        """Remember a message's MIME (bounded by KEEP_RAW_BYTES, the oldest dropped first)."""
        if message.uidl in self._raw:
            return
        self._raw[message.uidl] = message.raw
        self._raw_bytes += len(message.raw)
        while self._raw_bytes > KEEP_RAW_BYTES and len(self._raw) > 1:
            _, dropped = self._raw.popitem(last=False)
            self._raw_bytes -= len(dropped)

    def _upsert(self, message: NewMessage) -> Upsert:
        self._keep(message)
        fields = parse_message(message.raw, folder=self.folder)
        key = fields.pop("key")
        # A POP3 message never changes, so its UIDL is its id and there is no version.
        return Upsert(id=message.uidl, version=None, fields=fields, key=key)

    def read_changes(
        self, kind: str, token: str | None, known: KnownVersions | None = None
    ) -> Iterator[Page]:
        """New messages since `token` (None: all), `page_size` per page, in arrival order."""
        _check_kind(kind)
        state = Pop3State.from_token(token)
        stride = 1
        for number, batch in enumerate(self.reader.new_messages(state, self.page_size), 1):
            if number == 1:
                total_pages = -(-batch.total_new // self.page_size)
                stride = max(1, -(-total_pages // MAX_TOKENS_PER_READ))
            save = batch.last or number % stride == 0
            yield Page(
                changes=[self._upsert(m) for m in batch.messages],
                token=batch.state.to_token() if save else None,
                last=batch.last,
            )

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        """The messages with these UIDLs still on the server."""
        _check_kind(kind)
        found = self.reader.fetch(ids)
        return {uidl: self._upsert(NewMessage(uidl, raw)) for uidl, raw in found.items()}

    def find_by_key(self, kind: str, keys: Sequence[str]) -> dict[str, Upsert]:
        """Always empty: POP3 cannot search, and sent mail is not in the POP3 Inbox.

        So a crash between an SMTP send and saving its link may send that mail again; the
        Message-Id of the copy still keeps the CRM free of duplicates.
        """
        _check_kind(kind)
        return {}

    # --- email tracking (TrackingMailbox) --------------------------------------------------

    def attachments(self, item_id: str, limit: int) -> list[AttachmentData]:
        """The message's attachments from its MIME (kept since it was read, else fetched:
        one RETR): those over `limit` bytes without content. NotFound when the server no
        longer has the message."""
        raw = self._raw.get(item_id)
        if raw is None:
            raw = self.reader.fetch([item_id]).get(item_id)
            if raw is None:
                raise NotFound(f"the POP3 server no longer has message {item_id}", "pop3-gone")
            self._keep(NewMessage(item_id, raw))
        return mime_attachments(raw, limit)

    def set_categories(
        self, ids: Sequence[str], add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> list[Result]:
        """POP3 has no categories: every id gets an Invalid result saying so (nothing raised,
        nothing sent to the server)."""
        return [
            Invalid(
                "a POP3 mailbox has no categories: the message is tracked without one",
                code=POP3_NO_CATEGORIES,
            )
            for _ in ids
        ]

    def subfolders(self, parent: str = "inbox") -> list[tuple[str, str]]:
        """POP3 has no folders (RFC 1939 reaches the Inbox only)."""
        return []

    def recent(self, folder: str, limit: int) -> list[Upsert]:
        """The newest `limit` messages by arrival order (the server's listing), newest first,
        from their headers (TOP n 0: no body is fetched). Only the Inbox exists."""
        if folder != self.folder or limit <= 0:
            return []
        out: list[Upsert] = []
        with self.reader.session() as session:
            listing = session.listing()
            for number, uidl in reversed(listing[-limit:]):
                head = session.headers(number, 0)
                fields = parse_message(head, folder=self.folder)
                key = fields.pop("key")
                for name in ("attachments", "body", "body_type"):
                    fields.pop(name, None)
                fields["has_attachments"] = _multipart_mixed(head)
                out.append(Upsert(id=uidl, version=None, fields=fields, key=key))
        return out

    def write(self, kind: str, ops: Sequence[WriteOp]) -> list[Result]:
        """Send each CreateOp through SMTP on one connection; one result per op, in order.

        After an AuthError or Unavailable the remaining ops get the same error unsent, so no
        result is lost and nothing is sent twice within the call.
        """
        _check_kind(kind)
        results: list[Result | None] = [None] * len(ops)
        creates: list[tuple[int, CreateOp]] = []
        for index, op in enumerate(ops):
            if isinstance(op, CreateOp):
                creates.append((index, op))
            else:
                results[index] = Invalid(
                    f"a POP3 mailbox cannot {type(op).__name__.removesuffix('Op').lower()} "
                    "messages (POP3 is read-only; mail is only sent)",
                    code="pop3-readonly",
                )
        if creates:
            self._send_all(creates, results)
        return [r if r is not None else Invalid("not processed") for r in results]

    def _send_all(self, creates: list[tuple[int, CreateOp]], results: list[Result | None]) -> None:
        if self.sender is None:
            for index, _ in creates:
                results[index] = Invalid("no SMTP server is configured for sending", code="smtp")
            return
        fatal: SideError | None = None
        try:
            with self.sender.session() as session:
                for index, op in creates:
                    if fatal is not None:
                        results[index] = fatal
                        continue
                    try:
                        sent = session.send(op.fields, key=op.key)
                    except (AuthError, Unavailable) as error:
                        fatal = error
                        results[index] = error
                    except SideError as error:
                        results[index] = error
                    else:
                        results[index] = Written(
                            id=sent.message_id,
                            version=None,
                            fields=_sent_fields(op.fields, sent),
                        )
        except SideError as error:  # the connection itself failed (AUTH, TLS, a 5xx greeting)
            for index, _ in creates:
                if results[index] is None:
                    results[index] = error


def _sent_fields(fields: Mapping[str, Any], sent: SentMail) -> dict[str, Any]:
    """The vocabulary of what went out: the caller's fields plus what sending decided."""
    result = dict(fields)
    result.update(message_id=sent.message_id, sender=sent.sender, sent=sent.sent)
    result.pop("key", None)
    if sent.refused:
        result["refused_recipients"] = dict(sent.refused)
    return result


def _multipart_mixed(head: bytes) -> bool:
    """Whether a header block announces a message with attachments (multipart/mixed)."""
    message = BytesParser(policy=policy.default).parsebytes(head, headersonly=True)
    return message.get_content_type() == "multipart/mixed"


def mime_attachments(raw: bytes, limit: int) -> list[AttachmentData]:
    """The attachments of RFC 5322 bytes as tracking takes them: each named or `attachment`
    part (as `mime.parse_message` counts them), an attached message whole, as its bytes
    (message/rfc822); content only when the decoded size is at most `limit`."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    return [_attachment(name, kind, data, limit) for name, kind, data in _parts(message)]


def _parts(part: Message) -> Iterator[tuple[str, str, bytes]]:
    """(name, content type, bytes) of the attachments under `part`, not descending into an
    attached message (it is one attachment)."""
    for child in part.iter_parts() if isinstance(part, EmailMessage) else ():
        if child.get_content_type() == "message/rfc822":
            inner = child.get_payload()
            attached = inner[0] if isinstance(inner, list) and inner else None
            data = attached.as_bytes() if isinstance(attached, Message) else b""
            subject = attached.get("Subject") if isinstance(attached, Message) else None
            name = child.get_filename() or str(subject or "message")
            if not name.lower().endswith((".eml", ".msg")):
                name += ".eml"
            yield name, "message/rfc822", data
        elif child.is_multipart():
            yield from _parts(child)
        else:
            filename = child.get_filename()
            if filename is None and child.get_content_disposition() != "attachment":
                continue
            payload = child.get_payload(decode=True)
            content = payload if isinstance(payload, bytes) else b""
            yield filename or "attachment", child.get_content_type(), content


def _attachment(name: str, content_type: str, content: bytes, limit: int) -> AttachmentData:
    size = len(content)
    return AttachmentData(name, content_type, size, content if size <= limit else None)
