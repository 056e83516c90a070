"""Conversion between exchangelib items and the mailbox vocabulary, without a server.

Each test writes vocabulary onto an exchangelib item, serializes it to EWS XML and parses it back
(as exchangelib does with a server's answer), then reads the vocabulary again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from exchangelib import CalendarItem, Contact, Message, Task
from exchangelib.version import EXCHANGE_2016, Version

from sync.mailbox import ews_convert as convert
from sync.mailbox import ews_recurrence as rec
from sync.mailbox.fields import APPOINTMENT_FIELDS, CONTACT_FIELDS, MESSAGE_FIELDS, TASK_FIELDS

VERSION = Version(build=EXCHANGE_2016)


def roundtrip(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    cls = convert.ITEM_CLASSES[kind]
    item = cls(**{convert.KEY_FIELD: "crm-1"})
    convert.apply_vocab(kind, item, fields)
    item.clean(version=VERSION) if kind != "appointments" else None
    xml = item.to_xml(version=VERSION)
    for elem in xml.iter():  # requests say 1/0, responses true/false (what from_xml reads)
        if str(elem.tag).endswith(("ReminderIsSet", "IsAllDayEvent")) and elem.text in ("0", "1"):
            elem.text = "true" if elem.text == "1" else "false"
    parsed = cls.from_xml(elem=xml, account=None)
    assert convert.item_key(parsed) == "crm-1"
    return convert.to_vocab(kind, parsed)


def test_contact_roundtrip() -> None:
    fields = {name: None for name in CONTACT_FIELDS}
    fields.update(
        given_name="Ann",
        middle_name="B.",
        surname="Lee",
        job_title="Buyer",
        company_name="Contoso",
        email_address_1="ann@contoso.example",
        email_address_3="ann.lee@home.example",
        business_phone="+1 555 0100",
        mobile_phone="+1 555 0101",
        business_fax="+1 555 0102",
        business_street="1 Main St",
        business_city="Springfield",
        business_postal_code="12345",
        business_country="US",
        home_city="Shelbyville",
        birthday="1980-02-29",
        wedding_anniversary="2010-06-12",
        business_homepage="https://contoso.example/",
        body="Met at the fair.",
        categories=["VIP", "Tracked to Dynamics 365"],
    )
    fields["categories"] = ["VIP", "Tracked to Dynamics 365"]
    got = roundtrip("contacts", fields)
    assert set(got) == set(CONTACT_FIELDS)
    assert got == fields


def test_contact_update_keeps_other_phones() -> None:
    base = {"business_phone": "1", "mobile_phone": "2", "given_name": "Ann"}
    item = Contact(id="x", changekey="y")
    names = convert.apply_vocab("contacts", item, {"mobile_phone": "3"}, base, new=False)
    assert names == ["phone_numbers"]
    assert {(p.label, p.phone_number) for p in item.phone_numbers} == {
        ("BusinessPhone", "1"),
        ("MobilePhone", "3"),
    }


def test_task_roundtrip() -> None:
    fields = {
        "subject": "Call back",
        "body": "About the offer",
        "start_date": "2026-03-01T00:00:00Z",
        "due_date": "2026-03-05T00:00:00Z",
        "status": "InProgress",
        "percent_complete": 40,
        "importance": "High",
        "complete_date": None,
        "categories": ["Work"],
    }
    got = roundtrip("tasks", fields)
    assert set(got) == set(TASK_FIELDS)
    assert got == fields


def appointment(**extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "subject": "Review",
        "body": "Agenda",
        "location": "Room 1",
        "start": "2026-03-02T08:00:00Z",
        "end": "2026-03-02T09:00:00Z",
        "timezone": "Europe/Paris",
        "is_all_day": False,
        "show_as": "Busy",
        "organizer": None,
        "required_attendees": ["bob@contoso.example"],
        "optional_attendees": [],
        "reminder_is_set": True,
        "reminder_minutes": 15,
        "recurrence": None,
        "deleted_occurrences": [],
        "modified_occurrences": [],
        "categories": [],
    }
    fields.update(extra)
    return fields


def test_appointment_roundtrip() -> None:
    fields = appointment()
    got = roundtrip("appointments", fields)
    assert set(got) == set(APPOINTMENT_FIELDS)
    assert got == fields


def test_all_day_appointment_keeps_its_days() -> None:
    # 2 and 3 March in Paris: midnight local is 23:00 UTC the day before.
    fields = appointment(start="2026-03-01T23:00:00Z", end="2026-03-03T23:00:00Z", is_all_day=True)
    item = CalendarItem()
    convert.apply_vocab("appointments", item, fields)
    assert item.start == dt.date(2026, 3, 2) and item.end == dt.date(2026, 3, 3)


PATTERNS = [
    {"type": "daily", "interval": 2},
    {
        "type": "weekly",
        "interval": 1,
        "weekdays": ["Monday", "Thursday"],
        "first_day_of_week": "Monday",
    },
    {"type": "absolute_monthly", "interval": 1, "day_of_month": 31},
    {"type": "relative_monthly", "interval": 2, "weekdays": ["Tuesday"], "week_index": "Last"},
    {"type": "absolute_yearly", "interval": 1, "day_of_month": 2, "month": 3},
    {
        "type": "relative_yearly",
        "interval": 1,
        "weekdays": ["Monday"],
        "week_index": "First",
        "month": 3,
    },
]
RANGES = [
    {"type": "no_end", "start": "2026-03-02", "end": None, "count": None},
    {"type": "end_date", "start": "2026-03-02", "end": "2027-12-31", "count": None},
    {"type": "numbered", "start": "2026-03-02", "end": None, "count": 10},
]


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p["type"])
@pytest.mark.parametrize("rng", RANGES, ids=lambda r: r["type"])
def test_recurrence_roundtrip(pattern: dict[str, Any], rng: dict[str, Any]) -> None:
    recurrence = {"pattern": pattern, "range": rng}
    got = roundtrip("appointments", appointment(recurrence=recurrence))
    assert got["recurrence"] == rec.normalize(recurrence)


def test_weekly_series_across_dst_keeps_wall_clock() -> None:
    # Paris leaves winter time on 29 March 2026: 09:00 local is 08:00 UTC before, 07:00 after.
    recurrence = {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "weekdays": ["Monday"],
            "first_day_of_week": "Monday",
        },
        "range": {"type": "numbered", "start": "2026-03-16", "count": 4},
    }
    fields = appointment(
        start="2026-03-16T08:00:00Z", end="2026-03-16T09:00:00Z", recurrence=recurrence
    )
    item = CalendarItem()
    convert.apply_vocab("appointments", item, fields)
    assert item.start.hour == 9 and str(item._start_timezone.key) == "Europe/Paris"
    days = list(rec.occurrence_dates(recurrence))
    assert days == [
        dt.date(2026, 3, 16),
        dt.date(2026, 3, 23),
        dt.date(2026, 3, 30),
        dt.date(2026, 4, 6),
    ]
    # the occurrence after the change: 09:00 Paris = 07:00 UTC, found by its local date
    tz = convert.series_timezone(fields)
    assert rec.instance_index(recurrence, convert.local_date("2026-03-30T07:00:00Z", tz)) == 3


def test_occurrence_expansion_patterns() -> None:
    monthly = {"pattern": PATTERNS[2], "range": RANGES[2]}
    assert [d.isoformat() for d in rec.occurrence_dates(monthly)][:4] == [
        "2026-03-31",
        "2026-04-30",
        "2026-05-31",
        "2026-06-30",
    ]
    relative = {"pattern": PATTERNS[3], "range": RANGES[2]}
    assert [d.isoformat() for d in rec.occurrence_dates(relative)][:2] == [
        "2026-03-31",
        "2026-05-26",
    ]
    yearly = {"pattern": PATTERNS[5], "range": RANGES[2]}
    assert [d.isoformat() for d in rec.occurrence_dates(yearly)][:2] == ["2026-03-02", "2027-03-01"]
    assert rec.instance_index(yearly, dt.date(2026, 3, 3)) is None


def test_message_roundtrip() -> None:
    fields = {
        "message_id": "<abc@contoso.example>",
        "in_reply_to": "<prev@contoso.example>",
        "references": "<first@contoso.example> <prev@contoso.example>",
        "subject": "Offer CRM:0001234",
        "to": ["bob@contoso.example"],
        "cc": ["carol@fabrikam.example"],
        "bcc": [],
        "body": "<p>Hello</p>",
        "body_type": "HTML",
        "categories": ["Tracked to Dynamics 365"],
    }
    got = roundtrip("messages", fields)
    assert set(got) == set(MESSAGE_FIELDS) - {"folder"}
    assert {k: got[k] for k in fields} == fields


def test_conversation_index_is_base64() -> None:
    item = Message(conversation_index=b"\x01\x02\xff")
    assert convert.to_vocab("messages", item)["conversation_index"] == "AQL/"


def test_moments() -> None:
    assert (
        convert.moment(convert.parse_moment("2026-03-02T09:00:00+01:00")) == "2026-03-02T08:00:00Z"
    )
    assert convert.moment(dt.date(2026, 3, 2)) == "2026-03-02T00:00:00Z"
    assert convert.body_text(Message(body=None).body) is None


def test_unknown_kind() -> None:
    with pytest.raises(ValueError):
        convert.base_kind("notes")
    assert convert.base_kind("messages:sentitems") == "messages"
    assert isinstance(Task(), Task)
