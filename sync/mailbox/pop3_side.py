"""A POP3 account (+ its SMTP server) as a `MailboxSide` for the kind "messages" only.

POP3 has no contacts, calendar or tasks, and its messages cannot be changed: so `read_changes`
reports new Inbox messages as Upserts (never a Deleted: a message gone from the server was
fetched or removed by another client, which must not untrack the CRM email), and `write` only
creates — a CreateOp sends the mail through SMTP. Updates and deletes are `Invalid` results.

The token is the `Pop3State` token (the seen-UIDL set, compressed). To keep the cost of saving
tokens linear in the mailbox size on a first read of a big mailbox, a token is attached to at
most about `MAX_TOKENS_PER_READ` pages; the pages between carry `token=None` (resume is safe at
any token, the engine deduplicates by Message-Id anyway).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sync.mailbox.mime import parse_message
from sync.mailbox.pop3 import NewMessage, Pop3Reader, Pop3Settings, Pop3State
from sync.mailbox.smtp import SentMail, SmtpSender, SmtpSettings
from sync.sides import (
    AuthError,
    CreateOp,
    Invalid,
    KnownVersions,
    Page,
    Result,
    SideError,
    Unavailable,
    Upsert,
    WriteOp,
    Written,
)

KINDS = ("messages", "email")
""""messages" is the kind name; "email" is the same kind as fields.KIND_FIELDS names it."""

MAX_TOKENS_PER_READ = 32


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

    def _upsert(self, message: NewMessage) -> Upsert:
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
