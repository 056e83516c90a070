"""Sandbox EWS: notifications (pull and streaming), demo data, the launcher-facing API."""

from __future__ import annotations

import pytest
from exchangelib.items import Contact, Message

from tests.sandbox.ews_helpers import ALICE

DEMO = True  # the server fixture (conftest.py) loads the demo mailboxes


def test_demo_data_per_mailbox(server, alice):
    counts = server.mailbox(ALICE).counts()
    assert counts["inbox"] + counts["sentitems"] == 30
    assert counts["contacts"] >= 5 and counts["tasks"] >= 4 and counts["calendar"] >= 4
    inbox = list(alice.inbox.all())
    assert all(m.message_id and m.sender for m in inbox)
    sent_ids = {m.message_id for m in alice.sent.all()}
    replies = [m for m in inbox if m.in_reply_to]
    assert replies and any(
        r.in_reply_to in sent_ids | {m.message_id for m in inbox} for r in replies
    )
    series = [c for c in alice.calendar.all() if c.type == "RecurringMaster"]
    assert len(series) == 2
    assert {c.display_name for c in alice.contacts.all()} >= {"Nadia Haddad", "Tom Becker"}


def test_pull_subscription_reports_changes(alice):
    subscription_id, watermark = alice.inbox.subscribe_to_pull()
    try:
        msg = Message(account=alice, folder=alice.inbox, subject="notify me", body="x")
        msg.save()
        notification = next(iter(alice.inbox.get_events(subscription_id, watermark)))
        kinds = [type(e).__name__ for e in notification.events]
        assert "CreatedEvent" in kinds
        created = next(e for e in notification.events if type(e).__name__ == "CreatedEvent")
        assert created.item_id.id == msg.id
        quiet = next(iter(alice.inbox.get_events(subscription_id, created.watermark)))
        assert [type(e).__name__ for e in quiet.events] == ["StatusEvent"]
    finally:
        alice.inbox.unsubscribe(subscription_id)


def test_streaming_subscription_returns_at_once(alice):
    subscription_id = alice.contacts.subscribe_to_streaming()
    try:
        Contact(folder=alice.contacts, display_name="Streamed", given_name="Streamed").save()
        notifications = list(
            alice.contacts.get_streaming_events(
                subscription_id, connection_timeout=1, max_notifications_returned=1
            )
        )
        events = [type(e).__name__ for n in notifications for e in n.events]
        assert "CreatedEvent" in events
    finally:
        alice.contacts.unsubscribe(subscription_id)


def test_streaming_connection_is_held_open_and_closes_after_its_timeout(server, alice):
    """GetStreamingEvents keeps the connection open and sends each change as it happens
    (getstreamingevents-operation.md); after ConnectionTimeout minutes (connectiontimeout.md:
    1 to 30) the last envelope says ConnectionStatus Closed and the answer ends. One "minute"
    lasts a second here (`streaming_minute`)."""
    import threading
    import time

    server.streaming_minute, server.streaming_heartbeat = 1.5, 0.2
    subscription_id = alice.inbox.subscribe_to_streaming()
    mime = b"From: bob@contoso.example\r\nTo: alice@contoso.example\r\nSubject: later\r\n\r\nhi\r\n"
    try:
        # delivered by the server itself: this client's one connection is the held one
        later = threading.Timer(0.4, lambda: server.deliver_mime(ALICE, mime, "inbox"))
        started = time.monotonic()
        later.start()
        notifications = list(
            alice.inbox.get_streaming_events(subscription_id, connection_timeout=1)
        )
        took = time.monotonic() - started
        later.join()
        events = [type(e).__name__ for n in notifications for e in n.events]
        assert "CreatedEvent" in events  # sent while the connection was open
        assert took >= 1.4  # held for its ConnectionTimeout, not answered at once
        # the same subscription again, nothing new: the connection closes with no events
        again = list(alice.inbox.get_streaming_events(subscription_id, connection_timeout=1))
        assert [e for n in again for e in n.events] == []
    finally:
        server.streaming_minute, server.streaming_heartbeat = 60.0, 30.0
        alice.inbox.unsubscribe(subscription_id)


def test_reset_mailbox_empties_it(server):
    server.reset_mailbox("dave@fabrikam.example")
    assert sum(server.mailbox("dave@fabrikam.example").counts().values()) == 0
    assert server.mailbox("carol@fabrikam.example").counts()["inbox"] > 0
    with pytest.raises(KeyError):
        server.mailbox("nobody@nowhere.example")


def test_plain_http_twin_and_launcher_signature(tmp_path):
    import requests

    from sandbox.ews import EwsServer
    from sandbox.faults import FaultProfile
    from sandbox.identity import TokenRegistry
    from sandbox.requestlog import RequestLog

    server = EwsServer(
        TokenRegistry(),
        RequestLog(),
        FaultProfile(),
        data_dir=str(tmp_path),
        http_port=0,
        demo=False,
    )
    server.start()
    try:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.http_url is not None and server.http_url.startswith("http://127.0.0.1:")
        assert (tmp_path / "ews" / "sandbox-ca.pem").exists()
        body = (
            '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" '
            'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><s:Body>'
            "<m:ResolveNames ReturnFullContactData='true'><m:UnresolvedEntry>carol</m:UnresolvedEntry>"
            "</m:ResolveNames></s:Body></s:Envelope>"
        )
        response = requests.post(
            server.http_url, data=body, auth=("dave@fabrikam.example", "dave-Sandbox-1"), timeout=10
        )
        assert response.status_code == 200
        assert b"carol@fabrikam.example" in response.content
        assert server.log.count(user="dave@fabrikam.example", target="ResolveNames") == 1
    finally:
        server.stop()
