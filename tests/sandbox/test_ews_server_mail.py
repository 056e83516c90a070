"""Sandbox EWS mail: sending between sandbox mailboxes, MIME, the delivery side door, throttling."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
import requests
from exchangelib import FailFast, FaultTolerance
from exchangelib.errors import ErrorServerBusy
from exchangelib.items import Message

from sandbox.ews.testing import account
from sandbox.faults import Fault
from tests.sandbox.ews_helpers import ALICE

BOB = "bob@contoso.example"


@pytest.fixture(scope="module")
def bob(server):
    return account(server, BOB, token=server.tokens.static_token(BOB))


def _mime(subject: str, message_id: str, in_reply_to: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Zoe Client <zoe@outside.example>"
    msg["To"] = "Alice Wong <alice@contoso.example>"
    msg["Cc"] = "bob@contoso.example"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 03 Mar 2026 10:00:00 +0000"
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content("Hello from outside")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="quote.pdf")
    return msg.as_bytes()


def test_send_between_mailboxes_keeps_message_id(alice, bob):
    Message(
        account=alice,
        folder=alice.sent,
        subject="Proposal",
        body="Here it is",
        to_recipients=[BOB],
        cc_recipients=["someone@elsewhere.example"],
    ).send_and_save()
    sent = alice.sent.get(subject="Proposal")
    received = bob.inbox.get(subject="Proposal")
    assert sent.message_id == received.message_id
    assert sent.message_id.startswith("<") and sent.message_id.endswith(">")
    assert received.sender.email_address == ALICE
    assert received.author.email_address == ALICE
    assert [r.email_address for r in received.to_recipients] == [BOB]
    assert received.is_read is False
    assert received.body == "Here it is"
    # Reply: the answer references the first message.
    reply = Message(
        account=bob,
        folder=bob.sent,
        subject="RE: Proposal",
        body="Thanks",
        to_recipients=[ALICE],
        in_reply_to=received.message_id,
        references=received.message_id,
    )
    reply.send_and_save()
    got = alice.inbox.get(subject="RE: Proposal")
    assert got.in_reply_to == sent.message_id
    assert got.references == sent.message_id
    assert got.conversation_id.id == sent.conversation_id.id


def test_draft_then_send_item(alice, server):
    draft = Message(
        account=alice, folder=alice.drafts, subject="Draft", body="d", to_recipients=[BOB]
    )
    draft.save()
    assert alice.drafts.get(id=draft.id).is_draft is True
    draft.send()
    assert alice.drafts.filter(subject="Draft").count() == 0
    assert alice.sent.filter(subject="Draft").count() == 1
    inbox = server.mailbox(BOB).items_in("inbox")
    assert "Draft" in [i.value("Subject") for i in inbox]


def test_deliver_mime_side_door_and_mime_content(alice, server):
    item_id = server.deliver_mime(ALICE, _mime("From outside", "<abc-1@outside.example>"))
    got = alice.inbox.get(id=item_id)
    assert got.subject == "From outside"
    assert got.message_id == "<abc-1@outside.example>"
    assert got.sender.email_address == "zoe@outside.example"
    assert [r.email_address for r in got.cc_recipients] == [BOB]
    assert [a.name for a in got.attachments] == ["quote.pdf"]
    assert got.datetime_sent.isoformat().startswith("2026-03-03T10:00:00")
    headers = {h.name.lower(): h.value for h in got.headers}
    assert headers["message-id"] == "<abc-1@outside.example>"
    mime = email.message_from_bytes(got.mime_content, policy=email.policy.default)
    assert mime["Message-ID"] == "<abc-1@outside.example>"
    assert mime["Subject"] == "From outside"


def test_admin_deliver_endpoint(server, alice):
    token = server.tokens.static_token(ALICE)
    response = requests.post(
        server.url.replace("/EWS/Exchange.asmx", "/admin/deliver"),
        params={"to": ALICE},
        data=_mime("Via admin", "<adm-1@outside.example>", in_reply_to="<abc-1@outside.example>"),
        headers={"Authorization": f"Bearer {token}"},
        verify=server.ca_file,
        timeout=10,
    )
    assert response.status_code == 200
    got = alice.inbox.get(id=response.json()["item_id"])
    assert (got.subject, got.in_reply_to) == ("Via admin", "<abc-1@outside.example>")
    unauthorized = requests.post(
        server.url.replace("/EWS/Exchange.asmx", "/admin/deliver"),
        params={"to": ALICE},
        data=b"x",
        verify=server.ca_file,
        timeout=10,
    )
    assert unauthorized.status_code == 401


def test_create_from_mime_content(alice):
    msg = Message(
        account=alice,
        folder=alice.inbox,
        mime_content=_mime("Imported", "<imp-1@outside.example>"),
    )
    msg.save()
    got = alice.inbox.get(id=msg.id)
    assert (got.subject, got.message_id) == ("Imported", "<imp-1@outside.example>")


def test_server_busy_is_waited_out(server):
    server.busy_budget = 3
    server.busy_backoff_ms = 50
    try:
        patient = account(server, ALICE, retry_policy=FaultTolerance(max_wait=30))
        before = server.log.count(detail="ErrorServerBusy")
        for _ in range(6):
            assert patient.inbox.total_count >= 0
            patient.inbox.refresh()
        assert server.log.count(detail="ErrorServerBusy") > before
        impatient = account(server, ALICE, retry_policy=FailFast())
        with pytest.raises(ErrorServerBusy) as caught:
            for _ in range(10):
                impatient.inbox.refresh()
        assert caught.value.back_off == pytest.approx(0.05)
    finally:
        server.busy_budget = None


def test_fault_profile_busy_and_503_are_retried(server):
    server.faults.set(
        Fault(kind="busy", every=1, times=1, delay=0.05, match="GetFolder"),
        Fault(kind="503", every=1, times=1, match="GetFolder"),
    )
    try:
        patient = account(server, ALICE, retry_policy=FaultTolerance(max_wait=30))
        patient.inbox.refresh()
        assert server.faults.faults[0].hits == 1
        assert server.faults.faults[1].hits == 1
        assert server.log.count(target="GetFolder", status=503) == 1
        assert server.log.count(target="GetFolder", detail="ErrorServerBusy") >= 1
    finally:
        server.faults.clear()


def test_reply_reply_all_and_forward(alice, bob, server):
    Message(
        account=alice,
        folder=alice.sent,
        subject="Question",
        body="question",
        to_recipients=[BOB],
        cc_recipients=["carol@fabrikam.example"],
    ).send_and_save()
    got = bob.inbox.get(subject="Question")
    got.reply(subject="RE: Question", body="answer")
    got.reply_all(subject="RE: Question (all)", body="answer all")
    got.forward(subject="FW: Question", body="fyi", to_recipients=["dave@fabrikam.example"])
    answer = alice.inbox.get(subject="RE: Question")
    assert answer.in_reply_to == got.message_id
    assert answer.body.startswith("answer") and "question" in answer.body
    carol = [i.value("Subject") for i in server.mailbox("carol@fabrikam.example").items_in("inbox")]
    assert "RE: Question (all)" in carol
    dave = [i.value("Subject") for i in server.mailbox("dave@fabrikam.example").items_in("inbox")]
    assert "FW: Question" in dave
