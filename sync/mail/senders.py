"""The two ways outgoing CRM email leaves: Exchange (EWS) and SMTP (for POP3 accounts).

Both implement `sync.mail.outgoing.MailSender`. They differ in what they can tell afterwards:
Exchange keeps a sent copy in Sent Items carrying the CRM email's id in our key property, so
"did it go out?" has an answer; an SMTP server keeps nothing we can ask, so the journal's
"sending" row is all there is (see sync.mail.outgoing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sync.mail.outgoing import SentCopy, utc_now
from sync.mailbox.ews import EwsSide
from sync.mailbox.mime import Attachment
from sync.mailbox.smtp import SmtpSender
from sync.sides import SideError, Unavailable

SENT_ITEMS = "messages:sentitems"


def sent_copy(side: Any, email_id: str, message_id: str) -> SentCopy | None:
    """The copy in Sent Items of a mailbox side (EWS or Graph) carrying the CRM email's id as
    its key: the proof that the message went out."""
    copy = side.find_by_key(SENT_ITEMS, [email_id]).get(email_id)
    if copy is None:
        return None
    fields = copy.fields
    return SentCopy(fields.get("message_id") or message_id, fields.get("sent") or utc_now())


class EwsMailSender:
    """SendAndSaveCopy through `EwsSide.send`, with the Message-Id we chose; the sent copy in
    Sent Items (found by our key property) is the proof that a message went out."""

    finds_sent_copies = True

    def __init__(self, side: EwsSide) -> None:
        self.side = side
        self.address: str | None = side.connection.email

    def find_sent(self, email_id: str, message_id: str) -> SentCopy | None:
        return sent_copy(self.side, email_id, message_id)

    def send(
        self,
        fields: Mapping[str, Any],
        key: str,
        attachments: Sequence[Attachment],
        handoff: Callable[[], None],
    ) -> SentCopy:
        handoff()
        written = self.side.send(fields, key, attachments)
        copy = written.fields or {}
        return SentCopy(
            copy.get("message_id") or str(fields["message_id"]), copy.get("sent") or utc_now()
        )

    def maybe_sent(self, error: SideError) -> bool:
        # Whatever failed, the next run looks in Sent Items before sending again.
        return True


class SmtpMailSender:
    """SMTP submission with the Message-Id we chose. `handoff` is called once the session is
    open (a server that cannot be reached never counts as "may have sent")."""

    finds_sent_copies = False

    def __init__(self, sender: SmtpSender) -> None:
        self.sender = sender
        self.address = sender.settings.from_address

    def find_sent(self, email_id: str, message_id: str) -> SentCopy | None:
        return None

    def send(
        self,
        fields: Mapping[str, Any],
        key: str,
        attachments: Sequence[Attachment],
        handoff: Callable[[], None],
    ) -> SentCopy:
        with self.sender.session() as session:
            handoff()
            sent = session.send(
                fields,
                key=key,
                attachments=attachments,
                message_id=str(fields["message_id"]),
            )
        return SentCopy(sent.message_id, sent.sent, dict(sent.refused))

    def maybe_sent(self, error: SideError) -> bool:
        # An SMTP reply (4xx, 5xx) means the server did not take the message; only a broken
        # connection or a timeout leaves it unknown (sync.mailbox.smtp: Unavailable, no code).
        return isinstance(error, Unavailable) and error.code is None
