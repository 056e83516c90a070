"""The calendar of a Graph mailbox: kinds "appointments" (and, through the kinds' filters,
recurring series), in the vocabulary EwsSide speaks (`APPOINTMENT_FIELDS`).

Reading. Graph's change feed for a calendar is the calendar view's delta
(api/event-delta.md): it lists the *instances* in a time window — single events, occurrences
and exceptions, never a series master — and takes no `$expand`, so the CRM id (an extended
property) is not in it. So a delta page only says which single events and which series
(`seriesMasterId`) changed; those are then read by id in JSON batches, a master with its
instances (api/event-list-instances.md), from which its moved occurrences (`type` exception,
by `originalStart`) and deleted ones (dates the pattern has and the instances lack) follow.
Entries under `@removed` are events deleted, or changed outside the window: each is looked up
by id, and a removed series instance makes the side check that the series it knew still exist.
The token the engine saves is a small JSON object: the delta link, the series ids known (to
notice a deleted series, whose instances are removed but whose id never appears) and the day
the window was set.

The window: from `DAYS_BACK` days before the first read to `DAYS_AHEAD` after, wider than the
single appointments' default filter (ended at most 30 days ago). It is fixed in the delta link;
after `REFRESH_DAYS` the token is refused (TokenExpired) so the engine reads everything again
with a new window. A full read lists every event of the calendar (`/me/events`: single events
and series masters), so nothing outside the window looks deleted.

Writing: POST / PATCH / DELETE of events in batches, then the occurrence changes of a series
(PATCH of an instance makes it an exception; DELETE of one cancels it), addressed by the
instance's id found by its original start. Times are sent in the series' zone (Windows name,
with the recurrence's `recurrenceTimeZone` the same) so a series keeps its wall-clock time.

Meeting messages (api/event-delete.md, event-cancel.md): Graph has no "send to none". Deleting
a meeting on the organizer's calendar sends a cancellation to its attendees, and creating or
updating one sends requests or updates. A delete the engine asks to be quiet (a meeting that
left the sync filter, DESIGN 1.3) is therefore refused for an organizer's meeting with
attendees (an `Invalid` item error the user sees) instead of cancelling it for everyone; other
deletes (the CRM record was deleted: the organizer cancels) go through.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from sync import timezones
from sync.graph import convert, recurrence
from sync.graph.client import GraphClient
from sync.mailbox import ews_recurrence
from sync.mailbox.ews_readcache import REUSE_SECONDS, ReadReuse
from sync.mailbox.fields import OCCURRENCE_FIELDS
from sync.sides import (
    CreateOp,
    Deleted,
    DeleteOp,
    Invalid,
    NotFound,
    Page,
    Result,
    SideError,
    TokenExpired,
    UpdateOp,
    Upsert,
    WriteOp,
    Written,
    update_refusal,
    write_grouped,
)

KIND = "appointments"
DAYS_BACK, DAYS_AHEAD, REFRESH_DAYS = 60, 400, 30
PAGE = 100
SHOW_AS = {
    "Free": "free",
    "Tentative": "tentative",
    "Busy": "busy",
    "OOF": "oof",
    "WorkingElsewhere": "workingElsewhere",
}
SHOW_AS_BACK = {v: k for k, v in SHOW_AS.items()}
_TIME_FIELDS = ("start", "end", "timezone", "is_all_day")
_TAG = re.compile(r"<[^>]+>")
_KEY_EXPAND = f"$expand=singleValueExtendedProperties($filter={quote(f'id eq {chr(39)}{convert.KEY_PROPERTY}{chr(39)}')})"  # fmt: skip


# --- conversion (pure) --------------------------------------------------------------------------


def _utc(value: Any) -> dt.datetime | None:
    """A dateTimeTimeZone (in any zone Graph answers in) as an aware UTC datetime."""
    if not isinstance(value, Mapping) or not value.get("dateTime"):
        return None
    local = dt.datetime.fromisoformat(str(value["dateTime"]).rstrip("Z")[:19])
    zone = timezones.zone_info(value.get("timeZone") or "UTC") or dt.UTC
    return local.replace(tzinfo=zone).astimezone(dt.UTC)


def _z(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _moment(text: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(dt.UTC)


def vocab_zone(name: str | None) -> str | None:
    """A zone as the vocabulary names it (IANA; "UTC" for UTC), from Graph's name."""
    if not name or name.startswith("tzone://"):
        return None
    return "UTC" if timezones.windows_name(name) == "UTC" else timezones.iana_name(name)


def event_zone(item: Mapping[str, Any]) -> str | None:
    return vocab_zone(recurrence.zone_of(item.get("recurrence")) or item.get("originalStartTimeZone"))  # fmt: skip


def _text_body(body: Any) -> str | None:
    if not isinstance(body, Mapping) or not body.get("content"):
        return None
    content = str(body["content"])
    if str(body.get("contentType", "")).lower() == "html":
        content = _TAG.sub("", content).replace("&nbsp;", " ").replace("&amp;", "&").strip()
    return content or None


def _address(value: Any) -> str | None:
    email = (value or {}).get("emailAddress") or {}
    return email.get("address") or None


def exceptions_of(
    item: Mapping[str, Any], instances: Sequence[Mapping[str, Any]], until: dt.datetime
) -> tuple[list[str], list[dict[str, Any]]]:
    """(deleted original starts, moved occurrences) of a series from its instances listed up to
    `until`: the moved ones are the instances of type exception; the deleted ones the starts
    the pattern has that no instance keeps."""
    rec = recurrence.from_graph(item.get("recurrence"))
    first = _utc(item.get("start"))
    if rec is None or first is None:
        return [], []
    present = {_z(_moment(i["originalStart"])) for i in instances if i.get("originalStart")}
    expected = recurrence.original_starts(rec, first, event_zone(item), until)
    deleted = sorted(s for s in map(_z, expected) if s not in present and s is not None)
    moved = sorted(
        (
            {
                "original_start": _z(_moment(i["originalStart"])),
                "start": _z(_utc(i.get("start"))),
                "end": _z(_utc(i.get("end"))),
            }
            for i in instances
            if i.get("type") == "exception" and i.get("originalStart")
        ),
        key=lambda m: str(m["original_start"]),
    )
    return deleted, moved


def event_to_vocab(
    item: Mapping[str, Any],
    instances: Sequence[Mapping[str, Any]] = (),
    until: dt.datetime | None = None,
) -> dict[str, Any]:
    """resources/event.md → APPOINTMENT_FIELDS (a series with the exceptions its `instances`
    show, listed up to `until`)."""
    attendees = item.get("attendees") or []
    deleted, moved = (
        exceptions_of(item, instances, until)
        if until is not None and item.get("type") == "seriesMaster"
        else ([], [])
    )
    return {
        "subject": item.get("subject") or None,
        "body": _text_body(item.get("body")),
        "location": ((item.get("location") or {}).get("displayName")) or None,
        "start": _z(_utc(item.get("start"))),
        "end": _z(_utc(item.get("end"))),
        "timezone": event_zone(item),
        "is_all_day": bool(item.get("isAllDay")),
        "show_as": SHOW_AS_BACK.get(str(item.get("showAs"))),
        "organizer": _address(item.get("organizer")),
        "required_attendees": [
            a
            for a in (_address(x) for x in attendees if x.get("type", "required") == "required")
            if a
        ],  # fmt: skip
        "optional_attendees": [
            a for a in (_address(x) for x in attendees if x.get("type") == "optional") if a
        ],  # fmt: skip
        "reminder_is_set": bool(item.get("isReminderOn")),
        "reminder_minutes": item.get("reminderMinutesBeforeStart"),
        "recurrence": recurrence.from_graph(item.get("recurrence")),
        "deleted_occurrences": deleted,
        "modified_occurrences": moved,
        "categories": list(item.get("categories") or []),
        "modified": item.get("lastModifiedDateTime"),
    }


def _local(moment: str, zone: str | None) -> dict[str, str]:
    """A UTC moment as Graph's dateTimeTimeZone in the event's zone (Windows name)."""
    info = timezones.zone_info(zone) or dt.UTC
    local = _moment(moment).astimezone(info)
    name = timezones.windows_name(zone) if zone else "UTC"
    return {"dateTime": local.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": name or "UTC"}


def event_to_graph(changes: Mapping[str, Any], merged: Mapping[str, Any]) -> dict[str, Any]:
    """The event properties to send for `changes`; `merged` is the whole new vocabulary value
    (times, attendees and the recurrence are written whole). Organizer is Graph's to set."""
    body: dict[str, Any] = {}
    zone = merged.get("timezone") or "UTC"
    if "subject" in changes:
        body["subject"] = changes["subject"] or ""
    if "body" in changes:
        body["body"] = {"contentType": "text", "content": changes["body"] or ""}
    if "location" in changes:
        body["location"] = {"displayName": changes["location"] or ""}
    if any(n in changes for n in _TIME_FIELDS) or "recurrence" in changes:
        body["start"] = _local(merged["start"], zone)
        body["end"] = _local(merged["end"], zone)
        body["isAllDay"] = bool(merged.get("is_all_day"))
    if "show_as" in changes:
        body["showAs"] = SHOW_AS.get(str(changes["show_as"]), "busy")
    if "required_attendees" in changes or "optional_attendees" in changes:
        body["attendees"] = [
            {"emailAddress": {"address": a, "name": a}, "type": kind}
            for kind in ("required", "optional")
            for a in merged.get(f"{kind}_attendees") or []
        ]
    if "reminder_is_set" in changes:
        body["isReminderOn"] = bool(changes["reminder_is_set"])
    if "reminder_minutes" in changes:
        body["reminderMinutesBeforeStart"] = int(changes["reminder_minutes"] or 0)
    if "recurrence" in changes:
        first_day = _moment(merged["start"]).astimezone(timezones.zone_info(zone) or dt.UTC).date()
        body["recurrence"] = recurrence.to_graph(changes["recurrence"], zone, first_day)
    if "categories" in changes:
        body["categories"] = list(changes["categories"] or [])
    return body


changed = ews_recurrence.changed_fields
"""The fields that differ from the event's current values (occurrences apart)."""


def has_ended(fields: Mapping[str, Any], now: dt.datetime) -> bool:
    """Whether an appointment is over: a single one whose end has passed, or a series whose
    range ends on a past date (a numbered or endless series counts as going on)."""
    pattern = fields.get("recurrence")
    if pattern:
        end = (pattern.get("range") or {}).get("end")
        ranged = (pattern.get("range") or {}).get("type") == "end_date"
        return bool(ranged and end and dt.date.fromisoformat(str(end)[:10]) < now.date())
    end_at = fields.get("end")
    return bool(end_at) and _moment(end_at) < now


def without_past_invitations(fields: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """A meeting that is already over goes into a Graph calendar without its attendees.

    Graph has no "send to none" (event-delete.md, event-update.md): an event created with
    attendees sends each of them a meeting request. For a meeting still to come that is what
    Dynamics' server-side sync does too; for one already over (the first sync of a CRM full
    of past meetings) it would mail every attendee an invitation to the past. Nothing is
    lost: the CRM keeps the attendees, and the link's mailbox base is the event as Graph
    stored it (read back after the create), so their absence is not a mailbox change."""
    if not (fields.get("required_attendees") or fields.get("optional_attendees")):
        return dict(fields)
    if not has_ended(fields, now):
        return dict(fields)
    return {**fields, "required_attendees": [], "optional_attendees": []}


# --- the token ------------------------------------------------------------------------------------


def encode_state(link: str, series: set[str], made: dt.date) -> str:
    return json.dumps({"link": link, "series": sorted(series), "made": made.isoformat()}, separators=(",", ":"))  # fmt: skip


def delta_link(token: str | None) -> str | None:
    """The calendar view's delta link inside a token of this side (None when it is not one)."""
    if not token:
        return None
    try:
        return decode_state(token)[0]
    except TokenExpired:
        return None


def decode_state(token: str) -> tuple[str, set[str], dt.date]:
    try:
        state = json.loads(token)
        return str(state["link"]), set(state.get("series") or []), dt.date.fromisoformat(state["made"])  # fmt: skip
    except (ValueError, KeyError, TypeError):
        raise TokenExpired("The calendar token is not one this side wrote.", "syncStateNotFound") from None  # fmt: skip


# --- the side's calendar ------------------------------------------------------------------------


class GraphCalendar:
    """The calendar part of GraphSide (one per side)."""

    def __init__(
        self,
        client: GraphClient,
        days_back: int = DAYS_BACK,
        days_ahead: int = DAYS_AHEAD,
        today: Any = None,
    ) -> None:
        self.client = client
        self.days_back, self.days_ahead = days_back, days_ahead
        self._today = today or (lambda: dt.datetime.now(dt.UTC).date())
        self._reuse = ReadReuse(REUSE_SECONDS)

    def begin_run(self) -> None:
        self._reuse.forget()

    def _until(self) -> dt.datetime:
        """How far a series' instances are listed: the window's end."""
        day = self._today() + dt.timedelta(days=self.days_ahead)
        return dt.datetime.combine(day, dt.time(), dt.UTC)

    # --- reading ---------------------------------------------------------------------------

    def read_changes(self, token: str | None) -> Iterator[Page]:
        kept = self._reuse.take(KIND, token)
        if kept is not None:
            yield from kept
            return
        pages = list(self._full() if token is None else self._incremental(token))
        if token is not None:
            self._reuse.keep(KIND, token, pages)
        yield from pages

    def _delta_round(self, link: str) -> tuple[list[dict[str, Any]], str]:
        entries: list[dict[str, Any]] = []
        headers = {"Prefer": f"odata.maxpagesize={PAGE}"}
        next_link: str | None = link
        while next_link:
            page = self.client.get(next_link, headers)
            entries += page.get("value", [])
            if page.get("@odata.deltaLink"):
                return entries, str(page["@odata.deltaLink"])
            next_link = page.get("@odata.nextLink")
        raise TokenExpired("The calendar delta ended without a delta link.", "syncStateNotFound")

    def delta_path(self) -> str:
        """The first delta request of the calendar view over the window from today."""
        today = self._today()
        start = dt.datetime.combine(today - dt.timedelta(days=self.days_back), dt.time(), dt.UTC)
        end = dt.datetime.combine(today + dt.timedelta(days=self.days_ahead), dt.time(), dt.UTC)
        return (
            "me/calendarView/delta?startDateTime="
            f"{start:%Y-%m-%dT%H:%M:%SZ}&endDateTime={end:%Y-%m-%dT%H:%M:%SZ}"
        )

    def _full(self) -> Iterator[Page]:
        today = self._today()
        _, link = self._delta_round(
            self.delta_path()
        )  # the position first: what changes next is in it
        series: set[str] = set()
        for page in self.client.pages(f"me/events?$top={PAGE}&{_KEY_EXPAND}"):
            items = page.get("value", [])
            series |= {str(i["id"]) for i in items if i.get("type") == "seriesMaster"}
            upserts = self._upserts(items)
            yield Page(changes=list(upserts.values()), token=None, last=False)
        yield Page(changes=[], token=encode_state(link, series, today), last=True)

    def _incremental(self, token: str) -> Iterator[Page]:
        link, series, made = decode_state(token)
        if (self._today() - made).days > REFRESH_DAYS:
            raise TokenExpired("The calendar window is old: reading it again.", "syncStateNotFound")  # fmt: skip
        entries, new_link = self._delta_round(link)
        singles: list[str] = []
        masters: list[str] = []
        removed: list[str] = []
        for entry in entries:
            item_id = str(entry["id"])
            if "@removed" in entry:
                removed.append(item_id)
            elif entry.get("seriesMasterId"):
                masters.append(str(entry["seriesMasterId"]))
            else:
                singles.append(item_id)
        changes: list[Upsert | Deleted] = []
        gone: set[str] = set()
        if removed:  # deleted, or changed outside the window: which one, by id
            for item_id, answer in zip(removed, self._get_each(removed, "$select=id,type,seriesMasterId"), strict=True):  # fmt: skip
                if isinstance(answer, NotFound):
                    gone.add(item_id)
                elif answer.get("seriesMasterId"):
                    masters.append(str(answer["seriesMasterId"]))
                else:
                    singles.append(item_id)
            known = sorted(series - set(masters))
            for item_id, answer in zip(known, self._get_each(known, "$select=id"), strict=True):
                if isinstance(answer, NotFound):
                    gone.add(item_id)
        wanted = list(dict.fromkeys(i for i in [*singles, *masters] if i not in gone))
        found = self.read(wanted)
        for item_id in wanted:
            if item_id in found:
                changes.append(found[item_id])
            else:
                gone.add(item_id)
        changes += [Deleted(i) for i in sorted(gone)]
        series = (series | {i for i, u in found.items() if u.fields.get("recurrence")}) - gone
        yield Page(changes=changes, token=encode_state(new_link, series, made), last=True)

    def _get_each(self, ids: Sequence[str], query: str) -> list[Any]:
        answers = self.client.batch(
            [{"method": "GET", "url": f"/me/events/{quote(i, safe='')}?{query}"} for i in ids]
        )
        for answer in answers:
            if isinstance(answer, SideError) and not isinstance(answer, NotFound):
                raise answer
        return answers

    def read(self, ids: Sequence[str]) -> dict[str, Upsert]:
        """Single events and series (with their exceptions) by id; missing ones are absent."""
        if not ids:
            return {}
        items = [a for a in self._get_each(ids, _KEY_EXPAND) if not isinstance(a, SideError)]
        return self._upserts(items)

    def _upserts(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Upsert]:
        until = self._until()
        masters = [i for i in items if i.get("type") == "seriesMaster"]
        listed = self._instances(masters, until)
        out: dict[str, Upsert] = {}
        for item in items:
            if item.get("type") not in (None, "singleInstance", "seriesMaster"):
                continue  # an instance: its series is the record
            item_id = str(item["id"])
            fields = event_to_vocab(item, listed.get(item_id, []), until)
            out[item_id] = Upsert(item_id, item.get("@odata.etag"), fields, convert.item_key(item))  # fmt: skip
        return out

    def _instances(
        self, masters: Sequence[Mapping[str, Any]], until: dt.datetime
    ) -> dict[str, list[dict[str, Any]]]:
        """Each series' instances from its first start (less a day) to `until` (or the
        range's end): the window of event-list-instances.md is required."""
        requests, ids = [], []
        for master in masters:
            first = _utc(master.get("start")) or until
            rng = (master.get("recurrence") or {}).get("range") or {}
            last = until
            if rng.get("type") == "endDate" and rng.get("endDate"):
                last = dt.datetime.combine(dt.date.fromisoformat(str(rng["endDate"])[:10]), dt.time(), dt.UTC) + dt.timedelta(days=2)  # fmt: skip
            window = f"startDateTime={first - dt.timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}&endDateTime={max(last, first):%Y-%m-%dT%H:%M:%SZ}"  # fmt: skip
            ids.append(str(master["id"]))
            requests.append({"method": "GET", "url": f"/me/events/{quote(str(master['id']), safe='')}/instances?{window}&$top=1000&$select=id,type,start,end,originalStart,seriesMasterId"})  # fmt: skip
        out: dict[str, list[dict[str, Any]]] = {}
        for master_id, answer in zip(ids, self.client.batch(requests), strict=True):
            if isinstance(answer, SideError):
                raise answer
            listed = list(answer.get("value", []))
            link = answer.get("@odata.nextLink")
            while link:
                page = self.client.get(link)
                listed += page.get("value", [])
                link = page.get("@odata.nextLink")
            out[master_id] = listed
        return out

    def find_by_key(self, keys: Sequence[str]) -> dict[str, Upsert]:
        requests = [
            {
                "method": "GET",
                "url": "/me/events?$filter="
                + quote(
                    f"singleValueExtendedProperties/Any(ep: ep/id eq '{convert.KEY_PROPERTY}' "
                    f"and ep/value eq '{key.replace(chr(39), chr(39) * 2)}')"
                )
                + f"&{_KEY_EXPAND}",
            }
            for key in keys
        ]
        found: dict[str, Upsert] = {}
        for key, answer in zip(keys, self.client.batch(requests), strict=True):
            if isinstance(answer, SideError):
                raise answer
            for upsert in self._upserts(answer.get("value", [])).values():
                if upsert.key == key and key not in found:
                    found[key] = upsert
        return found

    # --- writing ---------------------------------------------------------------------------

    def write(self, ops: Sequence[WriteOp]) -> list[Result]:
        self._reuse.forget()
        return write_grouped(KIND, ops, self._create, self._update, self._delete)

    def _create(self, _kind: str, ops: Sequence[CreateOp]) -> list[Result]:
        requests = []
        now = dt.datetime.now(dt.UTC)
        for op in ops:
            sent = without_past_invitations(op.fields, now)
            fields = {k: v for k, v in sent.items() if k not in OCCURRENCE_FIELDS}
            merged = {**{n: None for n in _TIME_FIELDS}, **fields}
            body = event_to_graph({**fields, "start": merged["start"]}, merged)
            body["singleValueExtendedProperties"] = [{"id": convert.KEY_PROPERTY, "value": op.key}]
            requests.append({"method": "POST", "url": "/me/events", "body": body})
        results: list[Result | None] = [None] * len(ops)
        written: dict[int, str] = {}
        for index, (op, answer) in enumerate(zip(ops, self.client.batch(requests), strict=True)):
            if isinstance(answer, SideError):
                results[index] = answer
            else:
                written[index] = str(answer["id"])
                results[index] = self._occurrences(written[index], op.fields, {})
        return self._read_back(written, results)

    def _update(self, _kind: str, ops: Sequence[UpdateOp]) -> list[Result]:
        current = self.read([op.id for op in ops])
        results: list[Result | None] = [None] * len(ops)
        requests, where = [], []
        for index, op in enumerate(ops):
            now = current.get(op.id)
            refused = update_refusal(op, now, "event")
            if refused is not None or now is None:
                results[index] = refused
                continue
            fields = changed(op.fields, now.fields)
            if fields:
                body = event_to_graph(fields, {**now.fields, **fields})
                headers = {"If-Match": now.version} if now.version else {}
                requests.append({"method": "PATCH", "url": f"/me/events/{quote(op.id, safe='')}", "body": body, "headers": headers})  # fmt: skip
                where.append(index)
        for index, answer in zip(where, self.client.batch(requests), strict=True):
            if isinstance(answer, SideError):
                results[index] = answer
        written: dict[int, str] = {}
        for index, op in enumerate(ops):
            if results[index] is None:
                before = dict(current[op.id].fields)
                if "recurrence" in changed(op.fields, before):
                    before = {}  # a new pattern drops the exceptions: apply them all again
                written[index] = op.id
                results[index] = self._occurrences(op.id, op.fields, before)
        return self._read_back(written, results)

    def _occurrences(self, event_id: str, fields: Mapping[str, Any], before: Mapping[str, Any]) -> SideError | None:  # fmt: skip
        """Apply the deleted / moved occurrences of `fields` not yet in `before`."""
        wanted_deleted = [d for d in fields.get("deleted_occurrences") or [] if d not in (before.get("deleted_occurrences") or [])]  # fmt: skip
        done = {(m["original_start"], m.get("start"), m.get("end")) for m in before.get("modified_occurrences") or []}  # fmt: skip
        wanted_moved = [m for m in fields.get("modified_occurrences") or [] if (m["original_start"], m.get("start"), m.get("end")) not in done]  # fmt: skip
        if wanted_deleted or wanted_moved:
            return self._write_occurrences(event_id, fields, wanted_deleted, wanted_moved)
        return None

    def _read_back(self, written: Mapping[int, str], results: list[Result | None]) -> list[Result]:
        """Read the events written without error back, together (in `$batch`es of 20, not one
        GET each): each Written carries what Graph stored (the link's base)."""
        done = {i: event_id for i, event_id in written.items() if results[i] is None}
        fresh = self.read(list(done.values()))
        for index, event_id in done.items():
            found = fresh.get(event_id)
            results[index] = (
                Written(event_id, found.version, found.fields)
                if found is not None
                else NotFound("The event is gone.", "ErrorItemNotFound")
            )
        return [r if r is not None else NotFound("not updated") for r in results]

    def _write_occurrences(
        self,
        event_id: str,
        fields: Mapping[str, Any],
        deleted: Sequence[str],
        moved: Sequence[Mapping[str, Any]],
    ) -> SideError | None:
        got = self._get_each([event_id], "$select=id,type,start,recurrence,originalStartTimeZone")
        master = got[0]
        if isinstance(master, SideError):
            return master
        ids = {
            _z(_moment(i["originalStart"])): str(i["id"])
            for i in self._instances([master], self._until()).get(event_id, [])
            if i.get("originalStart")
        }
        zone = fields.get("timezone") or event_zone(master)
        requests = []
        for change in moved:
            target = ids.get(_z(_moment(change["original_start"])))
            if target is None:
                return Invalid(f"{change['original_start']} is not an occurrence of the series.", "ErrorItemNotFound")  # fmt: skip
            body: dict[str, Any] = {"start": _local(change["start"], zone), "end": _local(change["end"], zone)}  # fmt: skip
            if change.get("subject"):
                body["subject"] = change["subject"]
            if change.get("location"):
                body["location"] = {"displayName": change["location"]}
            requests.append({"method": "PATCH", "url": f"/me/events/{quote(target, safe='')}", "body": body})  # fmt: skip
        for original in deleted:
            target = ids.get(_z(_moment(original)))
            if target is not None:  # not listed: cancelled already
                requests.append({"method": "DELETE", "url": f"/me/events/{quote(target, safe='')}"})  # fmt: skip
        for answer in self.client.batch(requests):
            if isinstance(answer, SideError) and not isinstance(answer, NotFound):
                return answer
        return None

    def _delete(self, _kind: str, ops: Sequence[DeleteOp]) -> list[Result]:
        quiet = [op.id for op in ops if op.quiet]
        meetings = self._meetings(quiet) if quiet else set()
        results: list[Result | None] = [None] * len(ops)
        requests, where = [], []
        for index, op in enumerate(ops):
            if op.id in meetings:
                results[index] = Invalid(
                    "Microsoft Graph cannot remove a meeting you organize without sending its "
                    "attendees a cancellation, so it stays in your calendar.",
                    "quiet_delete_unsupported",
                )
                continue
            headers = {"If-Match": op.version} if op.version else {}
            requests.append({"method": "DELETE", "url": f"/me/events/{quote(op.id, safe='')}", "headers": headers})  # fmt: skip
            where.append(index)
        for index, answer in zip(where, self.client.batch(requests), strict=True):
            if isinstance(answer, SideError) and not isinstance(answer, NotFound):
                results[index] = answer
            else:
                results[index] = Written(ops[index].id, None)
        return [r if r is not None else NotFound("not deleted") for r in results]

    def _meetings(self, ids: Sequence[str]) -> set[str]:
        """Which of these events are meetings the user organizes with other attendees."""
        out = set()
        for item_id, answer in zip(ids, self._get_each(ids, "$select=id,isOrganizer,attendees"), strict=True):  # fmt: skip
            if isinstance(answer, SideError):
                continue
            if answer.get("isOrganizer", True) and answer.get("attendees"):
                out.add(item_id)
        return out
