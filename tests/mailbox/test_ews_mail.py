"""EwsTrackingMailbox (what email tracking asks of an Exchange mailbox) against the sandbox EWS:
attachments within a limit, categories on messages of any folder, the folders under the Inbox,
the newest messages in one FindItem — and the sandbox answering these as Exchange does."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
from exchangelib import Message
from exchangelib.fields import FieldPath
from exchangelib.folders import SHALLOW, Folder
from exchangelib.items import ID_ONLY
from exchangelib.services import FindItem

from sync.mailbox.ews import EwsSide
from sync.mailbox.ews_mail import EwsTrackingMailbox
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.sides import NotFound, Upsert, Written
from tests.mailbox.ews_helpers import ALICE, BOB, CAROL, DAVE, connect, read_all


def mailbox(ews: Any, upn: str) -> EwsTrackingMailbox:
    return EwsTrackingMailbox(EwsSide(connect(ews, upn)))


def targets_since(ews: Any, mark: int, upn: str) -> list[str]:
    """The EWS operations `upn` sent since the log had `mark` entries."""
    return [e.target for e in ews.log.entries[mark:] if e.user == upn]


def message_with_attachments(subject: str) -> bytes:
    inner = EmailMessage()
    inner["From"] = "partner@customer.example"
    inner["To"] = DAVE
    inner["Subject"] = "Earlier mail"
    inner["Message-Id"] = "<earlier@customer.example>"
    inner.set_content("the earlier message")
    outer = EmailMessage()
    outer["From"] = "Buyer One <buyer@customer.example>"
    outer["To"] = DAVE
    outer["Subject"] = subject
    outer["Message-Id"] = f"<{subject.replace(' ', '.')}@customer.example>"
    outer.set_content("see attached")
    outer.add_attachment(b"%PDF" + b"p" * 996, maintype="application", subtype="pdf",
                         filename="quote.pdf")  # fmt: skip
    outer.add_attachment(b"small notes", maintype="text", subtype="plain", filename="notes.txt")
    outer.add_attachment(inner)
    return bytes(outer)


def test_attachments_fetches_only_those_within_the_limit(ews: Any) -> None:
    """GetItem lists the attachments with their sizes; one GetAttachment fetches those within
    the limit (an attached message as its MIME); the 1,000-byte PDF comes without content."""
    box = mailbox(ews, DAVE)
    item_id = ews.deliver_mime(DAVE, message_with_attachments("Quote for you"))
    box.subfolders()  # resolve the Inbox (GetFolder) before counting
    mark = len(ews.log.entries)
    found = {a.name: a for a in box.attachments(item_id, limit=500)}
    assert targets_since(ews, mark, DAVE) == ["GetItem", "GetAttachment"]
    assert set(found) == {"quote.pdf", "notes.txt", "Earlier mail.eml"}
    pdf, notes, earlier = found["quote.pdf"], found["notes.txt"], found["Earlier mail.eml"]
    assert (pdf.content_type, pdf.size, pdf.content) == ("application/pdf", 1000, None)
    assert (notes.content_type, notes.size, notes.content) == ("text/plain", 11, b"small notes")
    assert earlier.content_type == "message/rfc822" and earlier.content is not None
    assert b"Message-ID: <earlier@customer.example>" in earlier.content.replace(
        b"Message-Id", b"Message-ID"
    )
    assert earlier.size == len(earlier.content)

    mark = len(ews.log.entries)
    everything = box.attachments(item_id, limit=10_000)
    assert {a.name: a.content for a in everything}["quote.pdf"] == b"%PDF" + b"p" * 996
    mark = len(ews.log.entries)
    nothing = box.attachments(item_id, limit=0)
    assert targets_since(ews, mark, DAVE) == ["GetItem"]  # no GetAttachment for nothing
    assert all(a.content is None for a in nothing) and len(nothing) == 3
    plain = ews.deliver_mime(
        DAVE, b"From: a@customer.example\r\nSubject: plain\r\nMessage-Id: <p@c>\r\n\r\nhi\r\n"
    )
    assert box.attachments(plain, limit=500) == []


def test_categories_on_inbox_and_sent_messages(ews: Any) -> None:
    """The tracked category set and removed on a received message and on a Sent Items copy;
    an id that is gone gets a NotFound result, the others are done."""
    alice, bob = mailbox(ews, ALICE), mailbox(ews, BOB)
    sent = alice.side.send({"subject": "Proposal", "to": [BOB], "body": "hi"}, key="crm-9")
    arrived = [
        c
        for c in read_all(bob.side, "messages:inbox", None)[0]
        if isinstance(c, Upsert) and c.fields["subject"] == "Proposal"
    ]
    [received] = arrived
    results = bob.set_categories([received.id], add=[TRACKED_CATEGORY])
    assert isinstance(results[0], Written)
    assert bob.read("messages:inbox", [received.id])[received.id].fields["categories"] == [
        TRACKED_CATEGORY
    ]
    gone = received.id[:-4] + "AAA="
    results = alice.set_categories([sent.id, gone], add=[TRACKED_CATEGORY, "Blue"])
    assert isinstance(results[0], Written) and isinstance(results[1], NotFound)
    copy = alice.read("messages:sentitems", [sent.id])[sent.id]
    assert copy.fields["categories"] == [TRACKED_CATEGORY, "Blue"]
    alice.set_categories([sent.id], remove=[TRACKED_CATEGORY])
    copy = alice.read("messages:sentitems", [sent.id])[sent.id]
    assert copy.fields["categories"] == ["Blue"]


def test_subfolders_lists_the_folders_right_under_the_inbox(ews: Any) -> None:
    box = mailbox(ews, CAROL)
    assert box.subfolders("inbox") == []
    inbox = box.side.folder("messages:inbox")
    projects = Folder(parent=inbox, name="Projects")
    projects.save()
    Folder(parent=projects, name="Deeper").save()  # shallow: not listed
    Folder(parent=inbox, name="Suppliers").save()
    mark = len(ews.log.entries)
    found = box.subfolders()
    assert targets_since(ews, mark, CAROL) == ["FindFolder"]
    assert sorted(name for _, name in found) == ["Projects", "Suppliers"]
    assert dict((name, folder_id) for folder_id, name in found)["Projects"] == projects.id
    assert [name for _, name in box.subfolders(projects.id)] == ["Deeper"]

    # a tracked folder is read by its id: its changes, its newest messages
    filed = ews.deliver_mime(
        CAROL,
        b"From: p@customer.example\r\nSubject: Filed\r\nMessage-Id: <filed@c>\r\n\r\nhi\r\n",
        folder=projects.id,
    )
    fresh = mailbox(ews, CAROL)  # a new side: the folder is looked up by id (GetFolder)
    changes, _ = read_all(fresh.side, f"messages:{projects.id}", None)
    assert [c.id for c in changes] == [filed]
    assert changes[0].fields["folder"] == projects.id
    assert [u.id for u in fresh.recent(projects.id, 5)] == [filed]


def test_recent_is_one_find_item_newest_first(ews: Any) -> None:
    """The newest messages, one FindItem sorted by DateTimeReceived descending; what FindItem
    returns is a summary: the sender's display name without the address (finditem-
    operation.md: "FindItem returns only the Name … and does not return the EmailAddress …
    for the From field of a message"), no body, no recipients."""
    box = mailbox(ews, CAROL)
    for n in range(5):
        ews.deliver_mime(
            CAROL,
            (
                f"From: Sender {n} <sender{n}@customer.example>\r\nTo: {CAROL}\r\n"
                f"Subject: Recent {n}\r\nMessage-Id: <recent.{n}@customer.example>\r\n"
                f"In-Reply-To: <root@customer.example>\r\n\r\nBody {n}\r\n"
            ).encode(),
        )
    box.subfolders()
    mark = len(ews.log.entries)
    newest = box.recent("inbox", 3)
    assert targets_since(ews, mark, CAROL) == ["FindItem"]
    assert [u.fields["subject"] for u in newest] == ["Recent 4", "Recent 3", "Recent 2"]
    first = newest[0].fields
    assert first["sender"] == first["sender_name"] == "Sender 4"
    assert first["message_id"] == "<recent.4@customer.example>"
    assert first["in_reply_to"] == "<root@customer.example>"
    assert first["received"] and first["folder"] == "inbox" and first["categories"] == []
    assert "body" not in first and "to" not in first
    assert newest[0].version and newest[0].key is None
    assert box.recent("inbox", 0) == []
    assert len(box.recent("inbox", 50)) == 5
    assert box.recent("sentitems", 10) == []


def test_sandbox_find_item_leaves_out_body_and_recipient_lists(ews: Any) -> None:
    """FindItem "does not return any of the message body formats or the recipient lists"
    (finditem-operation.md), even when asked for them; GetItem does."""
    box = mailbox(ews, CAROL)
    inbox = box.side.folder("messages:inbox")
    fields = [
        FieldPath(field=Message.get_field_by_fieldname(name))
        for name in ("subject", "body", "to_recipients", "author")
    ]
    items = list(
        FindItem(account=box.account, page_size=10).call(
            folders=[inbox],
            additional_fields=fields,
            restriction=None,
            order_fields=None,
            shape=ID_ONLY,
            query_string=None,
            depth=SHALLOW,
            calendar_view=None,
            max_items=10,
            offset=0,
        )
    )
    assert items and all(i.subject for i in items)
    assert all(i.body is None and not i.to_recipients for i in items)
    assert all(i.author.email_address is None and i.author.name for i in items)
    full = box.read("messages:inbox", [items[0].id])[items[0].id].fields
    assert full["body"] and full["to"] == [CAROL] and "@" in full["sender"]


def test_read_changes_reads_a_folder_by_token(ews: Any) -> None:
    box = mailbox(ews, BOB)
    first = [c for page in box.read_changes("messages:inbox", None) for c in page.changes]
    token = None
    for page in box.read_changes("messages:inbox", None):
        token = page.token
    new_id = ews.deliver_mime(
        BOB, b"From: x@customer.example\r\nSubject: Later\r\nMessage-Id: <later@c>\r\n\r\nhi\r\n"
    )
    later = [c for page in box.read_changes("messages:inbox", token) for c in page.changes]
    assert [c.id for c in later] == [new_id]
    assert new_id not in {c.id for c in first}


@pytest.mark.parametrize("folder", ["nonexistent-folder-id"])
def test_unknown_folder_is_not_found(ews: Any, folder: str) -> None:
    with pytest.raises(NotFound):
        mailbox(ews, BOB).recent(folder, 5)
