"""The tracking stage in the messaging job: after the other kinds, its counts in the run, and
the CRM mailbox record's incoming method checked at every run (a take-over by server-side
sync stops tracking with an alert that names the method)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.engine.options import EngineSettings
from sync.kinds import CONTACTS
from sync.mail.memory import MemoryEmails
from sync.mail.track_run import TrackingStage
from sync.memory import MemoryCrm, MemoryMailbox
from sync.messaging import Connection, MessagingJob
from sync.runs import open_alerts, recent_runs
from sync.service import MESSAGING, SyncService
from sync.sides import AuthError
from sync.store.db import Database, open_database
from tests.mail.email_world import ORG_ID, World, make_world


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return open_database(tmp_path / "data")


@pytest.fixture
def world() -> World:
    return make_world()


class Method:
    """The mailbox record's `incomingemaildeliverymethod`; counts the reads."""

    def __init__(self, value: int | None) -> None:
        self.value, self.reads = value, 0

    def read(self) -> int | None:
        self.reads += 1
        return self.value


def stage(world: World, method: Method | None, chosen: bool = True) -> TrackingStage:
    alice = world.alice
    return TrackingStage(
        alice.directory,
        alice.mailbox,
        alice.track_settings(),
        chosen=chosen,
        incoming_method=method.read if method is not None else None,
    )


def run_once(database: Database, connection: Connection) -> Any:
    service = SyncService(database, {MESSAGING: MessagingJob(database, lambda: connection)})
    run_id = service.run(MESSAGING, "now")
    return next(r for r in recent_runs(database, limit=5) if r.id == run_id)


def connection(tracking: TrackingStage, kinds: list[Any] | None = None) -> Connection:
    crm = MemoryCrm(me="u-alice")
    crm.put("contacts", {"firstname": "Ann", "lastname": "Lee"})
    return Connection(
        ORG_ID, crm, MemoryMailbox(), EngineSettings(me="u-alice"), kinds or [], tracking=tracking
    )


def test_the_stage_runs_after_the_kinds_and_counts_in_the_run(
    world: World, database: Database
) -> None:
    world.alice.database = database
    world.alice.receive(message_id="<w1@x>")
    world.alice.receive(message_id="<w2@x>")
    method = Method(1)
    run = run_once(database, connection(stage(world, method), [CONTACTS]))
    assert run.outcome == "ok" and run.message == "3 changes"
    assert run.counts["contacts"]["mailbox"]["created"] == 1
    assert run.counts["email"] == {
        "tracked": 2, "linked": 0, "untracked": 0, "attachments_skipped": 0, "errors": 0
    }  # fmt: skip
    assert len(world.emails()) == 2 and method.reads == 1
    run = run_once(database, connection(stage(world, method)))
    assert run.outcome == "ok" and run.counts["email"]["tracked"] == 0
    assert run.message == "Nothing changed."


def test_server_side_sync_taking_incoming_email_stops_tracking_with_an_alert(
    world: World, database: Database
) -> None:
    world.alice.database = database
    world.alice.receive(message_id="<t@x>")
    method = Method(2)  # Server-Side Synchronization or Email Router
    run = run_once(database, connection(stage(world, method), [CONTACTS]))
    assert run.outcome == "partial"
    assert "Server-Side Synchronization or Email Router" in run.message
    assert run.counts["contacts"]["mailbox"]["created"] == 1, "the other kinds still run"
    assert "Server-Side Synchronization" in run.counts["email"]["message"]
    assert world.emails() == [] and world.alice.mailbox.calls["read_changes"] == 0
    (alert,) = [a for a in open_alerts(database) if a.subject == "incoming"]
    assert alert.code == "mailbox-method-not-set"
    assert alert.title == "Incoming email is not tracked"
    assert "Incoming Email to Server-Side Synchronization or Email Router" in alert.message
    assert "administrator" in alert.action
    method.value = 3  # Forward Mailbox: the alert now names it
    run_once(database, connection(stage(world, method)))
    (alert,) = [a for a in open_alerts(database) if a.subject == "incoming"]
    assert "Forward Mailbox" in alert.message
    method.value = 1  # back to this client: tracked, the alert resolved
    run = run_once(database, connection(stage(world, method)))
    assert run.outcome == "ok" and run.counts["email"]["tracked"] == 1
    assert [a for a in open_alerts(database) if a.subject == "incoming"] == []


def test_no_mailbox_record_is_said_too(world: World, database: Database) -> None:
    world.alice.database = database
    run = run_once(database, connection(stage(world, Method(None))))
    assert run.outcome == "partial" and "no mailbox record" in run.message


def test_the_category_alone_is_quiet_when_incoming_email_is_not_ours(
    world: World, database: Database
) -> None:
    world.alice.database = database
    world.alice.option("none")
    world.alice.receive(message_id="<c@x>", categories=["Tracked to Dynamics 365"])
    run = run_once(database, connection(stage(world, Method(2), chosen=False), [CONTACTS]))
    assert run.outcome == "ok" and "email" not in run.counts
    assert open_alerts(database) == [] and world.emails() == []
    run = run_once(database, connection(stage(world, Method(1), chosen=False)))
    assert run.counts["email"]["tracked"] == 1, "ours: the category is honoured"


def test_a_refused_sign_in_during_tracking_fails_the_run(world: World, database: Database) -> None:
    world.alice.database = database
    world.alice.receive(message_id="<a@x>")

    def refuse(point: str, operation: str) -> None:
        raise AuthError("token revoked", "401")

    world.org.hook = refuse
    run = run_once(database, connection(stage(world, Method(1))))
    assert run.outcome == "failed" and "sign-in refused" in run.message
    assert run.counts["email"]["message"] == "sign-in refused"
    assert isinstance(world.alice.directory, MemoryEmails)
