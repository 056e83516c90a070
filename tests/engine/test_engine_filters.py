"""Sync filter conditions evaluated on CRM rows: operators, "me", "today±N days"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync.engine.filters import in_filter, matches, resolve_value
from sync.kinds.appointments import APPOINTMENTS
from sync.kinds.contacts import CONTACTS
from sync.kinds.tasks import TASKS

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
ROW = {"_ownerid_value": "me-id", "statecode": 0, "jobtitle": "Head of Sales",
       "scheduledend": "2026-11-20T12:00:00Z", "percentcomplete": 40}  # fmt: skip


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "_ownerid_value", "op": "eq", "value": "me"}, True),
        ({"field": "_ownerid_value", "op": "ne", "value": "me"}, False),
        ({"field": "statecode", "op": "eq", "value": 0}, True),
        ({"field": "jobtitle", "op": "contains", "value": "sales"}, True),
        ({"field": "jobtitle", "op": "eq", "value": "head of sales"}, True),
        ({"field": "percentcomplete", "op": "lt", "value": 50}, True),
        ({"field": "percentcomplete", "op": "ge", "value": 50}, False),
        ({"field": "percentcomplete", "op": "le", "value": 40}, True),
        ({"field": "percentcomplete", "op": "gt", "value": 40}, False),
        ({"field": "scheduledend", "op": "ge", "value": "today-7 days"}, True),
        ({"field": "scheduledend", "op": "ge", "value": "today"}, False),
        ({"field": "scheduledend", "op": "lt", "value": "today+30 days"}, True),
        ({"field": "missing", "op": "null"}, True),
        ({"field": "missing", "op": "gt", "value": 1}, False),
    ],
)
def test_operators(condition: dict[str, object], expected: bool) -> None:
    assert matches(ROW, [condition], "me-id", NOW) is expected


def test_today_is_midnight_in_the_users_time_zone() -> None:
    late = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)  # already the 26th in Tokyo
    assert resolve_value("today", "", late, "Asia/Tokyo") == datetime(
        2026, 11, 25, 15, 0, tzinfo=UTC
    )
    assert resolve_value("today+1 day", "", late) == datetime(2026, 11, 26, tzinfo=UTC)


def test_default_filters() -> None:
    mine_active = {"_ownerid_value": "me-id", "statecode": 0}
    assert in_filter(mine_active, CONTACTS.default_filters, "me-id", NOW)
    assert not in_filter({**mine_active, "statecode": 1}, CONTACTS.default_filters, "me-id", NOW)
    assert not in_filter(
        {**mine_active, "_ownerid_value": "x"}, TASKS.default_filters, "me-id", NOW
    )
    meeting = {**mine_active, "statecode": 3, "scheduledend": "2026-11-30T10:00:00Z"}
    assert in_filter(meeting, APPOINTMENTS.default_filters, "me-id", NOW)
    assert not in_filter({**meeting, "statecode": 2}, APPOINTMENTS.default_filters, "me-id", NOW)
    old = {**meeting, "scheduledend": "2026-09-01T10:00:00Z"}
    assert not in_filter(old, APPOINTMENTS.default_filters, "me-id", NOW)
    assert not in_filter(mine_active, [], "me-id", NOW)  # no filter: nothing goes out


def test_unknown_operator_is_refused() -> None:
    with pytest.raises(ValueError):
        matches(ROW, [{"field": "statecode", "op": "like", "value": 1}], "", NOW)


def test_a_relative_filter_takes_rows_as_the_days_pass_without_any_change() -> None:
    """ "Due in the next 3 days": a task due in 5 days enters the filter two days later, though
    nothing about it changed (the delta reports nothing); the day's new filter re-judges all."""
    from datetime import timedelta

    from sync.engine import MemoryLinkStore
    from sync.memory import MemoryCrm, MemoryMailbox
    from tests.engine.engine_world import World

    world = World(MemoryCrm(me="me-id"), MemoryMailbox(), MemoryLinkStore(), kind=TASKS, now=NOW)
    due_soon = [[{"field": "scheduledend", "op": "le", "value": "today+3 days"}]]
    world.crm.put("tasks", {"subject": "Later", "statecode": 0, "_ownerid_value": "me-id",
                            "scheduledend": "2026-11-30T09:00:00Z"})  # fmt: skip
    assert world.sync(me="me-id", filters={"tasks": due_soon}).mailbox.created == 0
    assert world.sync(me="me-id", filters={"tasks": due_soon}).changed == 0

    world.now = NOW + timedelta(days=2)  # 27 November: "today+3 days" is 30 November 00:00
    assert world.sync(me="me-id", filters={"tasks": due_soon}).mailbox.created == 0
    world.now = NOW + timedelta(days=3)  # 28 November: the 1 December limit takes the task
    assert world.sync(me="me-id", filters={"tasks": due_soon}).mailbox.created == 1
    world.now = NOW + timedelta(days=6)  # 1 December: still in (due before the limit)
    assert world.sync(me="me-id", filters={"tasks": due_soon}).changed == 0
