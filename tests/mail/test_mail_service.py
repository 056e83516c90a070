"""`MailService`, the real `MailFacade`, over the in-memory ports: the Mail page's actions act
at once, through the same tracker as the runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.mail import settings as email_settings
from sync.mail.facade import TRACKED_FOLDERS_MAX, MailError
from sync.mail.links import UNTRACKED
from sync.mail.service import FOLDER_GONE, GONE, MailService
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.runs import RunRecorder
from sync.setup.profile import Profile
from sync.sides import Throttled
from tests.mail.email_world import ALICE, ORG_ID, World, make_world


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture
def service(world: World, tmp_path: Path) -> MailService:
    alice = world.alice
    profile = Profile(alice.database, tmp_path)
    profile.set(email_settings.TRACKING_OPTION, "none")
    return MailService(
        alice.directory, alice.mailbox, profile, ORG_ID, alice.record, [ALICE],
        clock=lambda: alice.clock,
    )  # fmt: skip


def test_recent_lists_messages_with_their_tracked_state(world: World, service: MailService) -> None:
    alice = world.alice
    first = alice.receive(message_id="<1@x>", subject="First", received="2026-03-02T10:00:00Z")
    alice.receive(message_id="<2@x>", subject="Second", received="2026-03-02T11:00:00Z",
                  categories=[TRACKED_CATEGORY])  # fmt: skip
    rows = service.recent("inbox")
    assert [r.subject for r in rows] == ["Second", "First"]
    assert [(r.tracked, r.pending) for r in rows] == [(False, True), (False, False)]
    row = service.track(first)
    assert row.tracked and row.crm_email_id and not row.pending
    assert world.email_of("<1@x>").id == row.crm_email_id
    assert service.recent("inbox")[1].tracked


def test_track_with_a_regarding_then_set_and_clear_it(world: World, service: MailService) -> None:
    alice = world.alice
    item = alice.receive(message_id="<r@x>")
    service.recent("inbox")
    row = service.track(item, world.carol)
    assert row.regarding == world.carol
    assert world.email_of("<r@x>").regarding == world.carol
    row = service.set_regarding(item, world.deal)
    assert row.regarding == world.deal and world.email_of("<r@x>").regarding == world.deal
    row = service.set_regarding(item, None)
    assert row.regarding is None and world.email_of("<r@x>").regarding is None
    assert len(world.emails()) == 1


def test_set_regarding_tracks_an_untracked_message_first(
    world: World, service: MailService
) -> None:
    item = world.alice.receive(message_id="<s@x>")
    row = service.set_regarding(item, world.acme)
    assert row.tracked and row.regarding == world.acme
    assert world.email_of("<s@x>").regarding == world.acme


def test_untrack_keeps_the_crm_email_and_the_run_leaves_it(
    world: World, service: MailService
) -> None:
    alice = world.alice
    alice.option("all")
    item = alice.receive(message_id="<u@x>")
    service.track(item)
    row = service.untrack(item)
    assert not row.tracked and not row.pending
    assert TRACKED_CATEGORY not in alice.mailbox.find(item)[1]["categories"]  # type: ignore[index]
    assert alice.links.by_mailbox([item])[item].state == UNTRACKED
    assert len(world.emails()) == 1
    assert alice.run().tracked == 0 and len(world.emails()) == 1
    row = service.track(item)
    assert row.tracked, "the user may track it again"


def test_a_click_and_a_run_make_one_email(world: World, service: MailService) -> None:
    alice = world.alice
    alice.option("all")
    item = alice.receive(message_id="<both@x>")
    service.track(item)
    result = alice.run()
    assert (result.tracked, result.linked) == (0, 0)
    assert len(world.emails()) == 1


def test_a_message_gone_or_a_busy_server_is_a_mail_error(
    world: World, service: MailService
) -> None:
    alice = world.alice
    item = alice.receive(message_id="<g@x>")
    alice.mailbox.delete_message(item)
    with pytest.raises(MailError, match=GONE.text):
        service.track(item)
    item = alice.receive(message_id="<b@x>")

    def busy(point: str, operation: str) -> None:
        raise Throttled("slow down", retry_after=3)

    world.org.hook = busy
    with pytest.raises(MailError, match="busy"):
        service.track(item)
    world.org.hook = None
    assert service.track(item).tracked


def test_search_records_across_the_searchable_tables(world: World, service: MailService) -> None:
    found = service.search_records("a")
    assert {r.entity_set for r in found} <= {"contacts", "accounts", "leads", "opportunities"}
    assert {r.name for r in service.search_records("big")} == {"The big deal"}
    assert service.search_records("  ") == []


def test_tracked_folders_at_most_25_with_their_regarding(
    world: World, service: MailService
) -> None:
    alice = world.alice
    ids = [alice.mailbox.add_folder(f"F{n:02d}") for n in range(TRACKED_FOLDERS_MAX + 1)]
    row = service.set_folder_tracking(ids[0], True, world.deal)
    assert row.tracked and row.regarding == world.deal
    for folder in ids[1:TRACKED_FOLDERS_MAX]:
        service.set_folder_tracking(folder, True)
    with pytest.raises(MailError, match="At most 25"):
        service.set_folder_tracking(ids[-1], True)
    with pytest.raises(MailError, match=FOLDER_GONE.text):
        service.set_folder_tracking("no-such-folder", True)
    rows = {f.id: f for f in service.folders()}
    assert rows[ids[0]].tracked and rows[ids[0]].regarding == world.deal
    assert not rows[ids[-1]].tracked
    service.set_folder_tracking(ids[0], False)
    assert not {f.id: f for f in service.folders()}[ids[0]].tracked
    stored = email_settings.load(service.profile)
    assert len(stored.tracked_folders) == TRACKED_FOLDERS_MAX - 1
    assert stored.started_at, "choosing a tracked folder starts tracking"


def test_counts_from_the_runs(world: World, service: MailService) -> None:
    alice = world.alice
    alice.option("all")
    alice.receive(message_id="<c1@x>")
    alice.receive(message_id="<c2@x>")
    assert service.counts().last_run is None
    recorder = RunRecorder(alice.database, "messaging", "schedule")
    recorder.counts({"email": alice.run().counts(), "outgoing": {"sent": 3, "failed": 1}})
    recorder.finish("ok")
    counts = service.counts()
    assert (counts.tracked_total, counts.tracked_last_run) == (2, 2)
    assert (counts.sent_last_run, counts.failed_to_send) == (3, 1)
    assert counts.last_run is not None


def test_the_factory_offers_no_facade_before_setup_is_complete(tmp_path: Path) -> None:
    from sync.connect import mail_facade_factory
    from sync.store.db import open_database

    database = open_database(tmp_path / "data")
    try:
        factory = mail_facade_factory(Profile(database, tmp_path / "data"), lambda: None)
        assert factory() is None
    finally:
        database.dispose()
