"""The sandbox Graph's calendar over real HTTPS: series masters, their instances, exceptions,
cancelled occurrences and the calendar view's delta; and GraphSide's calendar kinds on it.
Each test keeps to its own dates, so the tests share one server."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from sync.graph import calendar
from sync.graph.side import GraphSide
from sync.sides import CreateOp, Deleted, DeleteOp, Invalid, TokenExpired, UpdateOp, Upsert, Written
from tests.graph.conftest import ALICE, GraphWorld

PARIS = "Romance Standard Time"


def _series(http: httpx.Client, start: str, count: int, **extra: Any) -> dict[str, Any]:
    """A weekly Monday series at 09:00 Paris time (made by Graph's Windows zone name)."""
    body = {
        "subject": "Weekly",
        "start": {"dateTime": f"{start}T09:00:00", "timeZone": PARIS},
        "end": {"dateTime": f"{start}T10:00:00", "timeZone": PARIS},
        "recurrence": {
            "pattern": {
                "type": "weekly",
                "interval": 1,
                "daysOfWeek": ["monday"],
                "firstDayOfWeek": "sunday",
            },  # fmt: skip
            "range": {
                "type": "numbered",
                "startDate": start,
                "numberOfOccurrences": count,
                "recurrenceTimeZone": PARIS,
            },  # fmt: skip
        },
        **extra,
    }
    made = http.post("me/events", json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())


def _instances(http: httpx.Client, master: str, start: str, end: str) -> list[dict[str, Any]]:
    answer = http.get(f"me/events/{master}/instances?startDateTime={start}&endDateTime={end}")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["value"])


def _delta(http: httpx.Client, link: str) -> tuple[list[dict[str, Any]], str]:
    entries: list[dict[str, Any]] = []
    while True:
        page = http.get(link).json()
        entries += page["value"]
        if "@odata.deltaLink" in page:
            return entries, page["@odata.deltaLink"]
        link = page["@odata.nextLink"]


def test_a_series_expands_in_its_zone_across_dst(http: httpx.Client) -> None:
    """event.md, event-list-instances.md, recurrencerange.md: a master is type seriesMaster;
    its instances are type occurrence with seriesMasterId and originalStart, at the wall-clock
    time of the series in recurrenceTimeZone (Paris summer time from 28 March 2027)."""
    master = _series(http, "2027-03-15", 4)
    assert (master["type"], master["originalStartTimeZone"]) == ("seriesMaster", PARIS)
    found = _instances(http, master["id"], "2027-03-01T00:00:00Z", "2027-05-01T00:00:00Z")
    assert [i["type"] for i in found] == ["occurrence"] * 4
    assert {i["seriesMasterId"] for i in found} == {master["id"]}
    assert [i["originalStart"] for i in found] == [
        "2027-03-15T08:00:00Z", "2027-03-22T08:00:00Z", "2027-03-29T07:00:00Z", "2027-04-05T07:00:00Z"]  # fmt: skip
    assert all(i.get("recurrence") is None for i in found)
    # Prefer: outlook.timezone answers in the zone asked for (a Windows name is accepted).
    local = http.get(
        f"me/events/{found[2]['id']}", headers={"Prefer": f'outlook.timezone="{PARIS}"'}
    ).json()
    assert local["start"]["dateTime"].startswith("2027-03-29T09:00:00")


def test_an_occurrence_patched_becomes_an_exception_and_a_deleted_one_is_gone(
    http: httpx.Client,
) -> None:
    """event-update.md: PATCH of an occurrence makes it an exception (its master changes);
    moving it to or beyond an adjacent occurrence's day is ErrorOccurrenceCrossingBoundary.
    event-delete.md: DELETE of an occurrence removes it from the series' instances."""
    master = _series(http, "2028-03-06", 4)
    first = _instances(http, master["id"], "2028-03-01T00:00:00Z", "2028-04-30T00:00:00Z")
    moved = http.patch(
        f"me/events/{first[1]['id']}",
        json={"start": {"dateTime": "2028-03-14T15:00:00", "timeZone": "UTC"},
              "end": {"dateTime": "2028-03-14T16:00:00", "timeZone": "UTC"}},
    )  # fmt: skip
    assert moved.status_code == 200 and moved.json()["type"] == "exception"
    crossing = http.patch(
        f"me/events/{first[2]['id']}",
        json={"start": {"dateTime": "2028-03-27T15:00:00", "timeZone": "UTC"},
              "end": {"dateTime": "2028-03-27T16:00:00", "timeZone": "UTC"}},
    )  # fmt: skip
    assert crossing.status_code == 400
    assert crossing.json()["error"]["code"] == "ErrorOccurrenceCrossingBoundary"
    assert http.delete(f"me/events/{first[3]['id']}").status_code == 204
    assert http.get(f"me/events/{first[3]['id']}").status_code == 404
    now = _instances(http, master["id"], "2028-03-01T00:00:00Z", "2028-04-30T00:00:00Z")
    assert [(i["type"], i["originalStart"][:10]) for i in now] == [
        ("occurrence", "2028-03-06"), ("exception", "2028-03-13"), ("occurrence", "2028-03-20")]  # fmt: skip
    assert now[1]["start"]["dateTime"].startswith("2028-03-14T15:00:00")
    assert http.get(f"me/events/{master['id']}").json()["changeKey"] != master["changeKey"]


def test_what_graph_refuses_on_events(http: httpx.Client) -> None:
    """event.md: `type` is read-only (ErrorInvalidPropertyUpdateSentToServer, as for every
    read-only property); an occurrence takes no recurrence of its own; the calendar view and
    instances need startDateTime and endDateTime (user-list-calendarview.md); event-delta.md:
    the view's delta takes no $expand / $select / $filter."""
    master = _series(http, "2029-01-01", 2)
    read_only = http.patch(f"me/events/{master['id']}", json={"type": "singleInstance"})
    assert read_only.status_code == 400
    assert read_only.json()["error"]["code"] == "ErrorInvalidPropertyUpdateSentToServer"
    [one, _] = _instances(http, master["id"], "2029-01-01T00:00:00Z", "2029-01-31T00:00:00Z")
    own = http.patch(f"me/events/{one['id']}", json={"recurrence": master["recurrence"]})
    assert own.status_code == 400
    assert own.json()["error"]["code"] == "ErrorInvalidPropertyUpdateSentToServer"
    assert http.get("me/calendarView").status_code == 400
    assert http.get(f"me/events/{master['id']}/instances").status_code == 400
    window = "startDateTime=2029-01-01T00:00:00Z&endDateTime=2029-02-01T00:00:00Z"
    assert http.get(f"me/calendarView/delta?{window}&$expand=extensions").status_code == 400
    bad = http.post("me/events", json={**_body("2029-02-01"), "recurrence": {"pattern": {"type": "weekly"}}})  # fmt: skip
    assert bad.status_code == 400


def _body(day: str, **extra: Any) -> dict[str, Any]:
    return {
        "subject": f"On {day}",
        "start": {"dateTime": f"{day}T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"{day}T11:00:00", "timeZone": "UTC"},
        **extra,
    }


def test_calendar_view_delta_lists_instances_removed_and_expires(
    world: GraphWorld, http: httpx.Client
) -> None:
    """event-delta.md: the view's delta lists single events, occurrences and exceptions (never
    the master); later rounds give what changed, deleted instances under `@removed`; a
    stale token is 410 (delta-query-overview.md: restart the sync)."""
    window = "startDateTime=2030-01-01T00:00:00Z&endDateTime=2030-03-01T00:00:00Z"
    single = http.post("me/events", json=_body("2030-01-10")).json()
    master = _series(http, "2030-01-07", 3)
    entries, link = _delta(http, f"me/calendarView/delta?{window}")
    assert sorted(e.get("type") for e in entries) == ["occurrence"] * 3 + ["singleInstance"]
    assert master["id"] not in {e["id"] for e in entries}
    second = _instances(http, master["id"], "2030-01-01T00:00:00Z", "2030-03-01T00:00:00Z")[1]
    assert http.delete(f"me/events/{second['id']}").status_code == 204
    assert http.delete(f"me/events/{single['id']}").status_code == 204
    entries, link = _delta(http, link)
    removed = {e["id"] for e in entries if "@removed" in e}
    assert {second["id"], single["id"]} <= removed
    assert {e.get("seriesMasterId") for e in entries if "@removed" not in e} == {master["id"]}
    assert _delta(http, link)[0] == []  # nothing since
    world.graph.mailbox(ALICE).expire_tokens()
    gone = http.get(link)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "SyncStateNotFound"


# --- GraphSide's calendar -------------------------------------------------------------------------


def _side(world: GraphWorld) -> GraphSide:
    side = world.side()
    today = dt.date(2031, 1, 1)
    side.calendar = calendar.GraphCalendar(side.client, days_back=10, days_ahead=120, today=lambda: today)  # fmt: skip
    return side


SERIES = {
    "subject": "Paris weekly",
    "start": "2031-03-17T08:00:00Z",
    "end": "2031-03-17T09:00:00Z",
    "timezone": "Europe/Paris",
    "is_all_day": False,
    "required_attendees": ["guest@customer.example"],
    "recurrence": {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "weekdays": ["Monday"],
            "first_day_of_week": "Sunday",
        },  # fmt: skip
        "range": {"type": "numbered", "start": "2031-03-17", "end": None, "count": 5},
    },
    "deleted_occurrences": ["2031-03-24T08:00:00Z"],
    "modified_occurrences": [
        {
            "original_start": "2031-03-31T07:00:00Z",
            "start": "2031-03-31T12:00:00Z",
            "end": "2031-03-31T13:00:00Z",
        }  # fmt: skip
    ],
}


def test_side_writes_a_series_with_exceptions_and_reads_it_back(world: GraphWorld) -> None:
    """A series made through GraphSide carries its key, its zone, its pattern and its deleted
    and moved occurrences (by original start, DST included); a full read lists it and the
    single event once each; find_by_key finds both."""
    side = _side(world)
    single = {"subject": "Lunch", "start": "2031-01-20T12:00:00Z", "end": "2031-01-20T13:00:00Z", "timezone": "UTC"}  # fmt: skip
    made = side.write("appointments", [CreateOp("key-series", SERIES), CreateOp("key-single", single)])  # fmt: skip
    assert all(isinstance(r, Written) for r in made), made
    series_id = made[0].id
    fields = made[0].fields  # type: ignore[union-attr]
    assert (fields["timezone"], fields["start"]) == ("Europe/Paris", "2031-03-17T08:00:00Z")
    assert fields["recurrence"] == SERIES["recurrence"]
    assert fields["deleted_occurrences"] == SERIES["deleted_occurrences"]
    assert fields["modified_occurrences"] == SERIES["modified_occurrences"]
    read = {
        c.id: c
        for p in side.read_changes("appointments", None)
        for c in p.changes
        if isinstance(c, Upsert)  # fmt: skip
    }
    assert {read[series_id].key, read[made[1].id].key} == {"key-series", "key-single"}
    assert read[series_id].fields == {**fields, "modified": read[series_id].fields["modified"]}
    found = side.find_by_key("appointments", ["key-series", "key-single", "nobody"])
    assert {k: u.id for k, u in found.items()} == {"key-series": series_id, "key-single": made[1].id}  # fmt: skip


def test_side_reads_changes_and_a_deleted_series_from_the_delta(world: GraphWorld) -> None:
    """The token after a full read gives only what changed: a cancelled occurrence shows as
    the series' new `deleted_occurrences`, and a deleted series (whose id the view never
    lists: only its instances are removed) as a Deleted of the series."""
    side = _side(world)
    [made] = side.write("appointments", [CreateOp("key-delta", {**SERIES, "subject": "Delta", "deleted_occurrences": [], "modified_occurrences": []})])  # fmt: skip
    assert isinstance(made, Written)
    token = [p for p in side.read_changes("appointments", None)][-1].token
    assert token is not None
    instances = side.calendar._instances([{"id": made.id, "start": {"dateTime": "2031-03-17T08:00:00", "timeZone": "UTC"}, "recurrence": {"range": {"type": "numbered"}}}], side.calendar._until())[made.id]  # fmt: skip
    with world.http() as http:  # the user deletes the third occurrence in Outlook
        assert http.delete(f"me/events/{instances[2]['id']}").status_code == 204
    side.begin_run()
    [page] = list(side.read_changes("appointments", token))
    [upsert] = [c for c in page.changes if isinstance(c, Upsert)]
    assert upsert.id == made.id and upsert.fields["deleted_occurrences"] == ["2031-03-31T07:00:00Z"]  # fmt: skip
    with world.http() as http:  # then the whole series
        assert http.delete(f"me/events/{made.id}").status_code == 204
    side.begin_run()
    [page] = list(side.read_changes("appointments", page.token))
    assert Deleted(made.id) in page.changes
    assert not any(isinstance(c, Upsert) for c in page.changes)


def test_quiet_delete_of_a_meeting_is_refused_and_sends_no_cancellation(world: GraphWorld) -> None:
    """event-delete.md: deleting a meeting on the organizer's calendar sends a cancellation
    to its attendees, and Graph has no way to say "send none". A quiet delete (a meeting that
    left the filter, DESIGN 1.3) is refused as an item error; a delete that is not quiet (the
    organizer deleted it in the CRM) goes through, and the attendees are told."""
    side = _side(world)
    meeting = {**SERIES, "recurrence": None, "deleted_occurrences": [], "modified_occurrences": [], "subject": "Quiet"}  # fmt: skip
    [made] = side.write("appointments", [CreateOp("key-quiet", meeting)])
    assert isinstance(made, Written)
    sent = world.graph.mailbox(ALICE).meeting_messages
    before = [m for m in sent if m["kind"] == "cancellation"]
    [refused] = side.write("appointments", [DeleteOp(made.id, None, quiet=True)])
    assert isinstance(refused, Invalid) and refused.code == "quiet_delete_unsupported"
    assert side.read("appointments", [made.id])  # still there
    assert [m for m in sent if m["kind"] == "cancellation"] == before
    [done] = side.write("appointments", [DeleteOp(made.id, None, quiet=False)])
    assert isinstance(done, Written) and not side.read("appointments", [made.id])
    assert [m["event"] for m in sent if m["kind"] == "cancellation"][len(before) :] == [made.id]


def test_side_update_keeps_exceptions_unless_the_pattern_changes(world: GraphWorld) -> None:
    """Sending an unchanged recurrence again would drop the exceptions: an update of the
    subject keeps them; a new pattern drops them and the wanted ones are applied again."""
    side = _side(world)
    [made] = side.write("appointments", [CreateOp("key-update", {**SERIES, "subject": "Upd"})])
    assert isinstance(made, Written)
    [renamed] = side.write("appointments", [UpdateOp(made.id, None, {**SERIES, "subject": "Renamed"})])  # fmt: skip
    assert isinstance(renamed, Written)
    assert renamed.fields["subject"] == "Renamed"
    assert renamed.fields["modified_occurrences"] == SERIES["modified_occurrences"]
    longer = {**SERIES["recurrence"], "range": {**SERIES["recurrence"]["range"], "count": 6}}  # type: ignore[dict-item]
    [again] = side.write("appointments", [UpdateOp(made.id, None, {"recurrence": longer, "deleted_occurrences": SERIES["deleted_occurrences"], "modified_occurrences": SERIES["modified_occurrences"]})])  # fmt: skip
    assert isinstance(again, Written), again
    assert again.fields["recurrence"]["range"]["count"] == 6
    assert again.fields["deleted_occurrences"] == SERIES["deleted_occurrences"]
    assert again.fields["modified_occurrences"] == SERIES["modified_occurrences"]


def test_an_old_window_is_read_again(world: GraphWorld) -> None:
    """The delta link fixes the window: after REFRESH_DAYS the side refuses its own token, so
    the engine reads everything again with a window around the new today."""
    side = _side(world)
    token = [p for p in side.read_changes("appointments", None)][-1].token
    assert token is not None and calendar.delta_link(token)
    later = dt.date(2031, 3, 1)
    side.calendar = calendar.GraphCalendar(side.client, today=lambda: later)
    with pytest.raises(TokenExpired):
        list(side.read_changes("appointments", token))
    assert calendar.delta_link("not a token") is None


def test_a_meeting_already_over_is_copied_without_inviting_anyone(world: GraphWorld) -> None:
    """event-update.md / event-delete.md: Graph has no "send to none", so an event created with
    attendees mails each a meeting request. A CRM meeting still to come goes with its attendees
    (as server-side sync sends it); one already over — the first sync of a CRM full of past
    meetings — goes without them, so no attendee gets an invitation to the past. The Written
    carries the event as Graph stored it: the link's base, so the missing attendees never read
    as a mailbox change that would remove them from the CRM."""
    side = _side(world)
    sent = world.graph.mailbox(ALICE).meeting_messages
    before = len([m for m in sent if m["kind"] == "request"])
    single = {**SERIES, "recurrence": None, "deleted_occurrences": [], "modified_occurrences": []}  # fmt: skip
    past = {**single, "subject": "Over", "start": "2020-03-02T08:00:00Z", "end": "2020-03-02T09:00:00Z"}  # fmt: skip
    coming = {**single, "subject": "To come"}
    [old, new] = side.write("appointments", [CreateOp("key-past", past), CreateOp("key-coming", coming)])  # fmt: skip
    assert isinstance(old, Written) and isinstance(new, Written)
    requests = [m for m in sent if m["kind"] == "request"][before:]
    assert [m["event"] for m in requests] == [new.id]
    assert not old.fields.get("required_attendees")
    assert new.fields.get("required_attendees") == ["guest@customer.example"]
    now = dt.datetime.now(dt.UTC)
    ended = {**SERIES, "recurrence": {**SERIES["recurrence"], "range": {"type": "end_date", "start": "2020-03-02", "end": "2020-04-27", "count": None}}}  # fmt: skip
    assert calendar.has_ended(ended, now) and not calendar.has_ended(SERIES, now)


def test_created_events_are_read_back_together(world: GraphWorld) -> None:
    """25 events made at once cost 2 `$batch`es of POSTs and 2 of GETs reading them back (20
    requests a batch, json-batching.md), not one request per event; each is read once."""
    side = _side(world)
    days = [f"2032-02-{d:02d}" for d in range(1, 26)]
    ops = [
        CreateOp(
            f"key-batch-{day}",
            {
                "subject": f"Visit {day}",
                "start": f"{day}T09:00:00Z",
                "end": f"{day}T10:00:00Z",
                "timezone": "UTC",
            },
        )  # fmt: skip
        for day in days
    ]
    since = len(world.log.snapshot())
    made = side.write("appointments", ops)
    assert all(isinstance(r, Written) for r in made), made
    assert [r.fields["subject"] for r in made] == [f"Visit {day}" for day in days]  # type: ignore[union-attr]
    entries = [e for e in world.log.snapshot()[since:] if e.service == "graph"]
    assert sum(e.target == "/v1.0/$batch" for e in entries) == 4
    reads = [e.target for e in entries if e.method == "GET" and e.target.startswith("/v1.0/me/events/")]  # fmt: skip
    assert sorted(reads) == sorted(f"/v1.0/me/events/{r.id}" for r in made)  # type: ignore[union-attr]
