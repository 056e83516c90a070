"""The outgoing-email stage's rules (`send_pending`) over an in-memory outbox and mail servers,
with the real send journal in a local SQLite database.

Two fake servers stand for the two transports: one that keeps a copy of what it sent, findable by
the CRM email's id (Exchange's Sent Items), and one that keeps nothing (an SMTP server). A crash
is an exception that is not a SideError, raised where a killed process would have stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sync.mail.journal import SendJournal
from sync.mail.outgoing import (
    ACCEPTED,
    ALERT_NOT_MARKED,
    ALERT_PARTIAL,
    ALERT_REFUSED,
    ALERT_UNCERTAIN,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    OutgoingEmail,
    OutgoingResult,
    SentCopy,
    crm_tokens,
    send_pending,
)
from sync.mail.token import token_for
from sync.mailbox.mime import Attachment
from sync.runs import open_alerts
from sync.sides import AuthError, Invalid, NotFound, SideError, Throttled, Unavailable
from sync.store.db import Database, open_database


class Crashed(Exception):
    """Where a killed process would have stopped."""


# --- the fakes -----------------------------------------------------------------------------------


@dataclass
class FakeOutbox:
    emails: dict[str, OutgoingEmail] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    marked: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[Attachment]] = field(default_factory=dict)
    mark_errors: list[BaseException] = field(default_factory=list)
    """Raised by the next marks (one each), e.g. a crash or throttling."""

    def add(self, email_id: str, subject: str = "", **fields: Any) -> OutgoingEmail:
        fields.setdefault("to", ("bob@customer.example",))
        email = OutgoingEmail(
            id=email_id, subject=subject or email_id, body_html="<p>x</p>", **fields
        )
        self.emails[email_id] = email
        self.status[email_id] = 6
        return email

    def pending(self) -> list[OutgoingEmail]:
        return [e for i, e in self.emails.items() if self.status[i] == 6]

    def attachments(self, email_id: str) -> list[Attachment]:
        return list(self.files.get(email_id, []))

    def mark_sent(
        self, email_id: str, message_id: str, sent_at: str, tracking_token: str | None
    ) -> None:
        if self.mark_errors:
            raise self.mark_errors.pop(0)
        self.marked[email_id] = (message_id, tracking_token)
        self.status[email_id] = 3

    def mark_failed(self, email_id: str, reason: str) -> None:
        if self.mark_errors:
            raise self.mark_errors.pop(0)
        self.failed[email_id] = reason
        self.status[email_id] = 8


@dataclass
class FakeServer:
    """A mail server; `keeps_copies`: Exchange (Sent Items, by key), else SMTP."""

    keeps_copies: bool
    address: str | None = "alice@contoso.example"
    delivered: list[dict[str, Any]] = field(default_factory=list)
    copies: dict[str, SentCopy] = field(default_factory=dict)
    errors: list[tuple[BaseException, bool]] = field(default_factory=list)
    """(error, whether the message went out before it) for the next sends."""
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def finds_sent_copies(self) -> bool:
        return self.keeps_copies

    def find_sent(self, email_id: str, message_id: str) -> SentCopy | None:
        return self.copies.get(email_id) if self.keeps_copies else None

    def send(
        self,
        fields: Mapping[str, Any],
        key: str,
        attachments: Sequence[Attachment],
        handoff: Callable[[], None],
    ) -> SentCopy:
        handoff()
        error, went_out = self.errors.pop(0) if self.errors else (None, True)
        copy = SentCopy(str(fields["message_id"]), "2025-05-01T10:00:00Z", dict(self.refused))
        if went_out:
            self.delivered.append({**fields, "key": key, "attachments": list(attachments)})
            if self.keeps_copies:
                self.copies[key] = copy
        if error is not None:
            raise error
        return copy

    def maybe_sent(self, error: SideError) -> bool:
        return self.keeps_copies or (isinstance(error, Unavailable) and error.code is None)

    def count(self, key: str) -> int:
        return sum(1 for d in self.delivered if d["key"] == key)


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return open_database(tmp_path / "data")


@pytest.fixture
def journal(database: Database) -> SendJournal:
    return SendJournal(database, "org-1")


def alerts(database: Database, code: str) -> list[Any]:
    return [a for a in open_alerts(database) if a.code == code]


TRANSPORTS = pytest.mark.parametrize("keeps_copies", [True, False], ids=["ews", "smtp"])


# --- sending -------------------------------------------------------------------------------------


@TRANSPORTS
def test_each_pending_email_goes_out_once_oldest_first_and_is_marked_sent(
    keeps_copies: bool, journal: SendJournal
) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies)
    outbox.add("e1", cc=("carol@customer.example",), tracking_token="CRM:0001001")
    outbox.add("e2", bcc=("audit@contoso.example",))
    outbox.files["e1"] = [Attachment("a.txt", b"A", "text/plain")]

    result = send_pending(outbox, server, journal)

    assert result.as_counts() == {"sent": 2, "failed": 0, "already_sent": 0, "errors": 0}
    assert [d["key"] for d in server.delivered] == ["e1", "e2"]
    first = server.delivered[0]
    assert first["cc"] == ["carol@customer.example"] and first["body_type"] == "HTML"
    assert [a.name for a in first["attachments"]] == ["a.txt"]
    assert outbox.marked["e1"] == (first["message_id"], "CRM:0001001")
    assert first["message_id"].startswith("<") and first["message_id"].endswith("@contoso.example>")
    assert first["message_id"] != server.delivered[1]["message_id"]
    assert [journal.entry(i).state for i in ("e1", "e2")] == [SENT, SENT]  # type: ignore[union-attr]

    assert send_pending(outbox, server, journal).as_counts()["sent"] == 0
    assert len(server.delivered) == 2


@TRANSPORTS
def test_a_crash_between_send_and_mark_marks_it_at_the_next_run_without_sending_again(
    keeps_copies: bool, journal: SendJournal
) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies)
    outbox.add("e1")
    outbox.mark_errors = [Crashed()]
    with pytest.raises(Crashed):
        send_pending(outbox, server, journal)
    entry = journal.entry("e1")
    assert entry is not None and entry.state == ACCEPTED and outbox.status["e1"] == 6

    result = send_pending(outbox, server, journal)

    assert (result.sent, result.already_sent) == (0, 1)
    assert server.count("e1") == 1
    assert outbox.marked["e1"][0] == entry.message_id == server.delivered[0]["message_id"]
    assert alerts(journal.database, ALERT_UNCERTAIN) == []  # the journal knew it was accepted


def test_ews_a_crash_while_exchange_had_it_finds_the_sent_copy(journal: SendJournal) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=True)
    outbox.add("e1")
    server.errors = [(Crashed(), True)]  # sent, then the process died: journal says "sending"
    with pytest.raises(Crashed):
        send_pending(outbox, server, journal)
    assert journal.entry("e1").state == SENDING  # type: ignore[union-attr]

    result = send_pending(outbox, server, journal)

    assert (result.sent, result.already_sent, server.count("e1")) == (0, 1, 1)
    assert alerts(journal.database, ALERT_UNCERTAIN) == []


def test_ews_a_crash_before_exchange_took_it_sends_it_with_the_same_message_id(
    journal: SendJournal,
) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=True)
    outbox.add("e1")
    server.errors = [(Crashed(), False)]
    with pytest.raises(Crashed):
        send_pending(outbox, server, journal)
    chosen = journal.entry("e1").message_id  # type: ignore[union-attr]

    assert send_pending(outbox, server, journal).sent == 1
    assert [d["message_id"] for d in server.delivered] == [chosen]


def test_smtp_a_crash_while_the_server_had_it_is_not_sent_again_and_asks_the_user(
    journal: SendJournal,
) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=False)
    outbox.add("e1", subject="Contract", to=("bob@customer.example", "eve@customer.example"))
    server.errors = [(Crashed(), True)]
    with pytest.raises(Crashed):
        send_pending(outbox, server, journal)

    result = send_pending(outbox, server, journal)

    assert (result.sent, result.already_sent, server.count("e1")) == (0, 1, 1)
    assert outbox.status["e1"] == 3
    (alert,) = alerts(journal.database, ALERT_UNCERTAIN)
    assert alert.severity == "info" and alert.subject == "e1"
    assert "Contract" in alert.message and "eve@customer.example" in alert.action


def test_a_new_install_finds_what_exchange_sent_and_only_marks_it(database: Database) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=True)
    outbox.add("e1")
    outbox.mark_errors = [Crashed()]
    with pytest.raises(Crashed):
        send_pending(outbox, server, SendJournal(database, "org-1"))

    fresh = SendJournal(database, "another-org")  # an empty journal: a fresh install
    result = send_pending(outbox, server, fresh)

    assert (result.sent, result.already_sent, server.count("e1")) == (0, 1, 1)
    assert fresh.entry("e1").state == SENT  # type: ignore[union-attr]


# --- refusals and faults -------------------------------------------------------------------------


@TRANSPORTS
def test_a_refused_send_marks_the_email_failed_with_the_reason_and_alerts(
    keeps_copies: bool, journal: SendJournal
) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies)
    outbox.add("e1", subject="Offer")
    outbox.add("e2")
    reason = "550 5.1.1 no such user here"
    server.errors = [(Invalid(reason, "recipients"), False)]

    result = send_pending(outbox, server, journal)

    assert (result.sent, result.failed) == (1, 1)  # the next email still goes
    assert outbox.failed == {"e1": reason} and outbox.status["e1"] == 8
    assert journal.entry("e1").state == FAILED  # type: ignore[union-attr]
    (alert,) = alerts(journal.database, ALERT_REFUSED)
    assert alert.severity == "error" and "Offer" in alert.message and reason in alert.message
    assert server.count("e1") == 0 and server.count("e2") == 1


def test_recipients_without_an_address_fail_before_anything_is_sent(journal: SendJournal) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=False)
    outbox.add("e1", to=("bob@customer.example",), unresolved=("Dana Noaddress",))
    outbox.add("e2", to=())

    result = send_pending(outbox, server, journal)

    assert (result.sent, result.failed, server.delivered) == (0, 2, [])
    assert "Dana Noaddress" in outbox.failed["e1"] and "no recipients" in outbox.failed["e2"]


@TRANSPORTS
def test_throttled_while_marking_stops_and_the_next_run_sends_nothing_twice(
    keeps_copies: bool, journal: SendJournal
) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies)
    outbox.add("e1")
    outbox.add("e2")
    outbox.mark_errors = [Throttled("Number of requests exceeded the limit", retry_after=30)]

    stopped = send_pending(outbox, server, journal)

    assert stopped.stopped and "Throttled" in (stopped.message or "")
    assert (server.count("e1"), server.count("e2")) == (1, 0)  # the rest waits
    result = send_pending(outbox, server, journal)
    assert (result.sent, result.already_sent) == (1, 1)
    assert (server.count("e1"), server.count("e2")) == (1, 1)
    assert set(outbox.marked) == {"e1", "e2"}


def test_smtp_a_transient_refusal_keeps_it_pending_and_sends_it_later(
    journal: SendJournal,
) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=False)
    outbox.add("e1")
    server.errors = [(Unavailable("451 try again later", code="smtp"), False)]

    assert send_pending(outbox, server, journal).stopped
    entry = journal.entry("e1")
    assert entry is not None and entry.state == QUEUED  # the server said no: not "sending"

    assert send_pending(outbox, server, journal).sent == 1
    assert [d["message_id"] for d in server.delivered] == [entry.message_id]
    assert alerts(journal.database, ALERT_UNCERTAIN) == []


def test_smtp_a_lost_connection_after_hand_over_is_never_sent_again(journal: SendJournal) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=False)
    outbox.add("e1")
    server.errors = [(Unavailable("connection reset"), True)]

    assert send_pending(outbox, server, journal).stopped
    assert journal.entry("e1").state == SENDING  # type: ignore[union-attr]
    assert send_pending(outbox, server, journal).already_sent == 1
    assert server.count("e1") == 1 and len(alerts(journal.database, ALERT_UNCERTAIN)) == 1


def test_a_crm_that_refuses_to_mark_is_an_error_and_is_never_resent(journal: SendJournal) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=False)
    outbox.add("e1", subject="Gone")
    outbox.add("e2")
    outbox.mark_errors = [NotFound("email With Id = e1 Does Not Exist")]

    result = send_pending(outbox, server, journal)

    assert (result.sent, result.errors) == (1, 1)
    (alert,) = alerts(journal.database, ALERT_NOT_MARKED)
    assert "Gone" in alert.message and "Does Not Exist" in alert.message
    assert send_pending(outbox, server, journal).already_sent == 1  # marked now, not resent
    assert server.count("e1") == 1


def test_refused_sign_in_is_raised_and_the_message_counts_as_not_sent(
    journal: SendJournal,
) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=False)
    outbox.add("e1")
    server.errors = [(AuthError("535 authentication failed"), False)]

    with pytest.raises(AuthError):
        send_pending(outbox, server, journal)
    assert journal.entry("e1").state == QUEUED  # type: ignore[union-attr]


def test_some_recipients_refused_is_sent_with_a_warning(journal: SendJournal) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=False)
    outbox.add("e1", subject="Update", to=("bob@customer.example", "x@refused.example"))
    server.refused = {"x@refused.example": "550 no such user"}

    assert send_pending(outbox, server, journal).sent == 1
    (alert,) = alerts(journal.database, ALERT_PARTIAL)
    assert alert.severity == "warning" and "x@refused.example: 550 no such user" in alert.message


def test_the_subject_carries_the_tracking_token_when_asked(journal: SendJournal) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=True)
    outbox.add("e1", subject="Quote", tracking_token="CRM:0001002", in_reply_to="<a@b>")
    email_id = "6b3e2a9c-1d4f-4e5a-9b8c-7d6e5f4a3b2c"
    outbox.add(email_id, subject="No token yet")
    outbox.add("e3", subject="Plain", tracking_token="CRM:0001003")

    send_pending(outbox, server, journal, tracking_token=crm_tokens("CRM:"))
    send_pending(outbox, server, journal)  # nothing left: tokens were asked for once
    derived = token_for(email_id, "CRM:")

    first, second, third = server.delivered
    assert first["subject"] == "Quote CRM:0001002" and outbox.marked["e1"][1] == "CRM:0001002"
    assert (first["in_reply_to"], first["references"]) == ("<a@b>", "<a@b>")
    assert second["subject"] == f"No token yet {derived}"
    assert outbox.marked[email_id][1] == derived  # recorded on the CRM email
    assert third["subject"] == "Plain CRM:0001003"


def test_without_tokens_the_subject_is_sent_as_written(journal: SendJournal) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=False)
    outbox.add("e1", subject="Quote", tracking_token="CRM:0001002")

    send_pending(outbox, server, journal)

    assert server.delivered[0]["subject"] == "Quote"
    assert outbox.marked["e1"][1] == "CRM:0001002"  # the CRM's own token stays


def test_progress_and_counts_of_a_run() -> None:
    seen: list[tuple[int, int, str]] = []
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=True)
    outbox.add("e1")

    class NoJournal(SendJournal):
        def __init__(self) -> None:
            self.rows: dict[str, Any] = {}

        def entry(self, email_id: str) -> Any:
            return None

        def _write(
            self, email_id: str, state: str, message_id: str | None = None, **b: Any
        ) -> None:
            self.rows[email_id] = state

    journal = NoJournal()
    result = send_pending(outbox, server, journal, progress=lambda d, t, p: seen.append((d, t, p)))

    assert result.sent == 1 and journal.rows == {"e1": SENT}
    assert [(d, t) for d, t, _ in seen] == [(0, 1), (1, 1)]
    stopped = OutgoingResult(stopped=True, message="Throttled: later")
    assert stopped.as_counts()["message"] == "Throttled: later"


@pytest.mark.parametrize(
    "error, errors",
    [(Throttled("slow down", retry_after=5), 0), (Invalid("Could not find a property"), 1)],
)
def test_an_outbox_that_cannot_be_read_stops_the_stage(
    journal: SendJournal, error: SideError, errors: int
) -> None:
    class Unreadable(FakeOutbox):
        def pending(self) -> list[OutgoingEmail]:
            raise error

    result = send_pending(Unreadable(), FakeServer(keeps_copies=True), journal)

    assert result.stopped and (result.sent, result.errors) == (0, errors)
    assert error.message in (result.message or "")
    with pytest.raises(AuthError):

        class Refused(FakeOutbox):
            def pending(self) -> list[OutgoingEmail]:
                raise AuthError("401")

        send_pending(Refused(), FakeServer(keeps_copies=True), journal)


def test_what_went_out_is_marked_sent_even_if_its_recipients_lost_their_address(
    journal: SendJournal,
) -> None:
    outbox, server = FakeOutbox(), FakeServer(keeps_copies=False)
    outbox.add("e1")
    outbox.mark_errors = [Crashed()]
    with pytest.raises(Crashed):
        send_pending(outbox, server, journal)
    # Before the next run, the contact's address is removed in the CRM.
    outbox.add("e1", to=(), unresolved=("Bob Buyer",))

    result = send_pending(outbox, server, journal)

    assert (result.already_sent, result.failed) == (1, 0) and outbox.status["e1"] == 3


def test_message_ids_are_unique_in_the_senders_domain() -> None:
    from sync.mail.outgoing import new_message_id

    ids = {new_message_id("Alice <alice@contoso.example>") for _ in range(50)}
    assert len(ids) == 50 and all(i.endswith("@contoso.example>") for i in ids)
    assert new_message_id("alice").endswith("@mailbox-sync.invalid>")
    assert new_message_id(None).endswith("@mailbox-sync.invalid>")
