"""Each kind's conversion round-trip (CRM row → mailbox fields → CRM row) and recurrence."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.engine import MemoryLinkStore
from sync.kinds import KINDS
from sync.kinds.appointments import APPOINTMENTS, RECURRING_APPOINTMENTS, appointments_kind
from sync.kinds.base import Kind
from sync.kinds.contacts import CONTACTS
from sync.kinds.recurrence import DAYS, WEEK_INDEX_CODE, expand, from_columns, normalize, to_columns
from sync.kinds.tasks import TASKS
from sync.mailbox.fields import KIND_FIELDS, TRACKED_CATEGORY
from sync.memory import MemoryCrm, MemoryMailbox
from tests.engine.engine_world import ME, World

CONTACT_ROW = {
    "firstname": "Ann", "middlename": "B.", "lastname": "Lee", "suffix": "Jr.",
    "nickname": "Annie", "jobtitle": "CEO", "department": "Board",
    "emailaddress1": "ann@contoso.com", "emailaddress2": "ann@home.example",
    "emailaddress3": None, "telephone1": "+1 555 0100", "telephone2": "+1 555 0101",
    "mobilephone": "+1 555 0102", "telephone3": "+1 555 0103", "fax": "+1 555 0104",
    "address1_line1": "1 Main St", "address1_line2": "Floor 2", "address1_line3": None,
    "address1_city": "Redmond", "address1_stateorprovince": "WA",
    "address1_postalcode": "98052", "address1_country": "USA",
    "address2_line1": "2 Home Rd", "address2_city": "Seattle",
    "birthdate": "1980-02-29", "anniversary": "2010-06-01",
    "websiteurl": "https://contoso.com", "description": "Met at the fair.\nLikes tea.",
}  # fmt: skip

TASK_ROW = {
    "subject": "Call Ann", "description": "About the order", "statecode": 0, "statuscode": 3,
    "scheduledstart": "2026-11-25T09:00:00Z", "scheduledend": "2026-11-27T17:00:00Z",
    "percentcomplete": 40, "prioritycode": 2, "actualend": None, "category": "Sales; Q4",
}  # fmt: skip

APPOINTMENT_ROW = {
    "subject": "Review", "description": "Quarterly", "location": "Room 1",
    "scheduledstart": "2026-12-01T09:00:00Z", "scheduledend": "2026-12-01T10:00:00Z",
    "isalldayevent": False, "statecode": 3, "statuscode": 5, "instancetypecode": 0,
    "appointment_activity_parties": [
        {"participationtypemask": 7, "addressused": "me@contoso.com"},
        {"participationtypemask": 5, "addressused": "ann@contoso.com"},
        {"participationtypemask": 5, "addressused": "bob@fabrikam.com"},
        {"participationtypemask": 6, "addressused": "cy@contoso.com"},
    ],
}  # fmt: skip

MASTER_ROW = {
    "subject": "Standup", "location": "Teams", "statecode": 0, "statuscode": 1,
    "isalldayevent": False,
    "starttime": "2026-10-19T07:00:00Z", "endtime": "2026-10-19T07:15:00Z", "duration": 15,
    "recurrencepatterntype": 1, "interval": 1, "daysofweekmask": 2 | 8 | 32,
    "firstdayofweek": 1, "patternstartdate": "2026-10-19", "patternendtype": 2,
    "occurrences": 12,
}  # fmt: skip


def _round_trip(kind: Kind, row: dict[str, Any]) -> None:
    values = kind.crm_values(row)
    item = kind.mailbox_create(values)
    assert set(item) <= set(
        KIND_FIELDS["appointments" if "appointment" in kind.name else kind.name]
    )
    assert TRACKED_CATEGORY in item["categories"]
    assert kind.mailbox_values(item) == values, "mailbox side reads back what was written"
    back = kind.crm_create(kind.mailbox_values(item))
    assert kind.crm_values({**back, **{k: row[k] for k in kind.filter_columns if k in row}}) == {
        name: value
        for name, value in values.items()
        if kind.field(name).direction.to_crm or value is None
    } | {n: None for n in kind.field_names if not kind.field(n).direction.to_crm}


def test_contact_round_trip() -> None:
    _round_trip(CONTACTS, CONTACT_ROW)
    item = CONTACTS.mailbox_create(CONTACTS.crm_values(CONTACT_ROW))
    assert item["business_street"] == "1 Main St\nFloor 2"
    assert item["birthday"] == "1980-02-29" and item["given_name"] == "Ann"


def test_task_round_trip_status_priority_categories() -> None:
    _round_trip(TASKS, TASK_ROW)
    item = TASKS.mailbox_create(TASKS.crm_values(TASK_ROW))
    assert item["status"] == "InProgress" and item["importance"] == "High"
    assert item["categories"] == [TRACKED_CATEGORY, "Sales", "Q4"]
    done = TASKS.crm_patch(
        {"statuscode": TASKS.mailbox_values({"status": "Completed"})["statuscode"]}
    )
    assert done == {"statecode": 1, "statuscode": 5}


def _users(email: str) -> dict[str, str] | None:
    """The resolver of a CRM where me@contoso.com is a system user."""
    return {"partyid_systemuser@odata.bind": "/systemusers(u-me)"} if email == ME_EMAIL else None


ME_EMAIL = "me@contoso.com"


def test_appointment_round_trip_with_parties_resolved_by_email() -> None:
    _round_trip(appointments_kind(_users), APPOINTMENT_ROW)
    item = APPOINTMENTS.mailbox_create(APPOINTMENTS.crm_values(APPOINTMENT_ROW))
    assert item["organizer"] == "me@contoso.com"
    assert item["required_attendees"] == ["ann@contoso.com", "bob@fabrikam.com"]
    assert item["optional_attendees"] == ["cy@contoso.com"] and item["show_as"] == "Busy"
    contacts = {"ann@contoso.com": "c-ann"}
    kind = appointments_kind(
        lambda email: (
            {"partyid_contact@odata.bind": f"/contacts({contacts[email]})"}
            if email in contacts
            else _users(email)
        )
    )
    parties = kind.crm_create(kind.mailbox_values(item))["appointment_activity_parties"]
    assert {"participationtypemask": 5, "addressused": "ann@contoso.com",
            "partyid_contact@odata.bind": "/contacts(c-ann)"} in parties  # fmt: skip
    assert {"participationtypemask": 5, "addressused": "bob@fabrikam.com"} in parties
    assert {"participationtypemask": 7, "addressused": "me@contoso.com",
            "partyid_systemuser@odata.bind": "/systemusers(u-me)"} in parties  # fmt: skip


def test_an_organizer_who_is_not_a_system_user_is_not_written() -> None:
    """appointment.md, Organizer: "Targets systemuser" only. An organizer the CRM cannot hold
    (a contact, an outside address) stays in the mailbox; the attendees are written."""
    item = APPOINTMENTS.mailbox_create(APPOINTMENTS.crm_values(APPOINTMENT_ROW))
    item["organizer"] = "ann@contoso.com"
    kind = appointments_kind(
        lambda email: (
            {"partyid_contact@odata.bind": "/contacts(c-ann)"}
            if email == "ann@contoso.com"
            else None
        )
    )
    parties = kind.crm_create(kind.mailbox_values(item))["appointment_activity_parties"]
    assert [p["participationtypemask"] for p in parties] == [5, 5, 6]


def test_recurring_master_round_trip() -> None:
    _round_trip(RECURRING_APPOINTMENTS, MASTER_ROW)
    item = RECURRING_APPOINTMENTS.mailbox_create(RECURRING_APPOINTMENTS.crm_values(MASTER_ROW))
    assert item["recurrence"] == {
        "pattern": {"type": "weekly", "interval": 1, "first_day_of_week": "Monday",
                    "weekdays": ["Monday", "Wednesday", "Friday"]},
        "range": {"type": "numbered", "start": "2026-10-19", "end": None, "count": 12},
    }  # fmt: skip
    assert item["start"] == "2026-10-19T07:00:00Z" and item["timezone"] == "UTC"


PATTERNS = [
    ({"recurrencepatterntype": 0, "interval": 3},
     {"type": "daily", "interval": 3}),
    ({"recurrencepatterntype": 1, "interval": 2, "daysofweekmask": 2 | 16, "firstdayofweek": 0},
     {"type": "weekly", "interval": 2, "weekdays": ["Monday", "Thursday"],
      "first_day_of_week": "Sunday"}),
    ({"recurrencepatterntype": 2, "interval": 1, "dayofmonth": 31, "isnthmonthly": False},
     {"type": "absolute_monthly", "interval": 1, "day_of_month": 31}),
    ({"recurrencepatterntype": 2, "interval": 2, "isnthmonthly": True, "instance": 5,
      "daysofweekmask": 64},
     {"type": "relative_monthly", "interval": 2, "weekdays": ["Saturday"], "week_index": "Last"}),
    ({"recurrencepatterntype": 3, "interval": 1, "dayofmonth": 14, "monthofyear": 2},
     {"type": "absolute_yearly", "interval": 1, "day_of_month": 14, "month": 2}),
    ({"recurrencepatterntype": 3, "interval": 1, "isnthyearly": True, "instance": 4,
      "daysofweekmask": 16, "monthofyear": 11},
     {"type": "relative_yearly", "interval": 1, "weekdays": ["Thursday"], "week_index": "Fourth",
      "month": 11}),
]  # fmt: skip
RANGES = [
    ({"patternendtype": 1}, {"type": "no_end", "end": None, "count": None}),
    ({"patternendtype": 2, "occurrences": 10}, {"type": "numbered", "end": None, "count": 10}),
    ({"patternendtype": 3, "patternenddate": "2027-06-30"},
     {"type": "end_date", "end": "2027-06-30", "count": None}),
]  # fmt: skip


@pytest.mark.parametrize(("columns", "pattern"), PATTERNS)
@pytest.mark.parametrize(("range_columns", "range_doc"), RANGES)
def test_recurrence_patterns_each_way(
    columns: dict[str, Any], pattern: dict[str, Any], range_columns: dict[str, Any],
    range_doc: dict[str, Any],
) -> None:  # fmt: skip
    row = {**columns, **range_columns, "patternstartdate": "2026-01-15"}
    doc = {"pattern": pattern, "range": {**range_doc, "start": "2026-01-15"}}
    assert from_columns(row) == doc
    assert from_columns(to_columns(doc)) == doc
    assert normalize(doc) == doc
    written = to_columns(doc)
    for column, value in row.items():
        assert (written[column] or 0) == (value or 0), column


def test_daily_every_weekday_is_a_weekly_monday_to_friday() -> None:
    doc = from_columns({"recurrencepatterntype": 0, "isweekdaypattern": True, "patternendtype": 1,
                        "patternstartdate": "2026-01-05"})  # fmt: skip
    assert doc is not None
    assert doc["pattern"]["weekdays"] == ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
    assert to_columns(doc)["daysofweekmask"] == 62


def test_weekly_series_crossing_dst_keeps_its_wall_clock_time() -> None:
    doc = {"pattern": {"type": "weekly", "interval": 1, "weekdays": ["Monday"],
                       "first_day_of_week": "Monday"},
           "range": {"type": "numbered", "start": "2026-10-19", "end": None, "count": 3}}  # fmt: skip
    starts = expand(doc, "2026-10-19T07:00:00Z", "Europe/Paris")  # 09:00 CEST
    assert starts == [
        datetime(2026, 10, 19, 7, 0, tzinfo=UTC),  # 09:00 summer time (UTC+2)
        datetime(2026, 10, 26, 8, 0, tzinfo=UTC),  # 09:00 winter time (UTC+1)
        datetime(2026, 11, 2, 8, 0, tzinfo=UTC),
    ]
    monthly = {"pattern": {"type": "relative_monthly", "interval": 1, "weekdays": ["Friday"],
                           "week_index": "Last"},
               "range": {"type": "end_date", "start": "2026-01-01", "end": "2026-03-31",
                         "count": None}}  # fmt: skip
    assert [d.date().isoformat() for d in expand(monthly, "2026-01-30T15:00:00Z", "UTC")] == [
        "2026-01-30", "2026-02-27", "2026-03-27"]  # fmt: skip


def test_series_exceptions_made_in_the_mailbox_reach_the_crm_in_one_link() -> None:
    world = World(MemoryCrm(me=ME), MemoryMailbox(), MemoryLinkStore(), RECURRING_APPOINTMENTS)
    master = world.crm.put("recurringappointmentmasters", {**MASTER_ROW, "_ownerid_value": ME})
    single = APPOINTMENTS.mailbox_create(APPOINTMENTS.crm_values(APPOINTMENT_ROW))
    world.mailbox.put("appointments", single)  # a single meeting: not this kind's business
    assert world.sync().mailbox.created == 1
    item_id = world.item_for(master.id)
    exceptions = {
        "deleted_occurrences": ["2026-10-21T07:00:00Z"],
        "modified_occurrences": [{"original_start": "2026-10-23T07:00:00Z",
                                  "start": "2026-10-23T08:00:00Z", "end": "2026-10-23T08:15:00Z"}],
    }  # fmt: skip
    world.mailbox.edit("appointments", item_id, exceptions)
    world.crm.edit("recurringappointmentmasters", master.id, {"location": "Room 2"})
    result = world.sync()
    assert result.mailbox.updated == 1 and result.crm.updated == 1
    item = world.items()[item_id]
    assert item["location"] == "Room 2"
    assert item["deleted_occurrences"] == exceptions["deleted_occurrences"]
    row = world.crm.read("recurringappointmentmasters", [master.id])[master.id].fields
    assert row["deletedexceptionslist"] == "2026-10-21T07:00:00Z"
    [moved] = world.crm.records("appointments").values()
    assert (moved.fields["_seriesid_value"], moved.fields["instancetypecode"]) == (master.id, 3)
    assert (moved.fields["originalstartdate"], moved.fields["scheduledstart"]) == (
        "2026-10-23T07:00:00Z", "2026-10-23T08:00:00Z")  # fmt: skip
    assert len(world.store.load_links("recurringappointments")) == 1
    assert len(world.items()) == 2 and world.sync().changed == 0


def test_single_appointments_skip_series_occurrences_and_delete_quietly() -> None:
    world = World(MemoryCrm(me=ME), MemoryMailbox(), MemoryLinkStore(), APPOINTMENTS)
    world.now = datetime(2026, 11, 25, tzinfo=UTC)
    row = world.crm.put("appointments", {**APPOINTMENT_ROW, "_ownerid_value": ME})
    world.crm.put("appointments", {**APPOINTMENT_ROW, "instancetypecode": 2})
    assert world.sync().mailbox.created == 1
    deletes: list[Any] = []
    world.mailbox.hook = lambda where, kind, op: deletes.append(op) if where == "before" else None
    world.crm.edit("appointments", row.id, {"statecode": 2, "statuscode": 4})  # canceled
    assert world.sync().mailbox.deleted == 1
    assert deletes[0].quiet is True


def test_kinds_registry_and_select() -> None:
    assert list(KINDS) == ["contacts", "tasks", "appointments", "recurringappointments"]
    assert "contactid" in CONTACTS.crm_select and "_parentcustomerid_value" in CONTACTS.crm_select
    assert {"statecode", "statuscode", "_ownerid_value"} <= set(TASKS.crm_select)
    assert "daysofweekmask" in RECURRING_APPOINTMENTS.crm_select


_WEEKDAYS = st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True).map(
    lambda days: [d for d in DAYS if d in days]
)
_PATTERN = st.one_of(
    st.builds(lambda n: {"type": "daily", "interval": n}, st.integers(1, 99)),
    st.builds(
        lambda n, days, first: {
            "type": "weekly",
            "interval": n,
            "weekdays": days,
            "first_day_of_week": first,
        },  # fmt: skip
        st.integers(1, 9),
        _WEEKDAYS,
        st.sampled_from(DAYS),
    ),
    st.builds(
        lambda n, d: {"type": "absolute_monthly", "interval": n, "day_of_month": d},
        st.integers(1, 12),
        st.integers(1, 31),
    ),  # fmt: skip
    st.builds(
        lambda n, days, i: {
            "type": "relative_monthly",
            "interval": n,
            "weekdays": days,
            "week_index": i,
        },  # fmt: skip
        st.integers(1, 12),
        _WEEKDAYS,
        st.sampled_from(list(WEEK_INDEX_CODE)),
    ),
    st.builds(
        lambda d, m: {"type": "absolute_yearly", "interval": 1, "day_of_month": d, "month": m},
        st.integers(1, 28),
        st.integers(1, 12),
    ),  # fmt: skip
    st.builds(
        lambda days, i, m: {
            "type": "relative_yearly",
            "interval": 1,
            "weekdays": days,
            "week_index": i,
            "month": m,
        },  # fmt: skip
        _WEEKDAYS,
        st.sampled_from(list(WEEK_INDEX_CODE)),
        st.integers(1, 12),
    ),
)
_RANGE = st.one_of(
    st.just({"type": "no_end", "end": None, "count": None}),
    st.builds(lambda c: {"type": "numbered", "end": None, "count": c}, st.integers(1, 999)),
    st.builds(
        lambda d: {"type": "end_date", "end": d.isoformat(), "count": None},
        st.dates(min_value=date(2026, 2, 1), max_value=date(2030, 1, 1)),
    ),  # fmt: skip
)


@given(pattern=_PATTERN, rng=_RANGE)
@settings(max_examples=200, deadline=None)
def test_any_recurrence_survives_columns_and_back(
    pattern: dict[str, Any], rng: dict[str, Any]
) -> None:
    doc = {"pattern": pattern, "range": {**rng, "start": "2026-01-15"}}
    assert from_columns(to_columns(doc)) == doc
    zone = ZoneInfo("America/New_York")
    starts = expand(doc, "2026-01-15T09:00:00Z", "America/New_York", limit=40)
    assert starts == sorted(set(starts))  # strictly increasing
    assert all(s.astimezone(zone).time() == time(4, 0) for s in starts)  # wall clock kept
    assert len(starts) <= (rng["count"] or 40)
    if rng["end"]:
        assert all(s.astimezone(zone).date().isoformat() <= rng["end"] for s in starts)


def test_meeting_organized_by_someone_else_keeps_its_organizer_in_crm() -> None:
    """The CRM's organizer (a system user: appointment.md, Organizer Targets systemuser) stays
    when the mailbox, whose organizer is its owner, changes the attendees."""
    bob = {"partyid_systemuser@odata.bind": "/systemusers(u-bob)"}
    kind = appointments_kind(lambda email: bob if email == "bob@fabrikam.com" else None)
    world = World(MemoryCrm(me=ME), MemoryMailbox(), MemoryLinkStore(), kind)
    world.now = datetime(2026, 11, 25, tzinfo=UTC)
    row = world.crm.put("appointments", {**APPOINTMENT_ROW, "_ownerid_value": ME,
        "appointment_activity_parties": [
            {"participationtypemask": 7, "addressused": "bob@fabrikam.com"},
            {"participationtypemask": 5, "addressused": "me@contoso.com"}]})  # fmt: skip
    world.sync()
    item_id = world.item_for(row.id)
    # Exchange makes the mailbox owner the organizer of what we create; the user adds someone.
    world.mailbox.edit("appointments", item_id, {
        "organizer": "me@contoso.com",
        "required_attendees": ["me@contoso.com", "new@contoso.com"]})  # fmt: skip
    assert world.sync().crm.updated == 1
    parties = APPOINTMENTS.crm_values(world.crm_rows()[row.id])["parties"]
    assert parties == {"organizer": "bob@fabrikam.com", "optional": [],
                       "required": ["me@contoso.com", "new@contoso.com"]}  # fmt: skip
    assert world.sync().changed == 0


def test_task_due_time_survives_date_only_mailbox_tasks() -> None:
    world = World(MemoryCrm(me=ME), MemoryMailbox(), MemoryLinkStore(), TASKS)
    row = world.crm.put("tasks", {**TASK_ROW, "_ownerid_value": ME})
    world.sync()
    item_id = world.item_for(row.id)
    assert world.items()[item_id]["due_date"] == "2026-11-27T00:00:00Z"  # what Exchange keeps
    world.mailbox.edit("tasks", item_id, {"subject": "Call Ann back"})
    assert world.sync().crm.updated == 1
    assert world.crm_rows()[row.id]["scheduledend"] == "2026-11-27T17:00:00Z"  # time kept
    world.mailbox.edit("tasks", item_id, {"due_date": "2026-11-30T00:00:00Z"})
    world.sync()
    # The day: the CRM side writes it as its midnight in the user's zone (task.md: ScheduledEnd
    # is UserLocal), not as midnight UTC (tests/crm/test_metadata_dates.py).
    assert world.crm_rows()[row.id]["scheduledend"] == "2026-11-30"
    assert world.sync().changed == 0
