"""Graph's patternedRecurrence and events ⇄ the mailbox vocabulary (pure functions): every
recurrence round-trips, Graph's names are the documented ones, occurrences keep their wall-clock
time across DST, and exceptions are named by their original start."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.graph import calendar, recurrence
from sync.mailbox import ews_recurrence

DAYS = list(recurrence.DAYS)
FIRST = dt.date(2027, 1, 4)


@st.composite
def vocab_recurrences(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(recurrence.TYPES)))
    pattern: dict[str, Any] = {"type": kind, "interval": draw(st.integers(1, 4))}
    if kind == "weekly":
        pattern["weekdays"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, unique=True))
        pattern["first_day_of_week"] = draw(st.sampled_from(DAYS))
    if kind.startswith("relative"):
        pattern["weekdays"] = [draw(st.sampled_from([*DAYS, "Day", "Weekday", "WeekendDay"]))]
        pattern["week_index"] = draw(st.sampled_from(recurrence.INDEXES))
    if kind.startswith("absolute"):
        pattern["day_of_month"] = draw(st.integers(1, 31))
    if kind.endswith("_yearly"):
        pattern["month"] = draw(st.integers(1, 12))
    range_type = draw(st.sampled_from(["no_end", "end_date", "numbered"]))
    start = FIRST + dt.timedelta(days=draw(st.integers(0, 400)))
    rng = {
        "type": range_type,
        "start": start.isoformat(),
        "end": (start + dt.timedelta(days=draw(st.integers(0, 900)))).isoformat()
        if range_type == "end_date"
        else None,
        "count": draw(st.integers(1, 50)) if range_type == "numbered" else None,
    }
    return {"pattern": pattern, "range": rng}


@settings(max_examples=300, deadline=None)
@given(vocab_recurrences(), st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]))
def test_every_recurrence_round_trips_through_graph(rec: dict[str, Any], zone: str) -> None:
    """recurrencepattern.md / recurrencerange.md: the vocabulary value comes back equal (in
    its canonical form) after a trip through Graph's shape, zone included."""
    graph = recurrence.to_graph(rec, zone, FIRST)
    assert graph is not None
    assert recurrence.from_graph(graph) == ews_recurrence.normalize(rec)
    assert recurrence.zone_of(graph) in ("UTC", "Romance Standard Time", "Eastern Standard Time")


def test_graph_names_are_the_documented_ones() -> None:
    """recurrencepattern.md: lower-case day names, `index` first…last, relative patterns list
    their days (EWS's "Weekday" is Monday to Friday); recurrencerange.md: noEnd / endDate /
    numbered with startDate, numberOfOccurrences and recurrenceTimeZone."""
    rec = {"pattern": {"type": "relative_monthly", "interval": 2, "weekdays": ["Weekday"],
                       "week_index": "Last"},
           "range": {"type": "numbered", "start": "2027-01-29", "end": None, "count": 10}}  # fmt: skip
    assert recurrence.to_graph(rec, "Europe/Paris", FIRST) == {
        "pattern": {"type": "relativeMonthly", "interval": 2, "index": "last",
                    "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"]},
        "range": {"type": "numbered", "startDate": "2027-01-29", "numberOfOccurrences": 10,
                  "recurrenceTimeZone": "Romance Standard Time"},
    }  # fmt: skip
    none_given = {"pattern": {"type": "daily", "interval": 1}, "range": {"type": "no_end"}}
    assert recurrence.to_graph(none_given, None, FIRST)["range"] == {  # type: ignore[index]
        "type": "noEnd", "startDate": "2027-01-04", "recurrenceTimeZone": "UTC"}  # fmt: skip
    assert recurrence.from_graph(None) is None and recurrence.to_graph(None, "UTC", FIRST) is None


def test_original_starts_keep_the_wall_clock_across_dst() -> None:
    """09:00 in Paris every Monday from 15 March 2027: 08:00 UTC, then 07:00 UTC from the
    29th (summer time from 28 March)."""
    rec = {"pattern": {"type": "weekly", "interval": 1, "weekdays": ["Monday"]},
           "range": {"type": "no_end", "start": "2027-03-15"}}  # fmt: skip
    first = dt.datetime(2027, 3, 15, 8, tzinfo=dt.UTC)
    until = dt.datetime(2027, 4, 6, tzinfo=dt.UTC)
    starts = recurrence.original_starts(rec, first, "Romance Standard Time", until)
    assert [s.strftime("%d %H") for s in starts] == ["15 08", "22 08", "29 07", "05 07"]


def test_exceptions_are_named_by_original_start() -> None:
    """event.md: an instance of type exception keeps its `originalStart`; the starts the
    pattern has that no instance keeps are the deleted occurrences."""
    master = {
        "type": "seriesMaster",
        "start": {"dateTime": "2027-03-15T08:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2027-03-15T09:00:00.0000000", "timeZone": "UTC"},
        "originalStartTimeZone": "Romance Standard Time",
        "recurrence": recurrence.to_graph(
            {"pattern": {"type": "weekly", "interval": 1, "weekdays": ["Monday"]},
             "range": {"type": "numbered", "start": "2027-03-15", "count": 4}},
            "Europe/Paris", FIRST),
    }  # fmt: skip
    instances = [
        {"type": "occurrence", "originalStart": "2027-03-15T08:00:00Z"},
        {"type": "exception", "originalStart": "2027-03-29T07:00:00Z",
         "start": {"dateTime": "2027-03-29T14:00:00", "timeZone": "Romance Standard Time"},
         "end": {"dateTime": "2027-03-29T15:00:00", "timeZone": "Romance Standard Time"}},
        {"type": "occurrence", "originalStart": "2027-04-05T07:00:00Z"},
    ]  # fmt: skip
    values = calendar.event_to_vocab(master, instances, dt.datetime(2028, 1, 1, tzinfo=dt.UTC))
    assert values["timezone"] == "Europe/Paris"
    assert values["deleted_occurrences"] == ["2027-03-22T08:00:00Z"]
    assert values["modified_occurrences"] == [
        {"original_start": "2027-03-29T07:00:00Z", "start": "2027-03-29T12:00:00Z",
         "end": "2027-03-29T13:00:00Z"}]  # fmt: skip


def test_event_body_sends_times_in_the_series_zone() -> None:
    """dateTimeTimeZone.md: the start is sent as local time with the zone's Windows name,
    attendees by type, showAs in Graph's words; unchanged fields are not sent."""
    merged = {"start": "2027-07-01T07:00:00Z", "end": "2027-07-01T08:00:00Z",
              "timezone": "Europe/Paris", "is_all_day": False,
              "required_attendees": ["a@x.example"], "optional_attendees": ["b@x.example"]}  # fmt: skip
    body = calendar.event_to_graph({"start": merged["start"], "required_attendees": [], "show_as": "OOF"}, merged)  # fmt: skip
    assert body["start"] == {"dateTime": "2027-07-01T09:00:00", "timeZone": "Romance Standard Time"}  # fmt: skip
    assert [(a["emailAddress"]["address"], a["type"]) for a in body["attendees"]] == [
        ("a@x.example", "required"), ("b@x.example", "optional")]  # fmt: skip
    assert body["showAs"] == "oof" and "subject" not in body and "recurrence" not in body
    same = {"pattern": {"type": "daily", "interval": 1}, "range": {"type": "no_end", "start": "2027-01-01"}}  # fmt: skip
    assert calendar.changed({"recurrence": same, "subject": "x"}, {"recurrence": same, "subject": "y"}) == {"subject": "x"}  # fmt: skip
