"""Sandbox EWS item operations through exchangelib: create/get/update/delete, find, move,
attachments, conflicts, name resolution."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from exchangelib import EWSDate, EWSDateTime, EWSTimeZone, FileAttachment
from exchangelib.errors import (
    ErrorIrresolvableConflict,
    ErrorItemNotFound,
    ErrorNameResolutionNoResults,
)
from exchangelib.indexed_properties import EmailAddress, PhoneNumber, PhysicalAddress
from exchangelib.items import CalendarItem, Contact, Message, Task
from exchangelib.properties import Attendee, Mailbox
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeYearlyPattern,
    WeeklyPattern,
)

UTC = EWSTimeZone("UTC")
PARIS = EWSTimeZone("Europe/Paris")


def test_contact_round_trip_with_all_fields(alice):
    contact = Contact(
        folder=alice.contacts,
        display_name="Ann Lee",
        given_name="Ann",
        middle_name="M",
        surname="Lee",
        generation="Jr.",
        nickname="Annie",
        job_title="CTO",
        department="R&D",
        company_name="Fabrikam",
        email_addresses=[
            EmailAddress(email="ann@fabrikam.example", label="EmailAddress1"),
            EmailAddress(email="ann@home.example", label="EmailAddress2"),
        ],
        phone_numbers=[
            PhoneNumber(label="BusinessPhone", phone_number="+1 555 0100"),
            PhoneNumber(label="MobilePhone", phone_number="+1 555 0101"),
        ],
        physical_addresses=[
            PhysicalAddress(label="Business", street="1 Main St", city="Town", zipcode="12345"),
        ],
        birthday=EWSDate(1980, 5, 17),
        business_homepage="https://fabrikam.example",
        body="Met at the fair",
        categories=["Customer"],
        crmid="contact-1",
    )
    contact.save()
    got = alice.contacts.get(id=contact.id)
    assert (got.given_name, got.middle_name, got.surname, got.generation) == (
        "Ann",
        "M",
        "Lee",
        "Jr.",
    )
    assert (got.job_title, got.department, got.company_name) == ("CTO", "R&D", "Fabrikam")
    assert {e.label: e.email for e in got.email_addresses} == {
        "EmailAddress1": "ann@fabrikam.example",
        "EmailAddress2": "ann@home.example",
    }
    assert {p.label: p.phone_number for p in got.phone_numbers}["MobilePhone"] == "+1 555 0101"
    assert got.physical_addresses[0].street == "1 Main St"
    assert got.birthday == EWSDate(1980, 5, 17)
    assert got.body == "Met at the fair"
    assert got.categories == ["Customer"]
    assert got.crmid == "contact-1"
    # Indexed update: one phone number changes, the other stays.
    got.phone_numbers = [
        PhoneNumber(label="BusinessPhone", phone_number="+1 555 0199"),
        PhoneNumber(label="MobilePhone", phone_number="+1 555 0101"),
    ]
    got.physical_addresses = [PhysicalAddress(label="Business", street="2 Side St", city="Town")]
    got.save(update_fields=["phone_numbers", "physical_addresses"])
    again = alice.contacts.get(id=contact.id)
    assert {p.label: p.phone_number for p in again.phone_numbers}["BusinessPhone"] == "+1 555 0199"
    assert again.physical_addresses[0].street == "2 Side St"
    again.delete()
    with pytest.raises(ErrorItemNotFound):
        alice.contacts.get(id=contact.id)


def test_task_round_trip(alice):
    due = EWSDate(2030, 1, 10)
    task = Task(
        folder=alice.tasks,
        subject="Call back",
        body="About the offer",
        start_date=EWSDate(2030, 1, 5),
        due_date=due,
        status="InProgress",
        percent_complete=Decimal(40),
        importance="High",
        categories=["CRM"],
        crmid="task-1",
    )
    task.save()
    got = alice.tasks.get(id=task.id)
    assert (got.subject, got.status, got.percent_complete, got.importance) == (
        "Call back",
        "InProgress",
        Decimal(40),
        "High",
    )
    assert got.due_date == EWSDate(2030, 1, 10)
    got.status = "Completed"
    got.percent_complete = Decimal(100)
    got.save(update_fields=["status", "percent_complete"])
    assert alice.tasks.get(id=task.id).status == "Completed"


def test_calendar_items_and_recurrence_patterns(alice):
    start = EWSDateTime(2030, 3, 4, 10, 0, tzinfo=PARIS)
    single = CalendarItem(
        folder=alice.calendar,
        subject="Review",
        start=start,
        end=start + datetime.timedelta(hours=1),
        location="Room 1",
        required_attendees=[Attendee(mailbox=Mailbox(email_address="bob@contoso.example"))],
        reminder_is_set=True,
        reminder_minutes_before_start=30,
        legacy_free_busy_status="Tentative",
        crmid="appt-1",
    )
    single.save(send_meeting_invitations="SendToNone")
    got = alice.calendar.get(id=single.id)
    assert got.subject == "Review" and got.location == "Room 1"
    assert got.start == start and got.type == "Single"
    assert got.uid
    assert got.reminder_minutes_before_start == 30 and got.legacy_free_busy_status == "Tentative"
    assert [a.mailbox.email_address for a in got.required_attendees] == ["bob@contoso.example"]
    patterns = [
        (DailyPattern(interval=2), NumberedPattern(start=start.date(), number=5)),
        (WeeklyPattern(interval=1, weekdays=[1, 3]), NoEndPattern(start=start.date())),
        (
            AbsoluteMonthlyPattern(interval=1, day_of_month=4),
            EndDatePattern(start=start.date(), end=EWSDate(2030, 12, 31)),
        ),
        (
            RelativeYearlyPattern(weekday=1, week_number=1, month=3),
            NoEndPattern(start=start.date()),
        ),
    ]
    for pattern, boundary in patterns:
        item = CalendarItem(
            folder=alice.calendar,
            subject=f"Series {type(pattern).__name__}",
            start=start,
            end=start + datetime.timedelta(minutes=30),
            recurrence=Recurrence(pattern=pattern, boundary=boundary),
        )
        item.save(send_meeting_invitations="SendToNone")
        back = alice.calendar.get(id=item.id)
        assert back.type == "RecurringMaster"
        assert back.recurrence.pattern == pattern
        assert back.recurrence.boundary == boundary


def test_find_by_extended_property_and_paging(alice):
    created = [
        Contact(folder=alice.contacts, display_name=f"P{i}", given_name=f"P{i}", crmid=f"key-{i}")
        for i in range(25)
    ]
    ids = alice.bulk_create(folder=alice.contacts, items=created)
    assert [c.given_name for c in alice.contacts.filter(crmid="key-7")] == ["P7"]
    assert sorted(c.given_name for c in alice.contacts.filter(crmid__in=["key-1", "key-2"])) == [
        "P1",
        "P2",
    ]
    assert alice.contacts.filter(crmid="nope").count() == 0
    assert alice.contacts.filter(given_name__startswith="P1").count() == 11
    assert alice.contacts.filter(crmid__exists=True).count() >= 25
    names = [
        c.given_name
        for c in alice.contacts.filter(given_name__startswith="P").order_by("-given_name")
    ]
    assert names[0] == "P9"
    # Paging: exchangelib asks in pages and gets everything exactly once.
    qs = alice.contacts.filter(given_name__startswith="P")
    qs.page_size = 7
    assert sorted(c.given_name for c in qs) == sorted(f"P{i}" for i in range(25))
    alice.bulk_delete(ids)


def test_stale_change_key_conflicts(alice):
    task = Task(folder=alice.tasks, subject="v1")
    task.save()
    first = alice.tasks.get(id=task.id)
    second = alice.tasks.get(id=task.id)
    first.subject = "v2"
    first.save(update_fields=["subject"])
    second.subject = "v3"
    with pytest.raises(ErrorIrresolvableConflict):
        second.save(update_fields=["subject"])
    assert alice.tasks.get(id=task.id).subject == "v2"
    # A different field with the old key auto-resolves, as Exchange does.
    second.body = "notes"
    second.save(update_fields=["body"])
    final = alice.tasks.get(id=task.id)
    assert (final.subject, final.body) == ("v2", "notes")


def test_move_gives_new_id(alice, server):
    msg = Message(account=alice, folder=alice.drafts, subject="To move", body="x")
    msg.save()
    old_id = msg.id
    msg.move(alice.inbox)
    assert msg.id != old_id
    assert alice.inbox.get(id=msg.id).subject == "To move"
    with pytest.raises(ErrorItemNotFound):
        alice.drafts.get(id=old_id)
    msg.move_to_trash()
    trashed = alice.trash.get(subject="To move")
    trashed.delete()
    assert alice.trash.filter(subject="To move").count() == 0


def test_file_attachments(alice):
    msg = Message(account=alice, folder=alice.drafts, subject="With file", body="see file")
    msg.save()
    attachment = FileAttachment(name="notes.txt", content=b"hello attachment")
    msg.attach(attachment)
    got = alice.drafts.get(id=msg.id)
    assert [a.name for a in got.attachments] == ["notes.txt"]
    assert got.attachments[0].content == b"hello attachment"
    msg.detach(attachment)
    assert alice.drafts.get(id=msg.id).attachments == []


def test_resolve_names(alice):
    resolved = alice.protocol.resolve_names(["bob"])
    assert [m.email_address for m in resolved] == ["bob@contoso.example"]
    (missing,) = alice.protocol.resolve_names(["nobody-here"])
    assert isinstance(missing, ErrorNameResolutionNoResults)


def test_bulk_update_and_delete_report_per_item(alice):
    items = [Task(folder=alice.tasks, subject=f"b{i}") for i in range(3)]
    items = [alice.tasks.get(id=i.id) for i in alice.bulk_create(folder=alice.tasks, items=items)]
    for item in items:
        item.subject += "!"
    results = alice.bulk_update([(i, ["subject"]) for i in items])
    assert len(results) == 3 and all(isinstance(r, tuple) for r in results)
    ids = [(i.id, i.changekey) for i in items]
    alice.bulk_delete(ids[:1])
    results = alice.bulk_delete(ids)
    assert isinstance(results[0], ErrorItemNotFound)
    assert results[1:] == [True, True]


def test_extended_property_kinds_on_items(alice):
    from exchangelib.extended_properties import ExtendedProperty

    class Score(ExtendedProperty):
        distinguished_property_set_id = "PublicStrings"
        property_name = "sbx-score"
        property_type = "Integer"

    class Labels(ExtendedProperty):
        property_set_id = "c11ff724-aa03-4555-9952-8fa248a11c3e"
        property_id = 0x8101
        property_type = "StringArray"

    class Flag(ExtendedProperty):
        property_tag = 0x6701
        property_type = "Boolean"

    class Seen(ExtendedProperty):
        property_set_id = "c11ff724-aa03-4555-9952-8fa248a11c3e"
        property_name = "seen"
        property_type = "SystemTime"

    class Blob(ExtendedProperty):
        property_set_id = "c11ff724-aa03-4555-9952-8fa248a11c3e"
        property_name = "blob"
        property_type = "Binary"

    props = {"score": Score, "labels": Labels, "flag": Flag, "seen": Seen, "blob": Blob}
    for name, cls in props.items():
        Task.register(name, cls)
    try:
        moment = EWSDateTime(2030, 2, 3, 4, 5, 6, tzinfo=UTC)
        for score in (5, 50):
            Task(
                folder=alice.tasks,
                subject=f"ext {score}",
                score=score,
                labels=["a", "b"],
                flag=True,
                seen=moment,
                blob=b"\x00\x01",
            ).save()
        got = alice.tasks.get(subject="ext 5")
        assert (got.score, got.labels, got.flag, got.seen, got.blob) == (
            5,
            ["a", "b"],
            True,
            moment,
            b"\x00\x01",
        )
        assert [t.subject for t in alice.tasks.filter(score__gt=10)] == ["ext 50"]
        assert alice.tasks.filter(labels__contains=["b"], score=5).count() == 1
    finally:
        for name in props:
            Task.deregister(name)


def test_boolean_filters(alice):
    Message(account=alice, folder=alice.drafts, subject="unread one", is_read=False).save()
    Message(account=alice, folder=alice.drafts, subject="read one", is_read=True).save()
    assert [m.subject for m in alice.drafts.filter(is_read=False, subject__contains="one")] == [
        "unread one"
    ]
    assert alice.drafts.get(subject="read one").is_read is True


def test_filter_on_indexed_contact_fields(alice):
    Contact(
        folder=alice.contacts,
        display_name="Idx Person",
        given_name="Idx",
        email_addresses=[EmailAddress(email="idx@fabrikam.example", label="EmailAddress1")],
        physical_addresses=[PhysicalAddress(label="Home", city="Lyon")],
    ).save()
    Contact(
        folder=alice.contacts,
        display_name="Other Person",
        given_name="Other",
        email_addresses=[EmailAddress(email="other@fabrikam.example", label="EmailAddress1")],
    ).save()
    found = alice.contacts.filter(email_addresses__contains="idx@fabrikam.example")
    assert [c.given_name for c in found] == ["Idx"]
