"""Series exceptions over the memory sides: CRM-made ones reach the mailbox, values round-trip."""

from __future__ import annotations

from typing import Any

import pytest

from sync.engine import ChangeSet, EngineSettings, MemoryLinkStore, sync_kind
from sync.engine.plan import keys_to_read
from sync.kinds import exceptions
from sync.kinds.appointments import APPOINTMENTS, RECURRING_APPOINTMENTS
from sync.kinds.contacts import CONTACTS
from sync.memory import Crash, MemoryCrm, MemoryMailbox
from sync.sides import CreateOp, DeleteOp, UpdateOp, Upsert
from tests.engine.engine_world import ME, NOW
from tests.engine.test_engine_kinds import MASTER_ROW

MOVED = {
    "original_start": "2026-10-23T07:00:00Z",
    "start": "2026-10-23T09:30:00Z",
    "end": "2026-10-23T09:45:00Z",
}

NEW = {
    "original_start": "2026-10-30T07:00:00Z",
    "start": "2026-10-30T11:00:00Z",
    "end": "2026-10-30T11:15:00Z",
}


def _sync_calendar(crm: MemoryCrm, mailbox: MemoryMailbox, store: Any) -> int:
    """Both calendar kinds in the messaging job's order; the number of changes made."""
    settings = EngineSettings(me=ME, clock=lambda: NOW)
    return sum(
        sync_kind(kind, crm, mailbox, store, settings).changed
        for kind in (APPOINTMENTS, RECURRING_APPOINTMENTS)
    )


def test_exceptions_made_in_the_crm_reach_the_mailbox_and_then_rest() -> None:
    crm, mailbox, store = MemoryCrm(me=ME), MemoryMailbox(), MemoryLinkStore()
    master = crm.put("recurringappointmentmasters", MASTER_ROW)
    assert _sync_calendar(crm, mailbox, store) == 1
    [item_id] = mailbox.records("appointments")

    # Moving an occurrence in the CRM changes only the exception row, not the master.
    crm.put(
        "appointments",
        {"instancetypecode": 3, "_seriesid_value": master.id, "subject": "Standup",
         "originalstartdate": MOVED["original_start"], "scheduledstart": MOVED["start"],
         "scheduledend": MOVED["end"]},
    )  # fmt: skip
    assert _sync_calendar(crm, mailbox, store) == 1
    assert mailbox.records("appointments")[item_id].fields["modified_occurrences"] == [MOVED]

    crm.edit(
        "recurringappointmentmasters", master.id, {"deletedexceptionslist": "2026-10-21T07:00:00Z"}
    )
    assert _sync_calendar(crm, mailbox, store) == 1
    item = mailbox.records("appointments")[item_id].fields
    assert item["deleted_occurrences"] == ["2026-10-21T07:00:00Z"]
    assert item["modified_occurrences"] == [MOVED]
    assert _sync_calendar(crm, mailbox, store) == 0
    assert len(crm.records("appointments")) == 1 and len(mailbox.records("appointments")) == 1


def test_values_and_child_writes() -> None:
    """The exception writes are the documented ones (create-recurring-appointment-series-
    instance-exception.md, update-recurring-appointment.md): update an instance or exception
    row, delete one, or CreateException for an occurrence without a row; never a row created
    with instancetypecode/originalstartdate/seriesid, nor deletedexceptionslist written (both
    read-only: appointment.md, recurringappointmentmaster.md)."""
    row = {
        "subject": "Standup",
        "duration": 15,
        "deletedexceptionslist": "2026-10-21T07:00:00Z;2026-10-19T07:00:00Z",
        exceptions.NAVIGATION: [
            {"activityid": "x1", "instancetypecode": 3, "originalstartdate": "2026-10-23T07:00:00Z",
             "scheduledstart": "2026-10-23T08:00:00Z", "scheduledend": "2026-10-23T08:15:00Z"},
            {"activityid": "x2", "instancetypecode": 3, "originalstartdate": "2026-10-26T07:00:00Z",
             "scheduledstart": "2026-10-26T08:00:00Z", "scheduledend": "2026-10-26T08:15:00Z"},
            {"activityid": "i3", "instancetypecode": 2, "originalstartdate": "2026-10-28T07:00:00Z",
             "scheduledstart": "2026-10-28T07:00:00Z", "scheduledend": "2026-10-28T07:15:00Z"},
        ],
    }  # fmt: skip
    value = exceptions.from_crm(row)
    assert value["deleted"] == ["2026-10-19T07:00:00Z", "2026-10-21T07:00:00Z"]
    assert [m["original_start"] for m in value["modified"]] == [
        "2026-10-23T07:00:00Z", "2026-10-26T07:00:00Z"]  # fmt: skip
    assert exceptions.from_mailbox(exceptions.to_mailbox(value)) == value
    assert exceptions.to_crm(value) == {}  # deletedexceptionslist is read-only
    assert exceptions.from_crm({}) is None and exceptions.from_mailbox({}) is None
    assert exceptions.child_ops("s1", row, value) == []

    # x1 moved again, NEW moved (no row: CreateException), x2 no longer moved (back in place).
    wanted = {"deleted": [], "modified": [
        {**value["modified"][0], "start": "2026-10-23T10:00:00Z", "end": "2026-10-23T10:15:00Z"},
        NEW]}  # fmt: skip
    ops = exceptions.child_ops("s1", row, wanted)
    assert [type(op) for op in ops] == [UpdateOp, CreateOp, UpdateOp]
    update, create, back = ops
    assert isinstance(update, UpdateOp) and update.id == "x1"
    assert isinstance(create, CreateOp)
    assert create.key == exceptions.exception_id("S1", NEW["original_start"])
    message = create.fields[exceptions.CREATE_EXCEPTION]
    assert (message["OriginalStartDate"], message["IsDeleted"]) == (NEW["original_start"], False)
    assert message["Target"][exceptions.SERIES_BIND] == "/recurringappointmentmasters(s1)"
    assert message["Target"]["scheduledstart"] == NEW["start"]
    assert isinstance(back, UpdateOp) and (back.id, back.fields) == (
        "x2", {"scheduledstart": "2026-10-26T07:00:00Z", "scheduledend": "2026-10-26T07:15:00Z"})  # fmt: skip
    # An exception back at its original times is no move.
    in_place = {**row, exceptions.NAVIGATION: [{**row[exceptions.NAVIGATION][1],
                "scheduledstart": "2026-10-26T07:00:00Z", "scheduledend": "2026-10-26T07:15:00Z"}]}  # fmt: skip
    assert exceptions.from_crm(in_place)["modified"] == []

    # Expanded instances (the real service): moved → update it, deleted → delete it; an
    # occurrence deleted that has no row: CreateException with IsDeleted.
    on_instance = {"deleted": ["2026-10-28T07:00:00Z", "2026-11-02T07:00:00Z"], "modified": [
        {"original_start": "2026-10-28T07:00:00Z", "start": "2026-10-28T09:00:00Z",
         "end": "2026-10-28T09:15:00Z"}]}  # fmt: skip
    ops = exceptions.child_ops(
        "s1", {exceptions.NAVIGATION: row[exceptions.NAVIGATION][2:]}, on_instance
    )
    assert [(type(op), getattr(op, "id", None)) for op in ops] == [
        (DeleteOp, "i3"), (CreateOp, None)]  # fmt: skip
    deleted = ops[1]
    assert isinstance(deleted, CreateOp)
    assert deleted.fields[exceptions.CREATE_EXCEPTION]["IsDeleted"] is True


def test_every_mailbox_create_looks_up_its_key_and_a_crash_still_creates_once() -> None:
    """Bug 9, then issue 14: a full read no longer spares the idempotency lookup (another
    writer may have made the copy after the read); after a crash the next run still finds the
    item made (no duplicate)."""
    crm, mailbox, store = MemoryCrm(me=ME), MemoryMailbox(), MemoryLinkStore()
    for n in range(3):
        crm.put("contacts", {"firstname": f"F{n}", "lastname": f"L{n}"})
    settings = EngineSettings(me=ME, clock=lambda: NOW, batch_size=2)

    def die_after_first_create(where: str, _kind: str, op: Any) -> None:
        if where == "after" and isinstance(op, CreateOp):
            raise Crash("died after the write")

    mailbox.hook = die_after_first_create
    with pytest.raises(Crash):
        sync_kind(CONTACTS, crm, mailbox, store, settings)
    mailbox.hook = None
    assert mailbox.calls["find_by_key"] == 1 and len(mailbox.records("contacts")) == 1
    result = sync_kind(CONTACTS, crm, mailbox, store, settings)  # a full read again
    assert (result.mailbox.created, result.relinked) == (2, 1)
    # one lookup per batch holding a create: [relink, create] and [create]
    assert mailbox.calls["find_by_key"] == 3 and len(mailbox.records("contacts")) == 3

    crm.put("contacts", {"firstname": "New", "lastname": "One"})
    assert sync_kind(CONTACTS, crm, mailbox, store, settings).mailbox.created == 1
    assert mailbox.calls["find_by_key"] == 4


def test_both_sides_changing_a_series_exceptions_merge_occurrence_by_occurrence() -> None:
    """A move in the mailbox and a deletion in the CRM are two changes, not a conflict: each
    reaches the other side (the move as an exception row)."""
    crm, mailbox, store = MemoryCrm(me=ME), MemoryMailbox(), MemoryLinkStore()
    master = crm.put("recurringappointmentmasters", MASTER_ROW)
    _sync_calendar(crm, mailbox, store)
    [item_id] = mailbox.records("appointments")
    mailbox.edit("appointments", item_id, {"modified_occurrences": [MOVED]})
    crm.edit("recurringappointmentmasters", master.id, {"deletedexceptionslist": NEW["start"]})

    _sync_calendar(crm, mailbox, store)

    assert store.conflicts("recurringappointments") == []
    [row] = crm.records("appointments").values()
    assert (row.fields["originalstartdate"], row.fields["_seriesid_value"]) == (
        MOVED["original_start"], master.id)  # fmt: skip
    item = mailbox.records("appointments")[item_id].fields
    assert item["deleted_occurrences"] == [NEW["start"]]
    assert item["modified_occurrences"] == [MOVED]
    assert _sync_calendar(crm, mailbox, store) == 0


def test_exceptions_merge_keeps_each_sides_own_changes() -> None:
    base = exceptions.value(["2026-10-21T07:00:00Z"], [MOVED])
    crm = exceptions.value(["2026-10-21T07:00:00Z", NEW["start"]], [MOVED])  # one more deleted
    moved_again = {**MOVED, "start": "2026-10-23T10:00:00Z", "end": "2026-10-23T10:15:00Z"}
    mailbox = exceptions.value([], [moved_again])  # one restored, the move changed
    assert exceptions.merge_three(base, crm, mailbox) == exceptions.value(
        [NEW["start"]], [moved_again]
    )
    # an occurrence deleted on one side is no longer a moved one
    deleted_there = exceptions.value([MOVED["original_start"]], [])
    assert exceptions.merge_three(base, deleted_there, base) == exceptions.value(
        [MOVED["original_start"]], []
    )


def test_a_calendar_kind_reads_no_crm_rows_for_the_other_kinds_items() -> None:
    """Both calendar kinds see every calendar item; each looks up only the keys it takes."""
    single = Upsert("m1", "v1", {"subject": "Single"}, key="crm-appointment")
    series = Upsert(
        "m2", "v1", {"subject": "Series", "recurrence": {"type": "daily"}}, key="crm-series"
    )
    mailbox = ChangeSet(full=True)
    mailbox.add(single)
    mailbox.add(series)
    crm = ChangeSet(full=False)
    assert keys_to_read(APPOINTMENTS, [], crm, mailbox) == ["crm-appointment"]
    assert keys_to_read(RECURRING_APPOINTMENTS, [], crm, mailbox) == ["crm-series"]
