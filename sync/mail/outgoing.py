"""Outgoing CRM email: Pending Send emails go out through the user's mailbox, exactly once.

The stage (`send_pending`) works over three small ports so it is tested in memory and against the
sandbox alike: the CRM's outbox (`sync.crm.outbox.DataverseOutbox`), a mail sender (EWS or SMTP,
`sync.mail.senders`) and the send journal in the local database (`sync.mail.journal`).

Why a journal and a chosen Message-Id: sending and marking Sent are two services, so a crash can
fall between them. The Message-Id is chosen once and written to the journal before the message is
handed over; the next run then knows what it may already have sent:
- EWS keeps a copy in Sent Items carrying the CRM email's id (our key property): found → it went
  out, so it is only marked Sent. Not found → it did not go out, and is sent (same Message-Id).
- SMTP keeps nothing. A journal row still "sending" means the process died while the server had
  the message: it may have gone out. It is marked Sent, never sent again, and an info alert asks
  the user to check with the recipient (at most once beats twice for mail).
A send the server refuses (a bad recipient) marks the CRM email Failed with the server's words
and raises an alert; throttling or an outage stops the stage with the rest left pending.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sync.mail import token
from sync.mailbox.mime import Attachment
from sync.messages import to_json
from sync.setup.messages import N_, Msg
from sync.sides import AuthError, Invalid, SideError, Throttled, Unavailable

log = logging.getLogger(__name__)

QUEUED, SENDING, ACCEPTED, SENT, FAILED = "queued", "sending", "accepted", "sent", "failed"
"""Journal states: Message-Id chosen but not handed over · handed to the server (it may have gone
out) · the server accepted it · marked Sent in the CRM · the server refused it."""

ALERT_REFUSED = "outgoing-refused"
ALERT_UNCERTAIN = "outgoing-uncertain"
ALERT_PARTIAL = "outgoing-partial"
ALERT_NOT_MARKED = "outgoing-not-marked"
"""Alert codes; each alert's subject is the CRM email's id (one open alert per email)."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_message_id(sender: str | None) -> str:
    """`<uuid@domain of the sender>`: globally unique, in the sender's own domain."""
    domain = (sender or "").rpartition("@")[2].strip("<> ") if "@" in (sender or "") else ""
    domain = domain or "mailbox-sync.invalid"
    return f"<{uuid.uuid4().hex}@{domain}>"


@dataclass(frozen=True)
class OutgoingEmail:
    """A CRM email in Pending Send, as the outbox lists it."""

    id: str
    subject: str
    body_html: str
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    tracking_token: str | None = None
    in_reply_to: str | None = None
    unresolved: tuple[str, ...] = ()
    """Recipients the CRM names without an email address (a record that has none): the email
    cannot go out as the user wrote it, so it fails instead of reaching fewer people."""

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to + self.cc + self.bcc


@dataclass(frozen=True)
class SentCopy:
    """A message the server accepted: its Internet Message-Id and when it went out."""

    message_id: str
    sent_at: str
    """ISO 8601 UTC moment."""
    refused: Mapping[str, str] = field(default_factory=dict)
    """address → the server's reply, for recipients refused while the others were accepted."""


@dataclass(frozen=True)
class JournalEntry:
    """What the local journal knows of one CRM email's sending."""

    email_id: str
    message_id: str | None
    """None when the email failed before a Message-Id was chosen (no recipients)."""
    state: str
    handed_at: str | None = None
    sent_at: str | None = None
    reason: str | None = None


class Outbox(Protocol):
    """The CRM side: the user's emails in Pending Send, and marking them."""

    def pending(self) -> list[OutgoingEmail]:
        """The user's emails in Pending Send, oldest first."""
        ...

    def attachments(self, email_id: str) -> list[Attachment]:
        """The email's attachments (activitymimeattachments), with their content."""
        ...

    def mark_sent(
        self, email_id: str, message_id: str, sent_at: str, tracking_token: str | None
    ) -> None:
        """Record the email as sent, with the Message-Id it went out with."""
        ...

    def mark_failed(self, email_id: str, reason: str) -> None:
        """Take the email out of Pending Send as Failed, keeping `reason` where the user sees it."""
        ...


class MailSender(Protocol):
    """The mailbox side: hands messages to the mail server."""

    address: str | None
    """The address mail goes out from (the Message-Id's domain)."""
    finds_sent_copies: bool
    """Whether `find_sent` can tell that a message already went out (EWS: Sent Items)."""

    def find_sent(self, email_id: str, message_id: str) -> SentCopy | None:
        """The sent copy of the CRM email `email_id`, if it went out; None when unknown."""
        ...

    def send(
        self,
        fields: Mapping[str, Any],
        key: str,
        attachments: Sequence[Attachment],
        handoff: Callable[[], None],
    ) -> SentCopy:
        """Send the message (mailbox vocabulary, `message_id` included) carrying `key`.

        `handoff` is called right before the message is handed to the server (after connecting):
        from then on it may go out. Raises Invalid when the server refuses the message."""
        ...

    def maybe_sent(self, error: SideError) -> bool:
        """Whether, after `handoff`, a failure may still have let the message go out."""
        ...


class Journal(Protocol):
    """The send journal (`sync.mail.journal.SendJournal`), durable before each hand-over."""

    def entry(self, email_id: str) -> JournalEntry | None: ...

    def queued(self, email_id: str, message_id: str) -> None: ...

    def sending(self, email_id: str, message_id: str, subject: str) -> None: ...

    def accepted(self, email_id: str, copy: SentCopy) -> None: ...

    def sent(self, email_id: str) -> None: ...

    def failed(self, email_id: str, message_id: str | None, reason: str) -> None: ...

    def alert(
        self, code: str, subject: str, severity: str, title: Msg, message: Msg, action: Msg
    ) -> None: ...


@dataclass
class OutgoingResult:
    """What one run of the stage did."""

    sent: int = 0
    failed: int = 0
    already_sent: int = 0
    """Found to have gone out already (a previous run or install): only marked Sent."""
    errors: int = 0
    message: str | None = None
    message_msg: Any = None
    """`message` as a message id with parameters (sync.messages.to_json), for the pages."""
    stopped: bool = False
    """Throttling or an outage stopped the stage; the rest stays pending for the next run."""

    def as_counts(self) -> dict[str, Any]:
        """The messaging run's counts["outgoing"]."""
        counts: dict[str, Any] = {
            "sent": self.sent,
            "failed": self.failed,
            "already_sent": self.already_sent,
            "errors": self.errors,
        }
        if self.message:
            counts["message"] = self.message
            if self.message_msg:
                counts["message_msg"] = self.message_msg
        return counts

    def say(self, message: Msg) -> None:
        """Why the stage stopped or what failed last, in English and as a message id."""
        self.message, self.message_msg = str(message), to_json(message)


TrackingToken = Callable[[OutgoingEmail], str]
"""The tracking token an email goes out with; it ends the subject (sync.mail.token.add_token,
≤ 255 characters) and is recorded on the CRM email, as Dynamics does."""
Progress = Callable[[int, int, str], None]


def crm_tokens(prefix: str = token.DEFAULT_PREFIX) -> TrackingToken:
    """The email's own token (the CRM's `trackingtoken`), else one made from its id with the
    profile's prefix (sync.mail.token.token_for: the same on every computer and retry)."""

    def token_of(email: OutgoingEmail) -> str:
        return email.tracking_token or token.token_for(email.id, prefix)

    return token_of


def send_pending(
    outbox: Outbox,
    sender: MailSender,
    journal: Journal,
    *,
    progress: Progress | None = None,
    tracking_token: TrackingToken | None = None,
) -> OutgoingResult:
    """Send the user's Pending Send emails, oldest first, each exactly once (see module doc).

    `tracking_token` (the profile's `tracking_token.enabled`; e.g. `crm_tokens(prefix)`): the
    subject carries the email's token and the CRM email records it.

    AuthError is raised (the messaging job alerts on it); Throttled/Unavailable stop the stage
    with `stopped` set and nothing more marked; any other failure of one email counts as an
    error and the next email goes on."""
    result = OutgoingResult()
    try:
        emails = outbox.pending()
    except AuthError:
        raise
    except SideError as error:  # throttled, down, or the query refused: nothing to do this run
        result.stopped = True
        result.say(
            N_("reading Pending Send email: %(error)s", error=error.message or type(error).__name__)
        )
        if not isinstance(error, Throttled | Unavailable):
            result.errors += 1
        return result
    total = len(emails)
    stage = _Stage(outbox, sender, journal, tracking_token)
    for done, email in enumerate(emails):
        if progress is not None:
            progress(done, total, "sending email")
        try:
            outcome = stage.one(email)
        except AuthError:
            raise
        except (Throttled, Unavailable) as error:
            log.info("outgoing email stopped at %s: %s", email.id, error)
            result.stopped = True
            result.say(
                N_(
                    "%(error)s: %(detail)s; the rest waits",
                    error=type(error).__name__,
                    detail=error.message,
                )
            )
            break
        except SideError as error:
            log.warning("outgoing email %s failed: %s", email.id, error)
            result.errors += 1
            result.message = f"{email.subject!r}: {error.message or type(error).__name__}"
            continue
        setattr(result, outcome, getattr(result, outcome) + 1)
    if progress is not None and not result.stopped:
        progress(total, total, "sending email")
    return result


class _Stage:
    def __init__(
        self,
        outbox: Outbox,
        sender: MailSender,
        journal: Journal,
        tracking_token: TrackingToken | None,
    ) -> None:
        self.outbox = outbox
        self.sender = sender
        self.journal = journal
        self.tracking_token = tracking_token

    def token(self, email: OutgoingEmail) -> str | None:
        return self.tracking_token(email) if self.tracking_token else email.tracking_token

    def one(self, email: OutgoingEmail) -> str:
        """Send or settle one email; the name of the OutgoingResult count it adds to. What went
        out already is settled first, whatever its recipients look like by now."""
        entry = self.journal.entry(email.id)
        state = entry.state if entry is not None else None
        if entry is not None and entry.message_id and state in (ACCEPTED, SENT):
            copy = SentCopy(entry.message_id, entry.sent_at or entry.handed_at or utc_now())
            return self._mark(email, copy, "already_sent")
        chosen = entry.message_id if entry is not None else None
        message_id = chosen or new_message_id(self.sender.address)
        if self.sender.finds_sent_copies:
            found = self.sender.find_sent(email.id, message_id)
            if found is not None:
                self.journal.accepted(email.id, found)
                return self._mark(email, found, "already_sent")
        elif entry is not None and state == SENDING:
            copy = SentCopy(message_id, entry.handed_at or utc_now())
            self.journal.accepted(email.id, copy)
            self.journal.alert(
                ALERT_UNCERTAIN,
                email.id,
                "info",
                N_("An email may have been sent before a crash"),
                N_(
                    "Mailbox Sync stopped while the mail server had the email “%(subject)s” "
                    "(Message-Id %(message_id)s). It was not sent again, to avoid a duplicate, "
                    "and is marked Sent in the CRM.",
                    subject=email.subject,
                    message_id=message_id,
                ),
                N_(
                    "Check with the recipients (%(recipients)s) that it arrived; if it did not, "
                    "send it again from the CRM.",
                    recipients=", ".join(email.recipients),
                ),
            )
            return self._mark(email, copy, "already_sent")
        if email.unresolved or not email.recipients:
            return self._refused(email, None, _unaddressed(email))
        return self._send(email, message_id)

    def _send(self, email: OutgoingEmail, message_id: str) -> str:
        subject = email.subject
        if self.tracking_token is not None:
            subject = token.add_token(email.subject, self.tracking_token(email))
        fields: dict[str, Any] = {
            "message_id": message_id,
            "subject": subject,
            "body": email.body_html,
            "body_type": "HTML",
            "to": list(email.to),
            "cc": list(email.cc),
            "bcc": list(email.bcc),
        }
        if email.in_reply_to:
            fields["in_reply_to"] = email.in_reply_to
            fields["references"] = email.in_reply_to
        attachments = self.outbox.attachments(email.id)
        handed = False

        def handoff() -> None:
            nonlocal handed
            self.journal.sending(email.id, message_id, subject)  # committed: on disk first
            handed = True

        try:
            copy = self.sender.send(fields, email.id, attachments, handoff)
        except AuthError:
            if handed:
                self.journal.queued(email.id, message_id)
            raise
        except Invalid as refusal:
            return self._refused(email, message_id if handed else None, refusal.message)
        except SideError as error:
            if handed and not self.sender.maybe_sent(error):
                self.journal.queued(email.id, message_id)  # the server said no: not sent
            raise
        self.journal.accepted(email.id, copy)
        if copy.refused:
            refused = "; ".join(f"{a}: {r}" for a, r in copy.refused.items())
            self.journal.alert(
                ALERT_PARTIAL,
                email.id,
                "warning",
                N_("Some recipients of an email were refused"),
                N_(
                    "The email “%(subject)s” was sent, but the mail server refused these "
                    "recipients: %(refused)s.",
                    subject=email.subject,
                    refused=refused,
                ),
                N_("Check these addresses in the CRM and send them the email again."),
            )
        return self._mark(email, copy, "sent")

    def _mark(self, email: OutgoingEmail, copy: SentCopy, outcome: str) -> str:
        try:
            self.outbox.mark_sent(email.id, copy.message_id, copy.sent_at, self.token(email))
        except (AuthError, Throttled, Unavailable):
            raise  # the journal keeps "accepted": the next run marks it, never sends it again
        except SideError as error:
            self.journal.alert(
                ALERT_NOT_MARKED,
                email.id,
                "error",
                N_("An email was sent but could not be marked Sent"),
                N_(
                    "The email “%(subject)s” went out (Message-Id %(message_id)s), but the CRM "
                    "refused to mark it Sent: %(reason)s",
                    subject=email.subject,
                    message_id=copy.message_id,
                    reason=error.message or type(error).__name__,
                ),
                N_(
                    "It is not sent again. Mailbox Sync retries marking it at the next run; if "
                    "this alert stays, mark the email as sent in the CRM yourself."
                ),
            )
            raise
        self.journal.sent(email.id)
        return outcome

    def _refused(self, email: OutgoingEmail, message_id: str | None, reason: str) -> str:
        self.journal.failed(email.id, message_id, reason)
        self.outbox.mark_failed(email.id, reason)
        self.journal.alert(
            ALERT_REFUSED,
            email.id,
            "error",
            N_("An email could not be sent"),
            N_(
                "The email “%(subject)s” was not sent: %(reason)s",
                subject=email.subject,
                reason=reason,
            ),
            N_("It is marked Failed in the CRM. Correct the recipients there and send it again."),
        )
        return "failed"


def _unaddressed(email: OutgoingEmail) -> str:
    if email.unresolved:
        return str(
            N_(
                "these recipients have no email address in the CRM: %(names)s",
                names=", ".join(email.unresolved),
            )
        )
    return str(N_("the email has no recipients (To, Cc or Bcc)"))
