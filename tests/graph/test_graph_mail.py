"""GraphTrackingMailbox (the email kind's TrackingMailbox port) against the sandbox Graph."""

from __future__ import annotations

import base64

from sync.graph.mail import GraphTrackingMailbox
from sync.mailbox.fields import MESSAGE_FIELDS, TRACKED_CATEGORY
from sync.sides import Upsert, Written
from tests.graph.conftest import GraphWorld

DAVE = "dave@fabrikam.example"


def _send(world: GraphWorld, subject: str, attach: bytes | None = None) -> None:
    """Carol mails Dave (sendMail; with an attachment: a draft, a fileAttachment, send)."""
    client = world.client("carol@fabrikam.example")
    mail = {"subject": subject, "body": {"contentType": "HTML", "content": f"<p>{subject}</p>"},
            "toRecipients": [{"emailAddress": {"address": DAVE}}]}  # fmt: skip
    if attach is None:
        client.post("me/sendMail", {"message": mail})
        return
    draft = client.post("me/messages", mail)
    client.post(f"me/messages/{draft['id']}/attachments", {
        "@odata.type": "#microsoft.graph.fileAttachment", "name": "quote.pdf",
        "contentType": "application/pdf", "contentBytes": base64.b64encode(attach).decode()})  # fmt: skip
    client.post(f"me/messages/{draft['id']}/send", {})


def test_tracking_reads_changes_attachments_categories_and_recent(world: GraphWorld) -> None:
    """message-delta.md (per folder), message-list-attachments.md, message-update.md
    (categories), mailfolder-list-messages.md ($top, $orderby)."""
    mailbox = GraphTrackingMailbox(world.side(DAVE))
    pages = list(mailbox.read_changes("messages:inbox", None))
    token = pages[-1].token
    assert token and pages[-1].last
    _send(world, "First")
    _send(world, "Second", attach=b"%PDF-1.4 tiny" * 10)
    changes = [c for p in mailbox.read_changes("messages:inbox", token) for c in p.changes]
    assert [c.fields["subject"] for c in changes if isinstance(c, Upsert)] == ["First", "Second"]
    first = changes[0]
    assert isinstance(first, Upsert)
    assert set(MESSAGE_FIELDS) <= set(first.fields)
    assert first.fields["message_id"].startswith("<") and first.fields["body_type"] == "HTML"
    assert first.fields["sender"] == "carol@fabrikam.example"
    assert first.fields["to"] == [DAVE] and first.fields["folder"] == "inbox"
    second = changes[1]
    assert second.fields["has_attachments"] is True
    [small] = mailbox.attachments(second.id, limit=10_000)
    assert small.name == "quote.pdf" and small.content == b"%PDF-1.4 tiny" * 10
    [big] = mailbox.attachments(second.id, limit=10)
    assert big.content is None and big.size > 10

    results = mailbox.set_categories([first.id, "gone-id"], add=[TRACKED_CATEGORY])
    assert isinstance(results[0], Written) and not isinstance(results[1], Written)
    again = mailbox.read("messages:inbox", [first.id])[first.id]
    assert again.fields["categories"] == [TRACKED_CATEGORY]
    mailbox.set_categories([first.id], remove=[TRACKED_CATEGORY])
    assert mailbox.read("messages:inbox", [first.id])[first.id].fields["categories"] == []

    recent = mailbox.recent("inbox", 1)
    assert [u.fields["subject"] for u in recent] == ["Second"]
    world.client(DAVE).post("me/mailFolders/inbox/childFolders", {"displayName": "Deals"})
    assert [name for _, name in mailbox.subfolders("inbox")] == ["Deals"]
