"""Outgoing CRM email through Microsoft Graph (issue 9): the sandbox Dataverse's Pending Send
emails go out through the sandbox Graph exactly once, with the Message-Id the stage chose.

resources/message.md: `internetMessageId` is "Updatable only if isDraft is true", so the sender
makes a draft (user-post-messages.md) with it and our key property, attaches files under 3 MB
(message-post-attachments.md), then sends it (message-send.md), which keeps a copy in Sent Items.
The checks read what Bob got and what the CRM holds, not what the client says it did. The
helpers and fixtures (the CRM client, the local database) are the EWS tests' (tests/mail/test_outgoing_sandbox.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.faults import Fault
from sync.crm.client import DataverseClient
from sync.crm.outbox import DataverseOutbox
from sync.graph.send import MAX_INLINE_ATTACHMENT, GraphMailSender
from sync.mail.journal import SendJournal
from sync.mail.outgoing import ACCEPTED, ALERT_REFUSED, SENT, send_pending
from sync.runs import open_alerts
from sync.store.db import Database
from tests.e2e.harness import ALICE, ORG_ID, SandboxPair, start_pair
from tests.mail.test_outgoing_sandbox import (  # noqa: F401 (crm, database: fixtures)
    Crashed,
    CrashingOutbox,
    crm,
    crm_email,
    database,
    pending_email,
)

BOB = "bob@contoso.example"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPair]:
    with start_pair(tmp_path_factory.mktemp("graph-send"), protocol="graph") as running:
        yield running


def sender(pair: SandboxPair) -> GraphMailSender:
    return GraphMailSender(pair.mailbox_side(), ALICE, sleep=lambda _seconds: None)


def inbox(pair: SandboxPair, upn: str, subject: str) -> list[dict[str, Any]]:
    """The messages with `subject` in a sandbox Graph mailbox's Inbox."""
    assert pair.graph is not None
    box = pair.graph.mailbox(upn)
    with box.lock:
        items = box.collection(f"folder:{box.well_known['inbox']}").items.values()
        return [dict(i) for i in items if i.get("subject") == subject]


def attachments_of(pair: SandboxPair, upn: str, message_id: str) -> list[dict[str, Any]]:
    assert pair.graph is not None
    return list(pair.graph.mailbox(upn).attachments.get(message_id, []))


def test_graph_sends_once_with_our_message_id_and_marks_sent(
    pair: SandboxPair,
    crm: DataverseClient,  # noqa: F811
    database: Database,  # noqa: F811 (fixtures imported above)
) -> None:
    email_id = pending_email(crm, pair.me, "Graph once", files={"terms.txt": b"read me"})
    journal = SendJournal(database, ORG_ID)
    outbox = DataverseOutbox(crm, pair.me)

    result = send_pending(outbox, sender(pair), journal)

    assert (result.sent, result.failed, result.errors, result.stopped) == (1, 0, 0, False)
    (delivered,) = inbox(pair, BOB, "Graph once")
    row = crm_email(crm, email_id)
    assert (row["statecode"], row["statuscode"]) == (1, 3) and row["senton"]
    assert row["messageid"] == delivered["internetMessageId"]
    assert row["messageid"].endswith("@contoso.example>")
    [(name, size)] = [(a["name"], a["size"]) for a in attachments_of(pair, BOB, delivered["id"])]
    assert (name, size) == ("terms.txt", len(b"read me"))
    copy = pair.mailbox_side().find_by_key("messages:sentitems", [email_id])[email_id]
    assert copy.fields["message_id"] == row["messageid"]
    assert not pair.mailbox_side().find_by_key("messages:drafts", [email_id])  # no draft left
    assert journal.entry(email_id).state == SENT  # type: ignore[union-attr]

    again = send_pending(outbox, sender(pair), journal)
    assert (again.sent, again.already_sent) == (0, 0)
    assert len(inbox(pair, BOB, "Graph once")) == 1


def test_graph_crash_between_send_and_mark_is_marked_not_resent_by_a_new_install(
    pair: SandboxPair,
    crm: DataverseClient,  # noqa: F811
    database: Database,  # noqa: F811 (fixtures imported above)
) -> None:
    email_id = pending_email(crm, pair.me, "Graph crash")
    journal = SendJournal(database, ORG_ID)
    with pytest.raises(Crashed):
        send_pending(CrashingOutbox(crm, pair.me), sender(pair), journal)
    assert journal.entry(email_id).state == ACCEPTED  # type: ignore[union-attr]

    fresh = SendJournal(pair.new_database(), ORG_ID)
    result = send_pending(DataverseOutbox(crm, pair.me), sender(pair), fresh)

    assert (result.sent, result.already_sent) == (0, 1)
    (delivered,) = inbox(pair, BOB, "Graph crash")
    row = crm_email(crm, email_id)
    assert row["statuscode"] == 3 and row["messageid"] == delivered["internetMessageId"]


def test_graph_crash_after_the_draft_sends_that_draft_once(
    pair: SandboxPair,
    crm: DataverseClient,  # noqa: F811
    database: Database,  # noqa: F811 (fixtures imported above)
) -> None:
    """The process dies after the draft is made, before it is sent: the next run finds the
    draft by our key in Drafts and sends it; no second draft, one message for Bob."""
    email_id = pending_email(crm, pair.me, "Graph draft crash")
    journal = SendJournal(database, ORG_ID)

    class DiesBeforeSending(GraphMailSender):
        def send(self, fields: Any, key: str, attachments: Any, handoff: Any) -> Any:
            def die() -> None:
                raise Crashed("killed before the send")

            return super().send(fields, key, attachments, die)

    dying = DiesBeforeSending(pair.mailbox_side(), ALICE, sleep=lambda _s: None)
    with pytest.raises(Crashed):
        send_pending(DataverseOutbox(crm, pair.me), dying, journal)
    assert pair.mailbox_side().find_by_key("messages:drafts", [email_id])
    assert inbox(pair, BOB, "Graph draft crash") == []

    result = send_pending(DataverseOutbox(crm, pair.me), sender(pair), journal)

    assert result.sent == 1
    assert len(inbox(pair, BOB, "Graph draft crash")) == 1
    assert not pair.mailbox_side().find_by_key("messages:drafts", [email_id])
    assert crm_email(crm, email_id)["statuscode"] == 3


def test_graph_throttled_send_waits_and_sends_nothing_twice(
    pair: SandboxPair,
    crm: DataverseClient,  # noqa: F811
    database: Database,  # noqa: F811 (fixtures imported above)
) -> None:
    """A 429 with Retry-After on the send (json-batching / throttling docs) is waited out by
    the client's request loop; the message goes out once."""
    email_id = pending_email(crm, pair.me, "Graph throttled")
    journal = SendJournal(database, ORG_ID)
    pair.faults.set(Fault("429", every=1, match="/send", delay=1, times=1))

    result = send_pending(DataverseOutbox(crm, pair.me), sender(pair), journal)

    assert result.sent == 1, result.message
    assert len(inbox(pair, BOB, "Graph throttled")) == 1
    assert crm_email(crm, email_id)["statuscode"] == 3


def test_graph_attachment_too_large_fails_the_email_with_an_alert(
    pair: SandboxPair,
    crm: DataverseClient,  # noqa: F811
    database: Database,  # noqa: F811 (fixtures imported above)
) -> None:
    """message-post-attachments.md: a single POST takes a file under 3 MB; larger ones need an
    upload session, which the sender does not make: the email fails, saying why, and nothing
    (not even a draft) is left in the mailbox."""
    big = b"x" * MAX_INLINE_ATTACHMENT
    email_id = pending_email(crm, pair.me, "Graph big", files={"big.bin": big})
    journal = SendJournal(database, ORG_ID)

    result = send_pending(DataverseOutbox(crm, pair.me), sender(pair), journal)

    assert (result.sent, result.failed) == (0, 1)
    assert crm_email(crm, email_id)["statuscode"] == 8  # Failed
    assert inbox(pair, BOB, "Graph big") == []
    assert not pair.mailbox_side().find_by_key("messages:drafts", [email_id])
    alert = next(a for a in open_alerts(database) if a.subject == email_id)
    assert alert.code == ALERT_REFUSED and "3 MB" in alert.message
