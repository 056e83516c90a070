"""The contacts' and tasks' CreateItem / GetItem written and read without exchangelib items
(sync/mailbox/ews_xml.py): the same request bodies exchangelib would send, the same vocabulary
read back, per-item errors, one request per batch."""

from __future__ import annotations

from typing import Any

import pytest
from exchangelib import Contact, Task
from lxml import etree

from sync.mailbox import ews_convert as convert
from sync.mailbox import ews_xml
from sync.mailbox.ews import EwsSide
from sync.sides import CreateOp, Invalid, Written
from tests.mailbox.ews_helpers import DAVE, connect

CONTACTS: list[dict[str, Any]] = [
    {"given_name": "Ann", "surname": "Lee", "email_address_1": "ann@x.example"},
    {
        "given_name": "Ann & <Bo>",
        "middle_name": "Q",
        "surname": 'O\'Neil "Jr"',
        "nickname": "Nan",
        "company_name": "Co",
        "job_title": "Boss",
        "department": "Sales",
        "generation": "III",
        "business_homepage": "https://x.example/?a=1&b=2",
        "email_address_2": "two@x.example",
        "email_address_3": "three@x.example",
        "business_phone": "+1 555 0100",
        "home_phone": "2",
        "mobile_phone": "3",
        "other_phone": "4",
        "business_fax": "5",
        "business_street": "1 Main St\nFloor 2",
        "business_city": "Springfield",
        "business_state": "IL",
        "business_postal_code": "62701",
        "business_country": "US",
        "home_country": "JP",
        "birthday": "1990-02-03",
        "wedding_anniversary": "2015-06-30",
        "body": "first line\nsecond \x01 line",
        "categories": ["A", "B & C"],
    },
    {"company_name": "Only Co", "given_name": "", "surname": None, "categories": []},
    {"email_address_1": "nobody@x.example", "body": None},
]
TASKS: list[dict[str, Any]] = [
    {"subject": "Call", "importance": "High", "status": "InProgress", "percent_complete": 30},
    {"subject": "Done", "status": "Completed", "body": "b <i>", "categories": ["X"]},
    {"subject": "Pct", "percent_complete": 100, "start_date": "2026-01-02T00:00:00Z"},
    {
        "subject": "Dates",
        "start_date": "2026-01-05T00:00:00Z",
        "due_date": "2026-01-02T00:00:00Z",  # before the start: exchangelib moves it
        "status": "NotStarted",
        "percent_complete": 20,
    },
    {"subject": "Plain"},
]

APPOINTMENTS: list[dict[str, Any]] = [
    {
        "subject": "Paris",
        "start": "2026-03-02T08:00:00Z",
        "end": "2026-03-02T09:00:00Z",
        "timezone": "Europe/Paris",
        "location": "Room <1>",
        "required_attendees": ["a@x.example", "b@x.example"],
        "optional_attendees": ["c@x.example"],
        "reminder_is_set": True,
        "reminder_minutes": 15,
        "show_as": "Free",
        "is_all_day": False,
        "body": "agenda",
        "categories": ["Meetings"],
    },
    {"subject": "UTC", "start": "2026-07-01T10:30:00Z", "end": "2026-07-01T11:00:00Z"},
    {
        "subject": "Summer in New York",
        "start": "2026-07-01T13:00:00+00:00",
        "end": "2026-07-01T14:15:00Z",
        "timezone": "America/New_York",
        "show_as": None,
        "reminder_minutes": None,
    },
    {
        "subject": "All day",
        "start": "2026-03-01T23:00:00Z",
        "end": "2026-03-03T23:00:00Z",
        "timezone": "Europe/Paris",
        "is_all_day": True,
    },
    {
        "subject": "Tokyo all day",
        "start": "2026-05-04T15:00:00Z",
        "end": "2026-05-05T15:00:00Z",
        "timezone": "Asia/Tokyo",
        "is_all_day": True,
        "reminder_is_set": False,
    },
]
SERIES = {
    "subject": "Weekly",
    "start": "2026-03-02T08:00:00Z",
    "end": "2026-03-02T09:00:00Z",
    "timezone": "Europe/Paris",
    "recurrence": {
        "pattern": {"type": "weekly", "interval": 1, "weekdays": ["Monday"]},
        "range": {"type": "numbered", "start": "2026-03-02", "count": 4},
    },
}


def _canonical(xml: bytes) -> str:
    text = etree.tostring(etree.fromstring(xml), method="c14n").decode()
    text = text.replace(f' xmlns:m="{ews_xml.MNS}"', "")  # declared, unused in the element
    for tag in ("ReminderIsSet", "IsAllDayEvent"):
        text = text.replace(f">0</t:{tag}>", f">false</t:{tag}>")
        text = text.replace(f">1</t:{tag}>", f">true</t:{tag}>")
    return text


def _exchangelib_xml(kind: str, vocab: dict[str, Any], side: EwsSide) -> str:
    cls = convert.ITEM_CLASSES[kind]
    item = cls(account=side.account, **{convert.KEY_FIELD: "key-1"})
    convert.apply_vocab(kind, item, vocab)
    item.clean(version=side.account.version)
    return _canonical(etree.tostring(item.to_xml(version=side.account.version)))


def _our_xml(kind: str, vocab: dict[str, Any]) -> str:
    text = ews_xml.ITEM_XML[kind](vocab, "key-1")
    wrapped = f'<w xmlns:t="{ews_xml.TNS}">{text}</w>'
    return _canonical(etree.tostring(etree.fromstring(wrapped)[0]))


@pytest.fixture
def side(ews: Any) -> EwsSide:
    return EwsSide(connect(ews, DAVE), write_batch=3)


@pytest.mark.parametrize(
    ("kind", "vocab"),
    [("contacts", v) for v in CONTACTS]
    + [("tasks", v) for v in TASKS]
    + [("appointments", v) for v in APPOINTMENTS],
)
def test_create_body_is_what_exchangelib_sends(side: EwsSide, kind: str, vocab: Any) -> None:
    """Element for element (schema order: contact.md, task.md), value for value, defaults too."""
    assert _our_xml(kind, vocab) == _exchangelib_xml(kind, vocab, side)


@pytest.mark.parametrize("kind", ["contacts", "tasks"])
def test_read_gives_the_vocabulary_exchangelib_gives(ews: Any, side: EwsSide, kind: str) -> None:
    """Items made through the new path read back identically through exchangelib's items, and
    an item exchangelib made (an HTML body) reads back identically through the new path."""
    samples = CONTACTS if kind == "contacts" else TASKS
    results = side.write(kind, [CreateOp(f"k{kind}{i}", v) for i, v in enumerate(samples)])
    ids = [r.id for r in results if isinstance(r, Written)]
    assert len(ids) == len(samples)
    cls, name = (Contact, "display_name") if kind == "contacts" else (Task, "subject")
    made = cls(account=side.account, folder=side.folder(kind), **{name: "Html"})
    made.body = convert.HTMLBody("<p>Hello &amp; <b>bye</b></p>")
    made.save()
    ids.append(made.id)
    ours = side._fetch(kind, ids)
    theirs = {i: side._upsert(kind, item) for i, item in side._fetch_items(kind, ids).items()}
    assert ours == theirs
    assert ours[made.id].fields["body"] == "Hello & bye"
    for result in results:  # the Written of a create carries the stored fields
        assert isinstance(result, Written) and result.fields == ours[result.id].fields


def test_bad_item_fails_alone_and_batches_are_one_request(ews: Any, side: EwsSide) -> None:
    """A given name over 255 characters (exchangelib's CharField limit) is refused before
    sending; the other items go, three to a CreateItem (write_batch) and one GetItem."""
    ops = [CreateOp(f"bad-batch-{i}", {"given_name": f"N{i}", "surname": "S"}) for i in range(6)]
    ops.insert(2, CreateOp("too-long", {"given_name": "x" * 256}))
    ews.log.clear()
    results = side.write("contacts", ops)
    assert isinstance(results[2], Invalid)
    assert "256" not in results[2].message or "length" in results[2].message
    assert all(isinstance(r, Written) for i, r in enumerate(results) if i != 2)
    assert ews.log.count(service="ews", target="CreateItem") == 2
    assert ews.log.count(service="ews", target="GetItem") == 1
    keys = {side._fetch("contacts", [r.id])[r.id].key for r in results if isinstance(r, Written)}
    assert keys == {op.key for op in ops if op.key != "too-long"}


def test_bad_choice_is_refused_before_sending(side: EwsSide) -> None:
    results = side.write("tasks", [CreateOp("bad-imp", {"subject": "x", "importance": "Urgent"})])
    assert isinstance(results[0], Invalid)
    assert "Urgent" in results[0].message


@pytest.mark.parametrize(
    ("kind", "bad"),
    [
        ("appointments", {**APPOINTMENTS[1], "reminder_minutes": -5}),
        ("appointments", {**APPOINTMENTS[1], "subject": "x" * 256}),
        ("appointments", {**APPOINTMENTS[1], "show_as": "Maybe"}),
        ("tasks", {"subject": "c", "categories": ["a", None]}),
        ("contacts", {"surname": "d", "birthday": "not a date"}),
    ],
)
def test_what_exchangelib_refused_is_refused_alone(side: EwsSide, kind: str, bad: Any) -> None:
    """Each of these made exchangelib's clean() raise; here too, for that item only."""
    item = convert.ITEM_CLASSES[kind](account=side.account)
    with pytest.raises((ValueError, TypeError)):
        convert.apply_vocab(kind, item, bad)
        item.clean(version=side.account.version)
    good = APPOINTMENTS[1] if kind == "appointments" else {"subject": "fine", "surname": "f"}
    results = side.write(kind, [CreateOp(f"bad-{kind}", bad), CreateOp(f"good-{kind}", good)])
    assert isinstance(results[0], Invalid) and isinstance(results[1], Written)


def test_singles_and_a_series_go_in_one_create_and_read_back_as_sent(
    ews: Any, side: EwsSide
) -> None:
    """A series' CalendarItem is exchangelib's own XML, in the same CreateItem as the single
    appointments written here; what Exchange stores reads back as the vocabulary sent."""
    wide = EwsSide(connect(ews, DAVE))
    ops = [CreateOp(f"cal-{i}", v) for i, v in enumerate([*APPOINTMENTS[:2], SERIES])]
    ews.log.clear()
    results = wide.write("appointments", ops)
    assert all(isinstance(r, Written) for r in results), results
    assert ews.log.count(service="ews", target="CreateItem") == 1
    stored = wide.read("appointments", [r.id for r in results if isinstance(r, Written)])
    for op, result in zip(ops, results, strict=True):
        assert isinstance(result, Written)
        got = stored[result.id]
        assert got.key == op.key
        for name, value in op.fields.items():
            if name in ("recurrence", "show_as", "reminder_minutes"):
                continue
            assert got.fields[name] == value, name
    assert stored[results[2].id].fields["recurrence"]  # type: ignore[union-attr]
    assert stored[results[0].id].fields["show_as"] == "Free"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("start", "end", "all_day"),
    [
        ("2026-03-02T10:00:00Z", "2026-03-02T09:00:00Z", False),
        ("2026-03-01T23:00:00Z", "2026-03-01T23:00:00Z", True),  # no whole day
    ],
)
def test_an_appointment_ending_before_it_starts_is_refused_alone(
    side: EwsSide, start: str, end: str, all_day: bool
) -> None:
    """exchangelib's CalendarItem.clean() refused these per item; so does the writer here."""
    bad = {**APPOINTMENTS[1], "start": start, "end": end, "is_all_day": all_day}
    item = convert.CalendarItem(account=side.account)
    convert.apply_vocab("appointments", item, bad)
    with pytest.raises(ValueError):
        item.clean(version=side.account.version)
    results = side.write(
        "appointments", [CreateOp("cal-bad", bad), CreateOp("ok", APPOINTMENTS[1])]
    )
    assert isinstance(results[0], Invalid) and isinstance(results[1], Written)


# --- UpdateItem ----------------------------------------------------------------------------------

UPDATES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "tasks",
        {"status": "Completed", "subject": "T2 & co", "due_date": None, "body": "b"},
        {"status": "InProgress", "percent_complete": 50, "subject": "T"},
    ),
    (
        "tasks",
        {"start_date": "2026-02-01T00:00:00Z", "categories": [], "importance": "Low"},
        {"subject": "T", "categories": ["A"]},
    ),
    (
        "contacts",
        {"given_name": "New", "job_title": None, "body": None, "birthday": "1980-01-02"},
        {"given_name": "Old", "surname": "S", "job_title": "Boss", "body": "x"},
    ),
    ("contacts", {"categories": ["B", "C"], "wedding_anniversary": None}, {"surname": "S"}),
]


def _exchangelib_change(side: EwsSide, item: Any, names: list[str]) -> str:
    from exchangelib.services import UpdateItem

    payload = UpdateItem(account=side.account).get_payload(
        items=[(item, names)],
        conflict_resolution="NeverOverwrite",
        message_disposition="SaveOnly",
        send_meeting_invitations_or_cancellations="SendToNone",
        suppress_read_receipts=True,
    )
    return _canonical(ews_xml.first_change(payload).encode())


@pytest.mark.parametrize(("kind", "changes", "base"), UPDATES)
def test_item_change_is_what_exchangelib_sends(
    side: EwsSide, kind: str, changes: Any, base: Any
) -> None:
    item = convert.ITEM_CLASSES[kind](account=side.account, id="ID1", changekey="CK1")
    names = convert.apply_vocab(kind, item, changes, base, new=False)
    ours = ews_xml.item_change(kind, item, names)
    assert ours is not None
    wrapped = f'<w xmlns:t="{ews_xml.TNS}">{ours}</w>'
    mine = _canonical(etree.tostring(etree.fromstring(wrapped)[0]))
    assert mine == _exchangelib_change(side, item, names)


def test_updates_go_in_one_request_with_exchangelibs_for_addresses(ews: Any, side: EwsSide) -> None:
    """Plain-field changes written here and a contact's address change (exchangelib's own
    ItemChange) share one UpdateItem; each reads back as sent; a stale change key is a Conflict
    for its item alone."""
    from sync.sides import Conflict, UpdateOp

    made = side.write("contacts", [CreateOp(f"upd-{i}", CONTACTS[i]) for i in range(3)])
    ids = [r.id for r in made if isinstance(r, Written)]
    versions = [r.version for r in made if isinstance(r, Written)]
    assert len(ids) == 3
    ops = [
        UpdateOp(ids[0], versions[0], {"job_title": "Chief", "nickname": None}),
        UpdateOp(ids[1], versions[1], {"business_city": "Osaka", "mobile_phone": "8"}),
        UpdateOp(ids[2], "stale-key", {"job_title": "Never"}),
    ]
    wide = EwsSide(connect(ews, DAVE))
    ews.log.clear()
    results = wide.write("contacts", ops)
    assert isinstance(results[0], Written) and isinstance(results[1], Written)
    assert isinstance(results[2], Conflict), results[2]
    assert ews.log.count(service="ews", target="UpdateItem") == 1
    got = wide.read("contacts", ids)
    assert got[ids[0]].fields["job_title"] == "Chief" and got[ids[0]].fields["nickname"] is None
    assert got[ids[1]].fields["business_city"] == "Osaka"
    assert got[ids[1]].fields["mobile_phone"] == "8"
    assert got[ids[1]].fields["business_street"] == CONTACTS[1]["business_street"]
    assert got[ids[2]].fields["job_title"] == CONTACTS[2].get("job_title")
