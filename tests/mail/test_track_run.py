"""The tracking run over the in-memory ports: each option, each manual way, correlation,
deduplication across users and runs, attachments, crashes, the start date and untracking."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from sync.mail.links import PENDING_CRM, SYNCED, TAGGING, UNTRACKED
from sync.mail.memory import MemoryTrackingMailbox
from sync.mail.ports import BCC, CC, FROM, TO, AttachmentData, NewEmail
from sync.mail.settings import EmailSettings
from sync.mail.track_run import Tracker
from sync.mail.tracking import CATEGORY, FOLDER, RULE, USER
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.memory import Crash
from sync.runs import open_alerts
from sync.sides import Throttled, Unavailable
from tests.mail.email_world import (
    ACME,
    ALICE,
    BOB,
    CAROL,
    LEE,
    START,
    STRANGER,
    World,
    make_world,
    moment,
    new_database,
)


@pytest.fixture
def world() -> World:
    return make_world()


def tracked_copies(user: object) -> set[str]:
    mailbox = user.mailbox  # type: ignore[attr-defined]
    assert isinstance(mailbox, MemoryTrackingMailbox)
    return mailbox.tracked_ids()


# --- the five options ---------------------------------------------------------------------------


def test_option_none_tracks_nothing_by_rule(world: World) -> None:
    alice = world.alice
    alice.option("none")
    alice.receive(message_id="<a@x>", sender=CAROL)
    result = alice.run()
    assert world.emails() == [] and result.tracked == 0
    assert world.org.calls["emails_by_message_id"] == 0, "no request for what nothing tracks"


def test_option_all_tracks_every_message_with_its_parties(world: World) -> None:
    alice = world.alice
    item = alice.receive(
        message_id="<all@x>", sender=CAROL, to=[ALICE, LEE], cc=[STRANGER], bcc=[ACME],
        subject="Quote", body="Line 1\nLine <2>", received=moment(START + timedelta(hours=1)),
    )  # fmt: skip
    result = alice.run()
    assert result.tracked == 1 and result.errors == 0
    stored = world.email_of("<all@x>")
    email: NewEmail = stored.email
    assert email.subject == "Quote" and not email.outgoing
    assert email.body_html == "<p>Line 1<br>Line &lt;2&gt;</p>"
    assert email.received_on == moment(START + timedelta(hours=1))
    parties = {(p.mask, p.address, p.record.id if p.record else None) for p in stored.parties}
    assert parties == {
        (FROM, CAROL, "c-carol"),
        (TO, ALICE, "u-alice"),
        (TO, LEE, "l-lee"),
        (CC, STRANGER, None),  # unresolved: kept as the address used
        (BCC, ACME, "a-acme"),
    }
    assert tracked_copies(alice) == {item}, "the category is set on the mailbox copy"
    [link] = alice.links.all()
    assert (link.state, link.tagged, link.way) == (SYNCED, True, RULE)


def test_option_records_tracks_mail_from_contacts_leads_and_accounts_only(world: World) -> None:
    alice = world.alice
    alice.option("records")
    alice.receive(message_id="<c@x>", sender=CAROL)
    alice.receive(message_id="<l@x>", sender=LEE)
    alice.receive(message_id="<a@x>", sender=ACME)
    alice.receive(message_id="<u@x>", sender=BOB)  # a user: not a "record" of this option
    alice.receive(message_id="<s@x>", sender=STRANGER)
    alice.send(message_id="<sent-to-carol@x>", to=[CAROL])  # sent: judged by its recipients
    alice.send(message_id="<sent-to-stranger@x>", to=[STRANGER])
    assert alice.run().tracked == 4
    assert {e.email.message_id for e in world.emails()} == {
        "<c@x>", "<l@x>", "<a@x>", "<sent-to-carol@x>"
    }  # fmt: skip
    sent = world.email_of("<sent-to-carol@x>").email
    assert sent.outgoing and sent.received_on is None


def test_option_email_enabled_tracks_mail_from_users_too(world: World) -> None:
    alice = world.alice
    alice.option("email_enabled")
    alice.receive(message_id="<c@x>", sender=CAROL)
    alice.receive(message_id="<u@x>", sender=BOB)
    alice.receive(message_id="<s@x>", sender=STRANGER)
    assert alice.run().tracked == 2
    assert {e.email.message_id for e in world.emails()} == {"<c@x>", "<u@x>"}


def test_option_replies_tracks_a_reply_by_in_reply_to_with_the_same_regarding(
    world: World,
) -> None:
    alice = world.alice
    alice.option("replies")
    original = alice.directory.create_email(
        NewEmail(
            "e-orig", "Offer", "", "<orig@contoso>", True, None, None, (), regarding=world.deal
        )
    )
    alice.receive(message_id="<reply@x>", in_reply_to="<orig@contoso>", subject="RE: Offer")
    alice.receive(message_id="<unrelated@x>", subject="Lunch?")
    assert alice.run().tracked == 1
    reply = world.email_of("<reply@x>")
    assert reply.regarding == world.deal == original.regarding
    assert reply.email.in_reply_to == "<orig@contoso>"


def test_option_replies_tracks_a_reply_by_the_token_alone(world: World) -> None:
    alice = world.alice
    alice.option("replies")
    alice.directory.create_email(
        NewEmail(
            "e-orig",
            "Offer CRM:0000004242",
            "",
            "<orig@contoso>",
            True,
            None,
            None,
            (),
            tracking_token="CRM:0000004242",
            regarding=world.acme,
        )
    )
    # a forward that lost its In-Reply-To and References: only the subject's token remains
    alice.receive(message_id="<fw@x>", subject="FW: Offer CRM:0000004242")
    alice.receive(message_id="<other@x>", subject="Offer CRM:0000009999")  # no such email
    assert alice.run().tracked == 1
    assert world.email_of("<fw@x>").regarding == world.acme


def test_replies_by_conversation_index_only_for_a_reply_index(world: World) -> None:
    alice = world.alice
    alice.option("replies")
    header = bytes([1]) + bytes(5) + bytes(range(16))
    root = base64.b64encode(header).decode()
    alice.directory.create_email(
        NewEmail(
            "e-orig",
            "Plan",
            "",
            "<plan@contoso>",
            True,
            None,
            None,
            (),
            conversation_index=root,
            regarding=world.carol,
        )
    )
    alice.receive(
        message_id="<r@x>", conversation_index=base64.b64encode(header + bytes(5)).decode()
    )
    alice.receive(message_id="<first@x>", conversation_index=root)  # a first message: no thread
    assert alice.run().tracked == 1
    assert world.email_of("<r@x>").regarding == world.carol


# --- manual ways --------------------------------------------------------------------------------


def test_the_category_tracks_a_message_whatever_the_option(world: World) -> None:
    alice = world.alice
    alice.option("none")
    old = START - timedelta(days=400)
    item = alice.receive(message_id="<cat@x>", categories=[TRACKED_CATEGORY], when=old)
    alice.receive(message_id="<plain@x>")
    assert alice.run().tracked == 1
    [link] = alice.links.all()
    assert (link.mailbox_id, link.way, link.state, link.tagged) == (item, CATEGORY, SYNCED, True)
    assert alice.mailbox.calls["set_categories"] == 0, "the category is on it already"


def test_a_tracked_folder_tracks_its_messages_with_its_regarding(world: World) -> None:
    alice = world.alice
    alice.option("none")
    folder = alice.mailbox.add_folder("Big deal")
    alice.with_folder(folder, world.deal)
    item = alice.receive(folder, message_id="<in-folder@x>")
    alice.receive(message_id="<inbox@x>")
    assert alice.run().tracked == 1
    assert world.email_of("<in-folder@x>").regarding == world.deal
    [link] = alice.links.all()
    assert (link.mailbox_id, link.way, link.folder) == (item, FOLDER, folder)
    # moved there later: tracked at the next run
    moved = alice.mailbox.move(alice.receive(message_id="<moved@x>"), folder)
    assert alice.run().tracked == 1
    assert world.email_of("<moved@x>").regarding == world.deal
    assert moved in tracked_copies(alice)


def test_the_user_tracks_a_message_with_a_regarding(world: World) -> None:
    alice = world.alice
    alice.option("none")
    item = alice.receive(message_id="<me@x>", subject="Please call")
    [upsert] = alice.mailbox.read("messages:inbox", [item]).values()
    link = alice.tracker().track_item("inbox", upsert, world.carol)
    assert link is not None and link.way == USER and link.state == SYNCED
    assert world.email_of("<me@x>").regarding == world.carol
    assert item in tracked_copies(alice)
    assert alice.run().tracked == 0, "the next run finds it tracked"


# --- deduplication --------------------------------------------------------------------------------


def test_two_users_tracking_one_message_make_one_email_with_both_as_parties(
    world: World,
) -> None:
    alice, bob = world.alice, world.bob
    # Bob got a blind copy: Alice's copy does not name him
    alice.receive(message_id="<shared@x>", sender=CAROL, to=[ALICE])
    bob.receive(message_id="<shared@x>", sender=CAROL, to=[ALICE])
    assert alice.run().tracked == 1
    result = bob.run()
    assert (result.tracked, result.linked) == (0, 1)
    [email] = world.emails()
    people = {(p.mask, p.record.id if p.record else None) for p in email.parties}
    assert people == {(FROM, "c-carol"), (TO, "u-alice"), (BCC, "u-bob")}
    assert len(tracked_copies(bob)) == 1
    # tracking again (another run, or a fresh install of Bob's) adds nothing
    assert bob.run().linked == 0
    bob.database = new_database()
    assert bob.run().linked == 1
    [email] = world.emails()
    assert len(email.parties) == 3, "a party is added once"


def test_a_message_to_oneself_is_one_email_for_both_copies(world: World) -> None:
    alice = world.alice
    alice.send(message_id="<self@x>", to=[ALICE])
    alice.receive(message_id="<self@x>", sender=ALICE, to=[ALICE])
    result = alice.run()
    assert (result.tracked, result.linked) == (1, 1)
    assert len(world.emails()) == 1 and len(alice.links.all()) == 2


def test_a_fresh_install_links_instead_of_creating(world: World) -> None:
    alice = world.alice
    for n in range(5):
        alice.receive(message_id=f"<m{n}@x>")
    assert alice.run().tracked == 5
    alice.database = new_database()
    result = alice.run()
    assert (result.tracked, result.linked) == (0, 5)
    assert len(world.emails()) == 5


# --- attachments ---------------------------------------------------------------------------------


def test_an_attachment_over_the_limit_is_skipped_with_an_alert(world: World) -> None:
    alice = world.alice
    world.org.limit = 1000
    small = AttachmentData("notes.txt", "text/plain", 10, b"0123456789")
    big = AttachmentData("video.mp4", "video/mp4", 5000, b"x" * 5000)
    other = AttachmentData("photo.png", "image/png", 20, b"p" * 20)
    alice.receive(message_id="<att@x>", subject="Files", attachments=[small, big, other])
    result = alice.run()
    assert (result.tracked, result.attachments_skipped, result.errors) == (1, 1, 0)
    email = world.email_of("<att@x>")
    assert sorted(a.name for a in email.attachments.values()) == ["notes.txt", "photo.png"]
    [alert] = [a for a in open_alerts(alice.database) if a.code == "attachment-skipped"]
    assert "video.mp4" in alert.message and "Files" in alert.message
    assert alice.run().attachments_skipped == 0, "skipped once, not at every run"


# --- crashes, throttling, item errors -------------------------------------------------------------


def test_a_crash_between_create_and_link_makes_no_second_email(world: World) -> None:
    alice = world.alice
    alice.receive(
        message_id="<crash@x>",
        attachments=[AttachmentData("a.txt", "text/plain", 1, b"a")],
    )

    def die(point: str, operation: str) -> None:
        if (point, operation) == ("after", "create_email"):
            raise Crash("killed right after the create")

    world.org.hook = die
    with pytest.raises(Crash):
        alice.run()
    world.org.hook = None
    [link] = alice.links.all()
    assert link.state == PENDING_CRM
    assert len(world.emails()) == 1
    result = alice.run()
    assert result.tracked == 1 and result.errors == 0
    [email] = world.emails()
    assert email.id == link.email_id, "the retry used the id chosen before the crash"
    assert len(email.attachments) == 1
    [link] = alice.links.all()
    assert link.state == SYNCED
    assert alice.run().tracked == 0


def test_a_crash_before_the_category_is_set_finishes_next_run(world: World) -> None:
    alice = world.alice
    item = alice.receive(message_id="<tag@x>")

    def die(point: str, operation: str) -> None:
        if (point, operation) == ("before", "set_categories"):
            raise Crash("killed before the category")

    alice.mailbox.mail_hook = die
    with pytest.raises(Crash):
        alice.run()
    alice.mailbox.mail_hook = None
    [link] = alice.links.all()
    assert link.state == TAGGING
    alice.run()
    assert item in tracked_copies(alice) and len(world.emails()) == 1
    assert alice.links.all()[0].state == SYNCED


@pytest.mark.parametrize("error", [Throttled("slow down", retry_after=5), Unavailable("down")])
def test_throttling_stops_the_run_and_the_next_run_redoes_the_folder(
    world: World, error: Exception
) -> None:
    alice = world.alice
    for n in range(4):
        alice.receive(message_id=f"<t{n}@x>")
    creates = 0

    def throttle(point: str, operation: str) -> None:
        nonlocal creates
        if (point, operation) == ("before", "create_email"):
            creates += 1
            if creates == 3:
                raise error

    world.org.hook = throttle
    result = alice.run()
    world.org.hook = None
    assert result.stopped and result.tracked == 2 and result.message
    assert alice.links.get_token("inbox") is None, "the folder's token stays unsaved"
    result = alice.run()
    assert result.tracked == 2 and not result.stopped
    assert len(world.emails()) == 4


def test_one_bad_message_is_parked_and_the_others_go_on(world: World) -> None:
    from sync.sides import Invalid

    alice = world.alice
    for n in range(3):
        alice.receive(message_id=f"<p{n}@x>", subject=f"S{n}")

    def refuse(point: str, operation: str) -> None:
        if (point, operation) == ("before", "create_email") and refuse.armed:  # type: ignore[attr-defined]
            refuse.armed = False  # type: ignore[attr-defined]
            raise Invalid("a column is too long")

    refuse.armed = True  # type: ignore[attr-defined]
    world.org.hook = refuse
    result = alice.run()
    assert (result.tracked, result.errors) == (2, 1)
    assert alice.links.parked_count() == 1
    assert alice.links.get_token("inbox") is not None, "the page was applied: its token saved"
    alice.clock += timedelta(hours=1)  # the parked message is due
    result = alice.run()
    assert (result.tracked, result.errors) == (1, 0)
    assert alice.links.parked_count() == 0 and len(world.emails()) == 3


# --- the start date ---------------------------------------------------------------------------


def test_messages_before_the_start_are_not_tracked_automatically(world: World) -> None:
    alice = world.alice
    alice.receive(message_id="<old@x>", when=START - timedelta(days=3))
    alice.receive(message_id="<recent@x>", when=START - timedelta(hours=20))
    alice.receive(message_id="<new@x>", when=START + timedelta(minutes=5))
    assert alice.run().tracked == 1
    assert {e.email.message_id for e in world.emails()} == {"<new@x>"}


def test_track_days_back_reaches_back_that_many_days(world: World) -> None:
    alice = world.alice
    alice.option("all", track_days_back=1)
    alice.receive(message_id="<old@x>", when=START - timedelta(days=3))
    alice.receive(message_id="<recent@x>", when=START - timedelta(hours=20))
    assert alice.run().tracked == 1
    assert {e.email.message_id for e in world.emails()} == {"<recent@x>"}


# --- untracking ------------------------------------------------------------------------------------


def test_removing_the_category_by_hand_untracks_and_is_remembered(world: World) -> None:
    alice = world.alice
    item = alice.receive(message_id="<u@x>")
    alice.run()
    alice.mailbox.categorize(item, [])
    result = alice.run()
    assert result.untracked == 1
    [link] = alice.links.all()
    assert link.state == UNTRACKED
    assert len(world.emails()) == 1, "the CRM email stays"
    # the rule does not take it back: not after an edit, not after a move
    alice.mailbox.edit("messages:inbox", item, {"subject": "changed"})
    assert alice.run().tracked == 0
    archive = alice.mailbox.add_folder("Archive")  # not tracked: the rule reads the Inbox
    moved = alice.mailbox.move(item, "inbox")  # a new id (as a move may give): by Message-Id
    result = alice.run()
    assert (result.tracked, result.linked) == (0, 0)
    assert tracked_copies(alice) == set()
    # the category put back by hand tracks it again (to the same email)
    alice.mailbox.categorize(moved, [TRACKED_CATEGORY])
    assert alice.run().linked == 1
    assert len(world.emails()) == 1
    assert archive in alice.mailbox.folders


def test_filing_an_untracked_message_in_a_tracked_folder_tracks_it_again(world: World) -> None:
    alice = world.alice
    item = alice.receive(message_id="<f@x>")
    alice.run()
    alice.mailbox.categorize(item, [])
    assert alice.run().untracked == 1
    folder = alice.mailbox.add_folder("Deals")
    alice.with_folder(folder, world.deal)
    moved = alice.mailbox.move(item, folder)
    result = alice.run()
    assert (result.tracked, result.linked) == (0, 1), "filed by hand: tracked again"
    assert moved in tracked_copies(alice) and len(world.emails()) == 1
    assert world.email_of("<f@x>").regarding == world.deal, "the folder's Regarding"


def test_a_message_untracked_and_moved_between_two_runs_stays_untracked(world: World) -> None:
    """Found by the email state machine: the category taken off and the message moved (a new
    item id) before the next run. The run sees the tracked item gone and a new one without the
    category: the user's untrack, which the rule must not undo."""
    alice = world.alice
    folder = alice.mailbox.add_folder("Projects")
    alice.with_folder(folder, world.deal)
    item = alice.receive(folder, message_id="<um@x>")
    assert alice.run().tracked == 1
    alice.mailbox.categorize(item, [])
    moved = alice.mailbox.move(item, "inbox")  # out of the tracked folder, option "all"
    result = alice.run()
    assert (result.tracked, result.linked, result.untracked) == (0, 0, 1)
    [link] = alice.links.all()
    assert (link.mailbox_id, link.state) == (moved, UNTRACKED)
    assert TRACKED_CATEGORY not in (alice.mailbox.find(moved) or ("", {}))[1]["categories"]
    assert alice.run().tracked == 0 and len(world.emails()) == 1
    # moved with its category: still tracked, the link follows
    kept = alice.receive(message_id="<kept@x>")
    alice.run()
    follows = alice.mailbox.move(kept, folder)
    alice.run()
    assert follows in tracked_copies(alice) and len(world.emails()) == 2


def test_untrack_by_the_user_removes_the_category_and_keeps_the_email(world: World) -> None:
    alice = world.alice
    item = alice.receive(message_id="<v@x>")
    alice.run()
    [link] = alice.links.all()
    alice.tracker().untrack(link)
    assert tracked_copies(alice) == set()
    assert alice.links.all()[0].state == UNTRACKED
    assert len(world.emails()) == 1
    assert alice.run().tracked == 0 and item not in tracked_copies(alice)


def test_deleting_a_tracked_message_keeps_the_crm_email(world: World) -> None:
    alice = world.alice
    item = alice.receive(message_id="<d@x>")
    alice.run()
    alice.mailbox.delete_message(item)
    alice.run()
    assert alice.links.all() == [] and len(world.emails()) == 1


# --- POP3 ---------------------------------------------------------------------------------------


def test_a_pop3_mailbox_tracks_without_categories(world: World) -> None:
    alice = world.alice
    alice.pop3 = True
    alice.mailbox.can_categorize = False
    alice.receive(message_id="<pop@x>")
    result = alice.run()
    assert result.tracked == 1
    [link] = alice.links.all()
    assert (link.state, link.tagged) == (SYNCED, False)
    alice.mailbox.edit("messages:inbox", link.mailbox_id or "", {"subject": "seen again"})
    assert alice.run().untracked == 0, "no category to miss: never untracked by its absence"


def test_sent_items_are_tracked_unless_opted_out(world: World) -> None:
    alice = world.alice
    alice.send(message_id="<s1@x>")
    assert alice.run().tracked == 1
    alice.settings = EmailSettings(option="all", track_sent_items=False)
    alice.send(message_id="<s2@x>")
    assert alice.run().tracked == 0


def test_a_quiet_run_costs_one_read_per_folder(world: World) -> None:
    alice = world.alice
    alice.receive(message_id="<q@x>")
    alice.run()
    before = dict(world.org.calls)
    reads = alice.mailbox.calls["read_changes"]
    alice.run()
    assert dict(world.org.calls) == before, "no CRM request when nothing changed"
    assert alice.mailbox.calls["read_changes"] - reads == 2  # inbox and sent items


def test_the_tracker_is_built_from_the_settings(world: World) -> None:
    alice = world.alice
    folder = alice.mailbox.add_folder("Deals")
    alice.with_folder(folder)
    settings = alice.track_settings()
    assert settings.folders == ("inbox", "sentitems", folder)
    alice.pop3 = True
    assert alice.track_settings().folders == ("inbox",)
    assert isinstance(alice.tracker(), Tracker)


def test_a_message_tracked_on_the_mail_page_then_deleted_before_a_run_loses_its_link(
    world: World,
) -> None:
    """A message made and deleted between two folder reads is never reported as deleted
    (SyncFolderItems forgets it; so does the memory mailbox): the run checks the links the
    Mail page made, once it has read the folders."""
    alice = world.alice
    alice.option("none")
    alice.run()  # the folders' tokens are saved: what arrives now is after them
    item = alice.receive(message_id="<page@x>")
    [upsert] = alice.mailbox.read("messages:inbox", [item]).values()
    link = alice.tracker().track_item("inbox", upsert, None)
    assert link is not None and link.verify
    alice.mailbox.delete_message(item)
    alice.run()
    assert alice.links.all() == [] and len(world.emails()) == 1
    kept = alice.receive(message_id="<kept@x>")
    [upsert] = alice.mailbox.read("messages:inbox", [kept]).values()
    alice.tracker().track_item("inbox", upsert, None)
    alice.run()
    [link] = alice.links.all()
    assert link.mailbox_id == kept and not link.verify, "checked once, then left alone"


def test_a_full_read_after_an_expired_token_drops_the_links_of_gone_messages(
    world: World,
) -> None:
    """A full read reports no deletions: a linked message it does not list is gone."""
    alice = world.alice
    first = alice.receive(message_id="<one@x>")
    alice.receive(message_id="<two@x>")
    assert alice.run().tracked == 2
    alice.mailbox.expire_tokens("messages:inbox")
    alice.mailbox.delete_message(first)
    result = alice.run()
    assert (result.tracked, result.linked) == (0, 0)
    assert [lk.message_id for lk in alice.links.all()] == ["<two@x>"]
    assert len(world.emails()) == 2, "the CRM emails stay"
