"""The messaging job's workloads (issue 8 point 5, issue 10 point 10), over in-memory sides:

- every run reads the CRM mailbox record's method for appointments, contacts and tasks once;
  while it is not this client (server-side sync took over, or None), those kinds are skipped
  with an alert that names the method and what to do, resolved once the method is back;
- a kind no longer chosen is wound down: its mailbox copies leave quietly (no meeting
  cancellations), its links are dropped, the CRM keeps its records; then it stops running.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.connect import winding_down
from sync.engine.options import EngineSettings
from sync.kinds import CONTACTS, TASKS
from sync.kinds.appointments import APPOINTMENTS
from sync.kinds.base import Kind
from sync.memory import MemoryCrm, MemoryMailbox
from sync.messaging import Connection, MessagingJob
from sync.runs import open_alerts, recent_runs
from sync.service import MESSAGING, SyncService
from sync.sides import DeleteOp, Unavailable, WriteOp
from sync.store.db import Database, open_database
from sync.store.linkstore import SqlLinkStore

ME = "user-me"
ORG = "org-1"


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return open_database(tmp_path / "data")


class Record:
    """The mailbox record's `actdeliverymethod` as the CRM holds it; counts the reads."""

    def __init__(self, act: int | None) -> None:
        self.act, self.reads = act, 0

    def read(self) -> int | None:
        self.reads += 1
        return self.act


def run_once(database: Database, connection: Connection) -> Any:
    service = SyncService(database, {MESSAGING: MessagingJob(database, lambda: connection)})
    run_id = service.run(MESSAGING, "now")
    return next(r for r in recent_runs(database, limit=5) if r.id == run_id)


def seeded() -> tuple[MemoryCrm, MemoryMailbox]:
    crm = MemoryCrm(me=ME)
    for i in range(3):
        crm.put("contacts", {"firstname": f"Ann{i}", "lastname": "Lee"})
        crm.put("tasks", {"subject": f"Call {i}"})
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    for i in range(2):
        crm.put(
            "appointments",
            {
                "subject": f"Review {i}",
                "scheduledstart": start.isoformat().replace("+00:00", "Z"),
                "scheduledend": (start + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                "isalldayevent": False,
                "statecode": 3,
                "instancetypecode": 0,
                "appointment_activity_parties": [
                    {"participationtypemask": 7, "addressused": "me@contoso.example"},
                    {"participationtypemask": 5, "addressused": "ann@fabrikam.example"},
                ],
            },
        )
    return crm, MemoryMailbox()


def connection(
    crm: MemoryCrm,
    mailbox: MemoryMailbox,
    kinds: list[Kind],
    record: Record | None = None,
    settings: EngineSettings | None = None,
) -> Connection:
    return Connection(
        ORG,
        crm,
        mailbox,
        settings or EngineSettings(me=ME),
        kinds,
        act_method=record.read if record is not None else None,
    )


# --- the delivery method, checked at every run -----------------------------------------------


def test_server_side_sync_set_skips_the_workload_with_an_alert_naming_it(
    database: Database,
) -> None:
    crm, mailbox = seeded()
    record = Record(1)  # Server-Side Synchronization
    run = run_once(database, connection(crm, mailbox, [CONTACTS, TASKS], record))
    assert run.outcome == "skipped"
    assert "Server-Side Synchronization" in (run.message or "")
    assert mailbox.records("contacts") == {} and mailbox.records("tasks") == {}
    assert crm.calls["read_changes"] == 0  # neither side was read: nothing syncs twice
    assert set(run.counts) == {"contacts", "tasks"}  # the cards say why
    (alert,) = open_alerts(database)
    assert alert.code == "mailbox-method-not-set"
    assert "Server-Side Synchronization" in alert.message
    assert "administrator" in alert.action and "Set to this client" in alert.action
    assert record.reads == 1

    record.act = 2  # the administrator chose None: the alert now says so
    run = run_once(database, connection(crm, mailbox, [CONTACTS, TASKS], record))
    assert run.outcome == "skipped"
    (alert,) = open_alerts(database)
    assert "to None," in alert.message

    record.act = 0  # back to this client: syncs, and the alert is resolved
    run = run_once(database, connection(crm, mailbox, [CONTACTS, TASKS], record))
    assert run.outcome == "ok", run.message
    assert len(mailbox.records("contacts")) == 3 and len(mailbox.records("tasks")) == 3
    assert open_alerts(database) == []
    assert record.reads == 3  # once a run, however many kinds


def test_no_mailbox_record_skips_with_what_to_do(database: Database) -> None:
    crm, mailbox = seeded()
    run = run_once(database, connection(crm, mailbox, [CONTACTS], Record(None)))
    assert run.outcome == "skipped" and mailbox.records("contacts") == {}
    (alert,) = open_alerts(database)
    assert "no mailbox record" in alert.message and "create" in alert.action


def test_an_unreadable_mailbox_record_fails_the_run_in_words(database: Database) -> None:
    crm, mailbox = seeded()

    def unreachable() -> int | None:
        raise Unavailable("the organization could not be reached")

    conn = connection(crm, mailbox, [CONTACTS])
    conn.act_method = unreachable
    run = run_once(database, conn)
    assert run.outcome == "failed"
    assert run.message == "reading the CRM mailbox record: the organization could not be reached"
    assert mailbox.records("contacts") == {}


# --- a kind no longer chosen -----------------------------------------------------------------


def test_a_kind_no_longer_chosen_leaves_the_mailbox_quietly_and_stops(
    database: Database,
) -> None:
    crm, mailbox = seeded()
    record = Record(0)
    deletes: list[tuple[str, bool]] = []

    def watch(point: str, kind: str, op: WriteOp) -> None:
        if point == "before" and isinstance(op, DeleteOp):
            deletes.append((kind, op.quiet))

    mailbox.hook = watch  # type: ignore[assignment]
    chosen = [CONTACTS, APPOINTMENTS, TASKS]
    assert run_once(database, connection(crm, mailbox, chosen, record)).outcome == "ok"
    assert len(mailbox.records(APPOINTMENTS.mailbox_kind)) == 2
    crm_before = {k: dict(crm.records(k)) for k in ("contacts", "appointments", "tasks")}
    store = SqlLinkStore(database, ORG)
    assert store.count_links("contacts") == 3

    # contacts and appointments are no longer chosen (their last filter turned off)
    settings = EngineSettings(me=ME)
    retiring, wind_down = winding_down(database, ORG, [CONTACTS, APPOINTMENTS], settings)
    assert [k.name for k in retiring] == ["contacts", "appointments"]
    assert wind_down.filters["contacts"] == [] and wind_down.filters["appointments"] == []
    assert "tasks" not in wind_down.filters  # the chosen kind keeps its own filters
    run = run_once(
        database, connection(crm, mailbox, [TASKS, *retiring], record, settings=wind_down)
    )
    assert run.outcome == "ok", run.message
    assert mailbox.records("contacts") == {}
    assert mailbox.records(APPOINTMENTS.mailbox_kind) == {}
    assert len(mailbox.records("tasks")) == 3  # still chosen: untouched
    assert run.counts["contacts"]["mailbox"]["deleted"] == 3
    assert sorted(deletes) == [(APPOINTMENTS.mailbox_kind, True)] * 2 + [("contacts", True)] * 3
    assert store.count_links("contacts") == 0 and store.count_links("appointments") == 0
    assert {k: dict(crm.records(k)) for k in crm_before} == crm_before  # the CRM untouched

    # nothing left to wind down: the kinds stop running (no read of either side)
    assert winding_down(database, ORG, [CONTACTS, APPOINTMENTS], settings) == ([], settings)


def test_a_skipped_workload_winds_nothing_down(database: Database) -> None:
    """Server-side sync took over: our copies are left alone too (it is not our turn)."""
    crm, mailbox = seeded()
    run_once(database, connection(crm, mailbox, [CONTACTS], Record(0)))
    settings = EngineSettings(me=ME)
    retiring, wind_down = winding_down(database, ORG, [CONTACTS], settings)
    run = run_once(database, connection(crm, mailbox, retiring, Record(1), settings=wind_down))
    assert run.outcome == "skipped"
    assert len(mailbox.records("contacts")) == 3
