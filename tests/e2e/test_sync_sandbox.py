"""Issue #4, "Must show", over real HTTP: sandbox Dataverse + sandbox EWS, alice's agent; and
the same scenario over sandbox Graph (issue 9: the `pair` fixture's param).

One scenario in steps that build on each other (module-scoped state, run in file order):
seed 500 contacts, 200 appointments (20 of them series), 200 tasks → initial sync → tracked
mailbox items reach the CRM → changes and deletes on both sides → a conflict, recorded and
reversed → a fresh install creates nothing → a quiet sync costs one request per folder/set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from sync.conflicts import list_conflicts, reverse_conflict
from sync.engine.state import UNTRACKED
from sync.kinds import KINDS
from sync.sides import UpdateOp, Written
from sync.store.models import ConflictRecord
from tests.e2e.harness import (
    ALICE,
    KIND_NAMES,
    PROTOCOLS,
    Agent,
    SandboxPair,
    Snapshot,
    counts,
    in_step,
    make_agent,
    seed_appointments,
    seed_contacts,
    seed_series,
    seed_tasks,
    snapshots,
    start_pair,
    tomorrow_at,
    tracked,
    user_create_items,
    user_delete_items,
    user_update_items,
)

N_CONTACTS, N_APPOINTMENTS, N_SERIES, N_TASKS = 500, 180, 20, 200


@dataclass
class World:
    pair: SandboxPair
    agent: Agent
    user: Any
    """Alice in Outlook: a second connection to her mailbox, for changes made by hand."""
    ids: dict[str, list[str]] = field(default_factory=dict)
    untracked: dict[str, set[str]] = field(default_factory=dict)


@pytest.fixture(scope="module", params=PROTOCOLS)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxPair]:
    """The module's Dataverse + mailbox pair, once per mailbox protocol."""
    with start_pair(tmp_path_factory.mktemp("e2e"), protocol=request.param) as running:
        yield running


@pytest.fixture(scope="module")
def world(pair: SandboxPair) -> World:
    ids = {
        "contacts": seed_contacts(pair, N_CONTACTS),
        "tasks": seed_tasks(pair, N_TASKS),
        "appointments": seed_appointments(pair, N_APPOINTMENTS),
        "recurringappointments": seed_series(pair, N_SERIES),
    }
    return World(pair, make_agent(pair), pair.mailbox_side(), ids)


def assert_in_step(agent: Agent, snaps: dict[str, Snapshot] | None = None) -> None:
    problems = in_step(agent, snaps if snaps is not None else snapshots(agent))
    assert not problems, problems


def crm_values(world: World, name: str, crm_id: str) -> dict[str, Any]:
    kind = KINDS[name]
    return kind.crm_values(world.agent.crm.read(kind.crm_kind, [crm_id])[crm_id].fields)


def mailbox_fields(world: World, name: str, crm_id: str) -> dict[str, Any]:
    kind, item_id = KINDS[name], mailbox_item_of(world, name, crm_id)
    return dict(world.agent.mailbox.read(kind.mailbox_kind, [item_id])[item_id].fields)


def mailbox_values(world: World, name: str, crm_id: str) -> dict[str, Any]:
    return KINDS[name].mailbox_values(mailbox_fields(world, name, crm_id))


def mailbox_item_of(world: World, name: str, crm_id: str) -> str:
    link = next(lk for lk in world.agent.links(name) if lk.crm_id == crm_id)
    assert link.mailbox_id
    return link.mailbox_id


# --- 1. initial sync; tracked mailbox items reach the CRM -------------------------------------


def test_initial_sync_fills_the_empty_mailbox(world: World) -> None:
    results = world.agent.sync()
    expected = {
        "contacts": N_CONTACTS,
        "tasks": N_TASKS,
        "appointments": N_APPOINTMENTS,
        "recurringappointments": N_SERIES,
    }
    snaps = snapshots(world.agent)
    for name, n in expected.items():
        result = results[name]
        assert (result.mailbox.created, result.errors, result.stopped) == (n, 0, None), result
        assert result.crm.created == result.crm.updated == 0, result
        assert counts(snaps)[name] == (n, n)
        assert len(world.agent.links(name)) == n
    assert_in_step(world.agent, snaps)
    # A second run finds nothing to do: our own writes do not echo back as changes.
    again = world.agent.sync()
    assert all(r.changed == 0 and r.errors == 0 for r in again.values()), again


def test_fields_arrive_mapped(world: World) -> None:
    item = mailbox_fields(world, "contacts", world.ids["contacts"][7])
    assert "company_name" not in item or item["company_name"] is None
    assert mailbox_fields(world, "contacts", world.ids["contacts"][8])["company_name"] == (
        "C Account 3"  # one way, from the parent account
    )
    assert item["given_name"] == "CFirst7" and item["surname"] == "CLast7"
    assert item["job_title"] == "Engineer"
    assert item["email_address_1"] == "c7@customer.example"
    assert item["business_phone"] == "+44 20 7946 0007"
    assert item["mobile_phone"] == "+44 7700 900007"
    assert (item["business_street"], item["business_city"]) == ("7 Market Street", "Leeds")
    assert str(item["birthday"])[:10] == "1967-08-08"
    assert item["body"].strip() == "Met at the fair, table 7."

    task = mailbox_fields(world, "tasks", world.ids["tasks"][5])
    assert task["subject"] == "Follow up 5"
    assert (task["status"], task["percent_complete"], task["importance"]) == (
        "InProgress",
        50,
        "High",
    )
    due = (tomorrow_at(0) + timedelta(days=5)).date().isoformat()
    assert str(task["due_date"])[:10] == due

    appointment_id = world.ids["appointments"][3]
    meeting = mailbox_fields(world, "appointments", appointment_id)
    assert (meeting["subject"], meeting["location"]) == ("Meeting 3", "Room 3")
    assert meeting["required_attendees"] == ["guest3@customer.example"]
    assert crm_values(world, "appointments", appointment_id)["scheduledstart"] == meeting["start"]

    series = mailbox_fields(world, "recurringappointments", world.ids["recurringappointments"][1])
    assert series["subject"] == "Series 1"
    pattern = series["recurrence"]["pattern"]
    assert (pattern["type"], sorted(pattern["weekdays"])) == ("weekly", ["Monday", "Wednesday"])


def test_tracked_mailbox_items_reach_the_crm(world: World) -> None:
    start = tomorrow_at(14)
    made = {
        "contacts": user_create_items(
            world.user,
            "contacts",
            [
                tracked(
                    given_name=f"Outlook{i}", surname="Made", email_address_1=f"o{i}@new.example"
                )
                for i in range(5)
            ]
            + [{"given_name": "Private", "surname": "Untracked"}],
        ),  # fmt: skip
        "tasks": user_create_items(
            world.user, "tasks", [tracked(subject=f"Outlook task {i}") for i in range(3)]
        ),
        "appointments": user_create_items(
            world.user,
            "appointments",
            [
                tracked(
                    subject=f"Outlook meeting {i}",
                    start=f"{start:%Y-%m-%dT%H:%M:%SZ}",
                    end=f"{start.replace(hour=15):%Y-%m-%dT%H:%M:%SZ}",
                    location="Cafe",
                )
                for i in range(3)
            ],
        ),  # fmt: skip
    }
    before = counts(snapshots(world.agent, ("contacts", "tasks", "appointments")))
    results = world.agent.sync()
    assert results["contacts"].crm.created == 5  # the untracked contact stays in the mailbox
    assert results["tasks"].crm.created == 3
    assert results["appointments"].crm.created == 3
    snaps = snapshots(world.agent)
    after = counts(snaps)
    assert after["contacts"][0] == before["contacts"][0] + 5
    assert after["tasks"][0] == before["tasks"][0] + 3
    assert after["appointments"][0] == before["appointments"][0] + 3
    crm_names = {u.fields.get("firstname") for u in snaps["contacts"].crm_all.values()}
    assert {f"Outlook{i}" for i in range(5)} <= crm_names and "Private" not in crm_names
    [row] = [u.fields for u in snaps["contacts"].crm_all.values()
             if u.fields.get("firstname") == "Outlook2"]  # fmt: skip
    assert (row["lastname"], row["emailaddress1"]) == ("Made", "o2@new.example")
    assert row["_ownerid_value"] == world.pair.me  # created as alice's
    [meeting] = [u.fields for u in snaps["appointments"].crm_all.values()
                 if u.fields.get("subject") == "Outlook meeting 1"]  # fmt: skip
    values = KINDS["appointments"].crm_values(meeting)
    assert (values["scheduledstart"], values["location"]) == (f"{start:%Y-%m-%dT%H:%M:%SZ}", "Cafe")
    assert in_step(world.agent, snaps) == {
        "contacts": [
            "mailbox item 'Private Untracked' (key None) is not linked to a CRM record in the filter"
        ]
    }
    user_delete_items(world.user, "contacts", made["contacts"][-1:])  # out of the way
    assert world.agent.sync(["contacts"])["contacts"].changed == 0


# --- 2. changes on both sides -------------------------------------------------------------------


def test_changes_on_both_sides_meet_in_one_sync(world: World) -> None:
    agent, crm = world.agent, world.pair.crm_client()
    contacts, tasks = world.ids["contacts"], world.ids["tasks"]
    appointments, series = world.ids["appointments"], world.ids["recurringappointments"]
    # In the CRM: updates and deletes.
    for i in range(10):
        crm.update("contacts", contacts[i], {"jobtitle": f"Head of {i}"})
    for i in range(5):
        crm.update("tasks", tasks[i], {"subject": f"Renamed in CRM {i}"})
        crm.update("appointments", appointments[i], {"location": f"Moved {i}"})
    crm.update("recurringappointmentmasters", series[0], {"subject": "Series 0, renamed"})
    crm_deleted = {
        "contacts": contacts[20:25],
        "tasks": tasks[20:23],
        "appointments": appointments[20:23],
        "recurringappointments": series[5:6],
    }
    sets = {name: KINDS[name].entity_set for name in crm_deleted}
    deleted_items = {}
    for name, ids in crm_deleted.items():
        deleted_items[name] = {mailbox_item_of(world, name, i) for i in ids}
        for record_id in ids:
            crm.delete(sets[name], record_id)
    # In the mailbox: updates and deletes.
    user_update_items(world.user, "contacts", {
        mailbox_item_of(world, "contacts", contacts[i]): {"mobile_phone": f"+44 7700 1{i:05d}"}
        for i in range(10, 20)
    })  # fmt: skip
    user_update_items(world.user, "tasks", {
        mailbox_item_of(world, "tasks", tasks[i]): {"percent_complete": 75, "status": "InProgress"}
        for i in range(10, 15)
    })  # fmt: skip
    user_update_items(world.user, "appointments", {
        mailbox_item_of(world, "appointments", appointments[i]): {"subject": f"Renamed in Outlook {i}"}
        for i in range(10, 15)
    })  # fmt: skip
    mailbox_deleted = {
        "contacts": contacts[30:35],
        "tasks": tasks[30:33],
        "appointments": appointments[30:33],
        "recurringappointments": series[6:7],
    }
    for name, ids in mailbox_deleted.items():
        kind = "appointments" if name == "recurringappointments" else name
        user_delete_items(world.user, kind, [mailbox_item_of(world, name, i) for i in ids])
    before = counts(snapshots(agent))

    results = agent.sync()

    assert all(r.errors == 0 and r.stopped is None for r in results.values()), results
    assert results["contacts"].mailbox.updated == 10 and results["contacts"].crm.updated == 10
    assert results["contacts"].mailbox.deleted == 5 and results["contacts"].untracked == 5
    assert results["tasks"].mailbox.deleted == results["tasks"].untracked == 3
    assert results["appointments"].mailbox.deleted == results["appointments"].untracked == 3
    assert results["recurringappointments"].mailbox.deleted == 1
    assert results["recurringappointments"].untracked == 1
    snaps = snapshots(agent)
    after = counts(snaps)
    for name in KIND_NAMES:
        crm_before, mailbox_before = before[name]
        n_crm = len(crm_deleted[name])
        # CRM deletes leave the mailbox; mailbox deletes never delete in the CRM.
        assert after[name] == (crm_before, mailbox_before - n_crm), name
        snap = snaps[name]
        assert not deleted_items[name] & set(snap.mailbox)
        assert set(mailbox_deleted[name]) <= set(snap.crm_all)
        states = {lk.crm_id: lk.state for lk in agent.links(name)}
        assert all(states[i] == UNTRACKED for i in mailbox_deleted[name])
        world.untracked[name] = set(mailbox_deleted[name])
    assert mailbox_values(world, "contacts", contacts[3])["jobtitle"] == "Head of 3"
    assert crm_values(world, "contacts", contacts[12])["mobilephone"] == "+44 7700 100012"
    assert crm_values(world, "tasks", tasks[11])["percentcomplete"] == 75
    assert crm_values(world, "appointments", appointments[11])["subject"] == "Renamed in Outlook 11"
    assert mailbox_values(world, "appointments", appointments[2])["location"] == "Moved 2"
    assert_in_step(agent, snaps)
    # An untracked record stays out of the mailbox when it changes in the CRM later.
    crm.update("contacts", contacts[30], {"jobtitle": "Changed after untrack"})
    assert agent.sync(["contacts"])["contacts"].changed == 0
    assert not agent.mailbox.find_by_key("contacts", [contacts[30]])


# --- 3. a conflict, recorded and reversed -------------------------------------------------------


def reverse_writer(world: World) -> Any:
    """The losing value to the winning side, through that side's `write` (what the messaging
    service will give `reverse_conflict`; made here until the product has one)."""

    def write(record: ConflictRecord) -> None:
        kind = KINDS[record.kind]
        if record.winner == "crm":
            patch = kind.crm_patch({record.field: record.mailbox_value})
            results = world.agent.crm.write(kind.crm_kind, [UpdateOp(record.crm_id, None, patch)])
        else:
            assert record.mailbox_id
            patch = kind.mailbox_patch({record.field: record.crm_value})
            results = world.agent.mailbox.write(
                kind.mailbox_kind, [UpdateOp(record.mailbox_id, None, patch)]
            )
        assert isinstance(results[0], Written), results

    return write


def test_conflict_is_recorded_and_reversible(world: World) -> None:
    agent = world.agent
    contact_id = world.ids["contacts"][40]
    item_id = mailbox_item_of(world, "contacts", contact_id)
    world.pair.crm_client().update("contacts", contact_id, {"jobtitle": "CRM title"})
    user_update_items(world.user, "contacts", {item_id: {"job_title": "Outlook title"}})

    result = agent.sync(["contacts"])["contacts"]

    assert result.conflicts == 1
    [conflict] = [c for c in list_conflicts(agent.database) if c.field == "jobtitle"]
    assert (conflict.kind, conflict.crm_value, conflict.mailbox_value) == (
        "contacts", "CRM title", "Outlook title"
    )  # fmt: skip
    assert conflict.winner == "crm" and conflict.reversed_at is None
    assert crm_values(world, "contacts", contact_id)["jobtitle"] == "CRM title"
    assert mailbox_values(world, "contacts", contact_id)["jobtitle"] == "CRM title"

    assert reverse_conflict(agent.database, conflict.id, reverse_writer(world)) == "mailbox"
    agent.sync(["contacts"])

    assert crm_values(world, "contacts", contact_id)["jobtitle"] == "Outlook title"
    assert mailbox_values(world, "contacts", contact_id)["jobtitle"] == "Outlook title"
    [reversed_] = [c for c in list_conflicts(agent.database) if c.id == conflict.id]
    assert reversed_.winner == "mailbox" and reversed_.reversed_at is not None
    assert_in_step(agent, snapshots(agent, ("contacts",)))


# --- 4. a fresh install -------------------------------------------------------------------------


def test_fresh_install_creates_nothing_new(world: World) -> None:
    old = world.agent
    before = counts(snapshots(old))
    linked = {
        name: {lk.crm_id for lk in old.links(name) if lk.state != UNTRACKED} for name in KIND_NAMES
    }
    fresh = make_agent(world.pair)  # a new, empty local database; same mailbox and CRM

    results = fresh.sync()

    assert all(r.errors == 0 and r.stopped is None for r in results.values()), results
    assert all(r.crm.created == r.mailbox.created == 0 for r in results.values()), results
    for name in KIND_NAMES:
        assert results[name].relinked == len(linked[name]), (name, results[name])
        relinked = {lk.crm_id for lk in fresh.links(name) if lk.state != UNTRACKED}
        assert relinked == linked[name]
        # What the user untracked stays untracked: the marks are kept in the mailbox.
        untracked = {lk.crm_id for lk in fresh.links(name) if lk.state == UNTRACKED}
        assert world.untracked[name] <= untracked, name
    snaps = snapshots(fresh)
    assert counts(snaps) == before
    assert_in_step(fresh, snaps)
    world.agent = fresh


# --- 5. a quiet sync ----------------------------------------------------------------------------


def test_quiet_sync_costs_one_request_per_folder_and_entity_set(world: World) -> None:
    agent, log = world.agent, world.pair.log
    agent.sync()  # settle anything the previous step left
    log.clear()

    results = agent.sync()

    assert all(r.changed == 0 and r.errors == 0 for r in results.values()), results
    crm = sorted((e.method, e.target) for e in log if e.service == "dataverse")
    ews = sorted(e.target for e in log if e.service == "ews")
    assert crm == sorted(("GET", KINDS[n].entity_set) for n in KIND_NAMES)
    # One SyncFolderItems per folder: contacts, tasks and the calendar. Single appointments and
    # series keep their own sync state on the calendar; when both are the same (nothing was
    # written) the EWS side answers the second kind from the first one's read.
    if world.pair.protocol == "graph":
        # Over Graph: one delta per folder, the calendar view's shared by its two kinds.
        graph = sorted((e.method, e.target) for e in log if e.service == "graph")
        tasks = f"/v1.0/me/todo/lists/{world.agent.mailbox.task_list}/tasks/delta"
        assert graph == sorted(
            ("GET", t) for t in ("/v1.0/me/calendarView/delta", "/v1.0/me/contacts/delta", tasks)
        )
    else:
        assert ews == ["SyncFolderItems"] * 3
    assert all(e.user == ALICE and e.status == 200 for e in log)
