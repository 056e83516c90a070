"""Sandbox EWS recurring series through exchangelib: occurrences, exceptions, deletions, views,
wall-clock time across DST."""

from __future__ import annotations

import datetime

import pytest
from exchangelib import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.errors import ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange
from exchangelib.items import CalendarItem
from exchangelib.recurrence import (
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    WeeklyPattern,
)
from exchangelib.services import SyncFolderItems

PARIS = EWSTimeZone("Europe/Paris")


def _series(alice, subject, pattern, boundary, start):
    item = CalendarItem(
        folder=alice.calendar,
        subject=subject,
        start=start,
        end=start + datetime.timedelta(hours=1),
        recurrence=Recurrence(pattern=pattern, boundary=boundary),
    )
    item.save(send_meeting_invitations="SendToNone")
    return alice.calendar.get(id=item.id)


def _view(alice, subject, start, end):
    return [o for o in alice.calendar.view(start=start, end=end) if o.subject.startswith(subject)]


def test_weekly_series_keeps_wall_clock_across_dst(alice):
    start = EWSDateTime(2030, 3, 18, 9, 0, tzinfo=PARIS)  # DST starts 2030-03-31 in Paris
    master = _series(
        alice, "Standup", WeeklyPattern(interval=1, weekdays=[1]),
        NumberedPattern(start=start.date(), number=4), start,
    )  # fmt: skip
    assert master.type == "RecurringMaster"
    assert master.first_occurrence.start == start
    assert master.last_occurrence.start.astimezone(PARIS).hour == 9
    occurrences = _view(
        alice,
        "Standup",
        EWSDateTime(2030, 3, 1, tzinfo=PARIS),
        EWSDateTime(2030, 5, 1, tzinfo=PARIS),
    )
    assert [o.start.astimezone(PARIS).hour for o in occurrences] == [9, 9, 9, 9]
    assert [o.start.astimezone(PARIS).day for o in occurrences] == [18, 25, 1, 8]
    assert {o.type for o in occurrences} == {"Occurrence"}


def test_modify_and_delete_single_occurrences(alice):
    start = EWSDateTime(2030, 6, 3, 14, 0, tzinfo=PARIS)
    master = _series(
        alice, "Review", DailyPattern(interval=1),
        EndDatePattern(start=start.date(), end=EWSDate(2030, 6, 7)), start,
    )  # fmt: skip
    service = SyncFolderItems(account=alice)
    list(service.call(alice.calendar, "IdOnly", None, None, None, 512, None))
    state = service.sync_state
    second = next(iter(alice.fetch([master.occurrence(2)])))
    assert second.type == "Occurrence"
    second.subject = "Review (moved)"
    second.start += datetime.timedelta(hours=2)
    second.end += datetime.timedelta(hours=2)
    second.save(update_fields=["subject", "start", "end"])
    third = next(iter(alice.fetch([master.occurrence(3)])))
    third.delete(send_meeting_cancellations="SendToNone")
    fresh = alice.calendar.get(id=master.id)
    assert fresh.changekey != master.changekey
    assert [o.start.astimezone(PARIS).hour for o in fresh.modified_occurrences] == [16]
    assert [d.start.astimezone(PARIS).day for d in fresh.deleted_occurrences] == [5]
    again = next(iter(alice.fetch([fresh.occurrence(2)])))
    assert (again.type, again.subject) == ("Exception", "Review (moved)")
    days = _view(
        alice,
        "Review",
        EWSDateTime(2030, 6, 1, tzinfo=PARIS),
        EWSDateTime(2030, 6, 30, tzinfo=PARIS),
    )
    assert [(o.start.astimezone(PARIS).day, o.subject) for o in days] == [
        (3, "Review"), (4, "Review (moved)"), (6, "Review"), (7, "Review"),
    ]  # fmt: skip
    changes = list(service.call(alice.calendar, "IdOnly", None, state, None, 512, None))
    assert [(kind, item.id) for kind, item in changes] == [("update", master.id)]
    with pytest.raises(ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange):
        next(iter(alice.fetch([fresh.occurrence(9)])))


@pytest.mark.parametrize(
    ("pattern", "expected_days"),
    [
        (RelativeMonthlyPattern(interval=1, weekday=5, week_number=5), [31, 28, 28]),  # last Friday
        (AbsoluteYearlyPattern(day_of_month=15, month=2), [15, 15, 15]),
    ],
)
def test_monthly_and_yearly_patterns(alice, pattern, expected_days):
    start = EWSDateTime(2031, 1, 1, 8, 0, tzinfo=PARIS)
    subject = f"P {type(pattern).__name__}"
    master = _series(alice, subject, pattern, NumberedPattern(start=start.date(), number=3), start)
    occurrences = [next(iter(alice.fetch([master.occurrence(i)]))) for i in (1, 2, 3)]
    assert [o.start.astimezone(PARIS).day for o in occurrences] == expected_days
    assert all(o.start.astimezone(PARIS).hour == 8 for o in occurrences)
