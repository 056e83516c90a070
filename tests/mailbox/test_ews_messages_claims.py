"""EwsSide messages (send, deliveries, categories) and the "only one" claims in the mailbox."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from exchangelib.folders import FolderCollection

from sync.mailbox import claims
from sync.mailbox.ews import EwsConnection, EwsSide
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.sides import NotFound, Upsert, Written
from tests.mailbox.ews_helpers import ALICE, BOB, CAROL, DAVE, connect, read_all

# --- messages ----------------------------------------------------------------------------------


def test_send_arrives_in_recipients_inbox_with_same_message_id(ews: Any) -> None:
    alice, bob = EwsSide(connect(ews, ALICE)), EwsSide(connect(ews, BOB))
    _, bob_token = read_all(bob, "email", None)  # "email" (fields.py) is "messages" too
    fields = {
        "subject": "Offer CRM:0001234",
        "to": [BOB],
        "cc": [],
        "body": "<p>Hello Bob</p>",
        "body_type": "HTML",
        "in_reply_to": "<root.1@crm.example>",
        "references": "<root.1@crm.example>",
    }
    sent = alice.send(fields, key="crm-mail-1")
    assert isinstance(sent, Written) and sent.id
    copy = alice.read("messages:sentitems", [sent.id])[sent.id]
    assert copy.key == "crm-mail-1" and copy.fields["folder"] == "sentitems"
    message_id = copy.fields["message_id"]
    assert message_id and message_id.startswith("<")

    again = alice.send(fields, key="crm-mail-1")  # a retried send finds the first one
    assert again.id == sent.id
    sent_items, _ = read_all(alice, "messages:sentitems", None)
    assert [c.id for c in sent_items] == [sent.id]
    assert [
        c.id for page in alice.read_changes_folder("sentitems", None) for c in page.changes
    ] == [sent.id]

    arrived, _ = read_all(bob, "messages", bob_token)
    matching = [
        c for c in arrived if isinstance(c, Upsert) and c.fields["message_id"] == message_id
    ]
    assert len(matching) == 1
    got = matching[0].fields
    assert got["subject"] == fields["subject"] and got["sender"] == ALICE
    assert got["to"] == [BOB] and got["in_reply_to"] == "<root.1@crm.example>"


def test_delivered_mime_shows_up_in_next_read(ews: Any) -> None:
    side = EwsSide(connect(ews, CAROL))
    _, token = read_all(side, "messages", None)
    mime = (
        b"From: Someone <someone@outside.example>\r\n"
        b"To: carol@fabrikam.example\r\n"
        b"Subject: Inbound question\r\n"
        b"Message-Id: <inbound.42@outside.example>\r\n"
        b"In-Reply-To: <earlier.41@crm.example>\r\n"
        b"References: <earlier.41@crm.example>\r\n"
        b"Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Can you send the offer?\r\n"
    )
    item_id = ews.deliver_mime(CAROL, mime)
    changes, _ = read_all(side, "messages", token)
    assert [c.id for c in changes] == [item_id]
    fields = changes[0].fields
    assert fields["message_id"] == "<inbound.42@outside.example>"
    assert fields["in_reply_to"] == "<earlier.41@crm.example>"
    assert fields["sender"] == "someone@outside.example"
    assert fields["subject"] == "Inbound question" and fields["folder"] == "inbox"
    assert "offer" in (fields["body"] or "")


def test_set_categories_marks_tracked(ews: Any) -> None:
    side = EwsSide(connect(ews, CAROL))
    item_id = ews.deliver_mime(CAROL, b"Subject: Track me\r\nMessage-Id: <t.1@x>\r\n\r\nbody\r\n")
    results = side.set_categories([item_id, "AAMkAGI2TnonexistentAAA="], add=[TRACKED_CATEGORY])
    assert isinstance(results[0], Written) and isinstance(results[1], NotFound)
    assert side.read("messages", [item_id])[item_id].fields["categories"] == [TRACKED_CATEGORY]
    side.set_categories([item_id], remove=[TRACKED_CATEGORY])
    assert side.read("messages", [item_id])[item_id].fields["categories"] == []


# --- claims ------------------------------------------------------------------------------------


def claim(instance: str) -> claims.Claim:
    return claims.Claim(
        org_url="https://contoso.crm.dynamics.com/",
        org_id="org-1",
        instance_id=instance,
        instance_name=f"Computer {instance}",
    )


def test_claim_is_recorded_in_a_hidden_folder(ews: Any) -> None:
    conn = connect(ews, DAVE)
    assert claims.read_claim(conn) is None
    root = conn.account.msg_folder_root
    folders = FolderCollection(account=conn.account, folders=[root])
    assert claims.CLAIM_FOLDER_NAME not in [f.name for f in folders.find_folders()]
    taken = claims.take_claim(conn, claim("A"), expected=None)
    assert taken.claimed_at and claims.read_claim(connect(ews, DAVE)) == taken
    again = claims.take_claim(conn, claim("A"), expected=taken)  # renewing our own claim
    assert again.same_owner(taken)
    names = [f.name for f in folders.find_folders()]
    assert names.count(claims.CLAIM_FOLDER_NAME) == 1


def test_claim_taken_since_read_is_refused(ews: Any) -> None:
    first, second = connect(ews, BOB), connect(ews, BOB)
    seen = claims.read_claim(second)
    claims.take_claim(first, claim("A"), expected=seen)
    with pytest.raises(claims.ClaimTaken) as caught:
        claims.take_claim(second, claim("B"), expected=seen)
    assert caught.value.current is not None and caught.value.current.instance_id == "A"


def test_two_computers_racing_one_wins(ews: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = connect(ews, ALICE), connect(ews, ALICE)
    claims.hidden_folder(one)  # the folder exists
    # both computers read the folder (same ChangeKey) before either writes
    folders = {id(one): claims.hidden_folder(one), id(two): claims.hidden_folder(two)}
    real = claims.hidden_folder

    def first_read_then_real(conn: EwsConnection, create: bool = True) -> Any:
        return folders.pop(id(conn), None) or real(conn, create)

    monkeypatch.setattr(claims, "hidden_folder", first_read_then_real)
    barrier = threading.Barrier(2)
    outcome: dict[str, Any] = {}

    def race(name: str, conn: EwsConnection) -> None:
        barrier.wait()
        try:
            outcome[name] = claims.take_claim(conn, claim(name), expected=None)
        except claims.ClaimTaken as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=race, args=a) for a in (("A", one), ("B", two))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.undo()
    winners = [v for v in outcome.values() if isinstance(v, claims.Claim)]
    losers = [v for v in outcome.values() if isinstance(v, claims.ClaimTaken)]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].current is not None and losers[0].current.same_owner(winners[0])
    assert claims.read_claim(connect(ews, ALICE)) == winners[0]


def test_a_known_hidden_folder_is_read_by_its_id_and_found_again_when_remade(ews: Any) -> None:
    conn, other = connect(ews, CAROL), connect(ews, CAROL)
    claims.take_claim(conn, claim("A"), expected=None)
    first_id = conn.hidden_folder_id
    assert first_id
    ews.log.clear()
    assert claims.read_claim(conn) is not None
    assert [e.target for e in ews.log] == ["GetFolder"]  # by id: no search

    # someone deletes the folder and another computer makes it again (a new id)
    claims.hidden_folder(other).delete()
    claims.take_claim(other, claim("B"), expected=None)
    current = claims.read_claim(conn)
    assert current is not None and current.instance_id == "B"
    assert conn.hidden_folder_id not in (None, first_id)


def test_one_shared_connection_per_mailbox_and_credentials(ews: Any) -> None:
    from sync.mailbox.ews_connection import BasicAuth, OAuthToken, shared_connection

    one = shared_connection(ews.url, DAVE, BasicAuth(DAVE, "pw-1"), ews.ca_file)
    assert shared_connection(ews.url, DAVE.upper(), BasicAuth(DAVE, "pw-1"), ews.ca_file) is one
    assert shared_connection(ews.url, DAVE, BasicAuth(DAVE, "pw-2"), ews.ca_file) is not one
    tokens = iter(["first", "second"])
    by_token = shared_connection(ews.url, DAVE, OAuthToken(lambda: next(tokens)), ews.ca_file)
    newer = shared_connection(ews.url, DAVE, OAuthToken(lambda: "newest"), ews.ca_file)
    assert newer is by_token and by_token.auth.token_provider() == "newest"
