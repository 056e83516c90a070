"""A POP3 account as a tracking mailbox (`Pop3Side` as `TrackingMailbox`) against a real Dovecot:
an inbound message read as a tracking message with its attachments, what POP3 cannot do
answered as results, the newest messages from their headers — and the message tracked into
the sandbox Dataverse with its attachments."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry, user_by_upn
from sandbox.requestlog import RequestLog
from sync.crm.client import DataverseClient
from sync.crm.emails import DataverseEmails, attachment_id_for, email_id_for
from sync.mail.ports import FROM, TO, NewEmail, Party
from sync.mailbox.pop3 import Pop3Reader, Pop3Settings
from sync.mailbox.pop3_side import POP3_NO_CATEGORIES, Pop3Side, mime_attachments
from sync.sides import Invalid, NotFound, Upsert

ALICE = "alice@contoso.example"


def settings(server: Any) -> Pop3Settings:
    return Pop3Settings(
        host=server.host,
        port=server.pop3s_port,
        username=server.user,
        password=server.password,
        security="ssl",
        ca_file=server.tls.ca_file,
        timeout=10,
    )


class CountingReader(Pop3Reader):
    """A reader that counts the messages fetched by UIDL (RETR outside a read of changes)."""

    def __init__(self, settings: Pop3Settings) -> None:
        super().__init__(settings)
        self.fetched: list[str] = []

    def fetch(self, uidls: Any) -> dict[str, bytes]:
        wanted = list(uidls)
        self.fetched += wanted
        return super().fetch(wanted)


def inbound(subject: str, to: str) -> bytes:
    inner = EmailMessage()
    inner["From"] = "partner@customer.example"
    inner["Subject"] = "Forwarded order"
    inner.set_content("an order")
    message = EmailMessage()
    message["From"] = "Buyer One <buyer@customer.example>"
    message["To"] = to
    message["Cc"] = "boss@customer.example"
    message["Subject"] = subject
    message["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    message["Message-Id"] = f"<{uuid.uuid4()}@customer.example>"
    message.set_content("Plain text")
    message.add_alternative("<p>Hello <b>Alice</b></p>", subtype="html")
    message.add_attachment(b"P" * 2000, maintype="application", subtype="pdf", filename="big.pdf")
    message.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="data.csv")
    message.add_attachment(inner)
    return bytes(message)


def test_inbound_message_read_as_a_tracking_message_with_attachments(dovecot: Any) -> None:
    """Read with kind "messages:inbox": the fields tracking maps, and the attachments from the
    MIME already fetched — no second download; a new side (no MIME kept) fetches it once."""
    raw = inbound("Order with files", dovecot.user)
    dovecot.deliver(raw)
    reader = CountingReader(settings(dovecot))
    side = Pop3Side(reader)
    [page] = list(side.read_changes("messages:inbox", None))
    [message] = page.changes
    assert isinstance(message, Upsert)
    fields = message.fields
    assert fields["subject"] == "Order with files" and fields["sender"] == "buyer@customer.example"
    assert fields["to"] == [dovecot.user] and fields["cc"] == ["boss@customer.example"]
    assert fields["body_type"] == "HTML" and "<b>Alice</b>" in fields["body"]
    assert fields["message_id"].startswith("<") and fields["has_attachments"] is True
    assert fields["folder"] == "inbox" and fields["categories"] == []

    got = {a.name: a for a in side.attachments(message.id, limit=1000)}
    assert reader.fetched == []  # from the MIME the read kept
    assert set(got) == {"big.pdf", "data.csv", "Forwarded order.eml"}
    assert (got["big.pdf"].size, got["big.pdf"].content) == (2000, None)
    assert got["data.csv"].content == b"a,b\n1,2\n" and got["data.csv"].content_type == "text/csv"
    assert got["Forwarded order.eml"].content_type == "message/rfc822"
    assert b"Subject: Forwarded order" in (got["Forwarded order.eml"].content or b"")

    fresh_reader = CountingReader(settings(dovecot))
    fresh = Pop3Side(fresh_reader)
    again = fresh.attachments(message.id, limit=10_000)
    assert fresh_reader.fetched == [message.id]
    assert [a.content for a in again] == [a.content for a in mime_attachments(raw, 10_000)]
    fresh.attachments(message.id, limit=10_000)
    assert fresh_reader.fetched == [message.id]  # kept after the first fetch
    with pytest.raises(NotFound):
        fresh.attachments("no-such-uidl", limit=10)


def test_what_pop3_cannot_do_is_answered_not_raised(dovecot: Any) -> None:
    """No categories (one Invalid result per id, nothing raised) and no folders."""
    side = Pop3Side(settings(dovecot))
    results = side.set_categories(["a", "b"], add=["Tracked to Dynamics 365"])
    assert len(results) == 2
    assert all(isinstance(r, Invalid) and r.code == POP3_NO_CATEGORIES for r in results)
    assert side.subfolders() == [] and side.subfolders("inbox") == []
    with pytest.raises(ValueError):
        list(side.read_changes("messages:sentitems", None))


def test_recent_is_the_newest_by_arrival_from_headers(dovecot: Any) -> None:
    for n in range(4):
        dovecot.deliver(
            (
                f"From: Sender {n} <s{n}@customer.example>\r\nTo: {dovecot.user}\r\n"
                f"Subject: Arrival {n}\r\nMessage-Id: <arrival.{n}@customer.example>\r\n"
                f"Date: Tue, 24 Nov 2026 10:0{n}:00 +0000\r\n\r\nBody {n}\r\n"
            ).encode()
        )
    side = Pop3Side(settings(dovecot))
    newest = side.recent("inbox", 3)
    assert [u.fields["subject"] for u in newest] == ["Arrival 3", "Arrival 2", "Arrival 1"]
    assert newest[0].fields["sender"] == "s3@customer.example"
    assert newest[0].fields["message_id"] == "<arrival.3@customer.example>"
    assert "body" not in newest[0].fields and newest[0].fields["has_attachments"] is False
    assert len(side.recent("inbox", 10)) == 4
    assert side.recent("sentitems", 10) == [] and side.recent("inbox", 0) == []


# --- the message tracked into the CRM ------------------------------------------------------------


@pytest.fixture(scope="module")
def dataverse() -> Iterator[Any]:
    from sandbox.dataverse import DataverseServer

    tokens = TokenRegistry()
    server = DataverseServer(tokens, RequestLog(), FaultProfile(), port=0, demo_scale=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_pop3_message_tracked_with_its_attachments(dovecot: Any, dataverse: Any) -> None:
    """The POP3 message becomes one CRM email (Received) with the attachments within the
    organization's limit; the one over it is left out, the message still tracked."""
    raw = inbound("Tracked from POP3", ALICE)
    dovecot.deliver(raw)
    side = Pop3Side(settings(dovecot))
    [message] = [c for p in side.read_changes("messages:inbox", None) for c in p.changes]
    assert isinstance(message, Upsert)
    user = user_by_upn(ALICE)
    assert user is not None
    token = dataverse.tokens.static_token(ALICE)
    with DataverseClient(dataverse.api_url("contoso"), lambda: token) as client:
        emails = DataverseEmails(client, user.systemuser_id("contoso"))
        fields = message.fields
        email = NewEmail(
            id=email_id_for(fields["message_id"]),
            subject=fields["subject"],
            body_html=fields["body"],
            message_id=fields["message_id"],
            outgoing=False,
            sent_on=fields["sent"],
            received_on=fields["received"],
            parties=(Party(FROM, fields["sender"]), Party(TO, ALICE)),
        )
        created = emails.create_email(email)
        with dataverse.store.lock:
            [org_id] = list(dataverse.table("contoso", "organizations").rows)
        client.update("organizations", org_id, {"maxuploadfilesize": 2000}, "*")
        limit = emails.attachment_limit()  # 2,000 bytes of base64 hold 1,500 of a file
        assert limit == 1500
        attached = side.attachments(message.id, limit)
        for index, data in enumerate(attached):
            if data.content is not None:
                emails.add_attachment(
                    created.id, attachment_id_for(created.id, index, data.name), data
                )
    with dataverse.store.lock:
        row = dataverse.table("contoso", "emails").rows[created.id].values.copy()
        files = sorted(
            (r.values["filename"], r.values["filesize"])
            for r in dataverse.table("contoso", "activitymimeattachments").rows.values()
            if r.values.get("_objectid_value") == created.id
        )
    assert (row["statecode"], row["statuscode"]) == (1, 4)
    assert row["messageid"] == fields["message_id"] and "<b>Alice</b>" in row["description"]
    inner = next(a for a in attached if a.name == "Forwarded order.eml")
    assert files == [("Forwarded order.eml", inner.size), ("data.csv", 8)]
