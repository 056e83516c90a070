"""The sandbox Graph's calendar: recurring series, their instances, exceptions and cancelled
occurrences, and the calendar view's delta.

A series master is stored as sent (start/end in UTC, `recurrence` as patternedRecurrence). Its
instances are computed, never stored: the pattern's dates (recurrencepattern.md) within its
range (recurrencerange.md), at the wall-clock time of the master's start in the range's
`recurrenceTimeZone` (else the zone the start was given in), so a series keeps its local time
across DST. An instance's id is "<master id>.<local date>" (OCCURRENCE_MARK). PATCH of an
instance stores an exception on the master (`_exceptions`, by that date); DELETE of one
records it as cancelled (`_cancelled`). Either changes the master, so the calendar view's delta
reports the series' instances again. A new `recurrence` drops the exceptions, as Exchange does.
"""

from __future__ import annotations

import calendar as cal
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sandbox.graph.schema import GraphError

OCCURRENCE_MARK = "."
"""Between a series id and an occurrence's date in the occurrence's id: not in the
URL-safe base64 alphabet our ids use."""
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
MAX_INSTANCES = 1000
"""Occurrences computed per series at most (a series without an end)."""
EXCEPTION_FIELDS = {
    "subject", "body", "start", "end", "location", "locations", "isAllDay", "showAs",
    "attendees", "importance", "sensitivity", "isReminderOn", "reminderMinutesBeforeStart",
    "categories", "responseRequested",
}  # fmt: skip
"""What an exception may override (every writable event property but the recurrence)."""


def zone(name: str | None) -> ZoneInfo:
    """A zone given by IANA or Windows name, as Graph accepts both (dateTimeTimeZone.md)."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    try:
        from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

        return ZoneInfo(MS_TIMEZONE_TO_IANA_MAP[name])
    except (ImportError, KeyError, ZoneInfoNotFoundError, ValueError):
        raise GraphError(400, "ErrorTimeZoneNotSupportedException", "A valid TimeZone value must be specified.") from None  # fmt: skip


def moment(value: dict[str, Any]) -> datetime:
    """A stored (UTC) dateTimeTimeZone as an aware datetime."""
    return datetime.fromisoformat(str(value["dateTime"])[:19]).replace(tzinfo=UTC)


def utc_dtz(value: datetime) -> dict[str, str]:
    return {"dateTime": value.strftime("%Y-%m-%dT%H:%M:%S") + ".0000000", "timeZone": "UTC"}


def to_utc(value: Any) -> dict[str, str]:
    """A dateTimeTimeZone in its zone → the same moment in UTC (how the sandbox stores it)."""
    if not isinstance(value, dict) or "dateTime" not in value:
        raise GraphError(400, "RequestBodyRead", "A dateTimeTimeZone needs dateTime and timeZone.")  # fmt: skip
    try:
        local = datetime.fromisoformat(str(value["dateTime"]).rstrip("Z")[:26])
    except ValueError:
        raise GraphError(400, "RequestBodyRead", "The dateTime is not valid.") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone(value.get("timeZone")))
    return utc_dtz(local.astimezone(UTC))


def series_zone(master: dict[str, Any]) -> ZoneInfo:
    rng = (master.get("recurrence") or {}).get("range") or {}
    return zone(rng.get("recurrenceTimeZone") or master.get("originalStartTimeZone"))


def _nth(year: int, month: int, days: list[int], which: int) -> date | None:
    count = cal.monthrange(year, month)[1]
    hits = [date(year, month, d) for d in range(1, count + 1) if date(year, month, d).weekday() in days]  # fmt: skip
    if not hits:
        return None
    if which == -1:
        return hits[-1]
    return hits[which - 1] if which <= len(hits) else None


def _clamp(year: int, month: int, day: int) -> date:
    return date(year, month, min(max(day, 1), cal.monthrange(year, month)[1]))


def _dates(pattern: dict[str, Any], start: date) -> Iterator[date]:
    """The pattern's days from `start` on, unbounded."""
    kind = pattern.get("type")
    interval = max(1, int(pattern.get("interval") or 1))
    days = sorted({DAYS.index(str(d).lower()) for d in pattern.get("daysOfWeek") or []}) or [start.weekday()]  # fmt: skip
    which = INDEX.get(str(pattern.get("index") or "first").lower(), 1)
    if kind == "daily":
        day = start
        while True:
            yield day
            day += timedelta(days=interval)
    elif kind == "weekly":
        first = DAYS.index(str(pattern.get("firstDayOfWeek") or "sunday").lower())
        week = start - timedelta(days=(start.weekday() - first) % 7)
        while True:
            for offset in range(7):
                day = week + timedelta(days=offset)
                if day >= start and day.weekday() in days:
                    yield day
            week += timedelta(weeks=interval)
    elif kind in ("absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly"):
        yearly = kind.endswith("Yearly")
        step = 12 * interval if yearly else interval
        month0 = start.year * 12 + (int(pattern.get("month") or start.month) if yearly else start.month) - 1  # fmt: skip
        while True:
            year, month = divmod(month0, 12)
            month += 1
            if kind.startswith("absolute"):
                found: date | None = _clamp(year, month, int(pattern.get("dayOfMonth") or start.day))  # fmt: skip
            else:
                found = _nth(year, month, days, which)
            if found is not None and found >= start:
                yield found
            month0 += step
    else:
        raise GraphError(400, "ErrorInvalidRecurrencePattern", f"The recurrence pattern type '{kind}' is not valid.")  # fmt: skip


def check_recurrence(value: Any) -> None:
    """Refuse a patternedRecurrence Graph would refuse (missing pattern, range or startDate)."""
    if value is None:
        return
    if not isinstance(value, dict) or not isinstance(value.get("pattern"), dict) or not isinstance(value.get("range"), dict):  # fmt: skip
        raise GraphError(400, "ErrorInvalidRequest", "A recurrence needs a pattern and a range.")
    rng = value["range"]
    if rng.get("type") not in ("endDate", "noEnd", "numbered") or not rng.get("startDate"):
        raise GraphError(400, "ErrorInvalidRequest", "The recurrence range needs a type and a startDate.")  # fmt: skip
    if rng["type"] == "endDate" and not rng.get("endDate"):
        raise GraphError(400, "ErrorInvalidRequest", "An endDate range needs an endDate.")
    if rng["type"] == "numbered" and int(rng.get("numberOfOccurrences") or 0) < 1:
        raise GraphError(400, "ErrorInvalidRequest", "A numbered range needs numberOfOccurrences.")  # fmt: skip
    next(iter(_dates(value["pattern"], date.fromisoformat(str(rng["startDate"])[:10]))), None)


def occurrence_starts(master: dict[str, Any], until: datetime | None = None) -> list[tuple[str, datetime]]:  # fmt: skip
    """(local date stamp, UTC start) of every occurrence of a series, cancelled ones too."""
    rec = master.get("recurrence") or {}
    rng = rec.get("range") or {}
    tz = series_zone(master)
    first = moment(master["start"]).astimezone(tz)
    start_day = date.fromisoformat(str(rng.get("startDate") or first.date())[:10])
    last = date.fromisoformat(str(rng["endDate"])[:10]) if rng.get("type") == "endDate" else None
    count = int(rng.get("numberOfOccurrences") or 0) if rng.get("type") == "numbered" else 0
    out: list[tuple[str, datetime]] = []
    for day in _dates(rec.get("pattern") or {}, start_day):
        if (last is not None and day > last) or (count and len(out) >= count) or len(out) >= MAX_INSTANCES:  # fmt: skip
            break
        when = datetime.combine(day, first.time().replace(tzinfo=None), tz).astimezone(UTC)
        if until is not None and when > until:
            break
        out.append((day.strftime("%Y%m%d"), when))
    return out


def instances(master: dict[str, Any], until: datetime | None = None) -> list[dict[str, Any]]:
    """The occurrences and exceptions of a series (not the cancelled ones), in date order."""
    length = moment(master["end"]) - moment(master["start"])
    cancelled = set(master.get("_cancelled") or [])
    exceptions = master.get("_exceptions") or {}
    base = {
        k: v
        for k, v in master.items()
        if not k.startswith("_")
        and k not in ("recurrence", "singleValueExtendedProperties", "extensions")  # fmt: skip
    }
    out = []
    for stamp, start in occurrence_starts(master, until):
        if stamp in cancelled:
            continue
        item = {
            **base,
            "id": f"{master['id']}{OCCURRENCE_MARK}{stamp}",
            "type": "occurrence",
            "seriesMasterId": master["id"],
            "recurrence": None,
            "start": utc_dtz(start),
            "end": utc_dtz(start + length),
            "originalStart": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "iCalUId": f"{master.get('iCalUId', '')}{stamp}",
            "_seq": master.get("_seq", 0),
        }
        if stamp in exceptions:
            item.update(exceptions[stamp])
            item["type"] = "exception"
        out.append(item)
    return out


def split_id(item_id: str) -> tuple[str, str] | None:
    """(master id, date stamp) of an occurrence id, else None."""
    if OCCURRENCE_MARK not in item_id:
        return None
    master, _, stamp = item_id.partition(OCCURRENCE_MARK)
    return master, stamp


def find_instance(master: dict[str, Any], stamp: str) -> dict[str, Any] | None:
    return next((i for i in instances(master) if i["id"].endswith(OCCURRENCE_MARK + stamp)), None)


def make_exception(master: dict[str, Any], stamp: str, body: dict[str, Any]) -> dict[str, Any]:
    """The master with the occurrence of `stamp` changed by `body` (event-update.md: an
    occurrence cannot be moved to or before the day of the previous occurrence, nor to or after
    the day of the next one: ErrorOccurrenceCrossingBoundary)."""
    for name in body:
        if name in ("recurrence", "type", "seriesMasterId", "originalStart"):
            raise GraphError(400, "ErrorInvalidPropertyUpdateSentToServer", f"The property '{name}' can't be updated on an occurrence of a series.")  # fmt: skip
        if name not in EXCEPTION_FIELDS and not name.startswith("@odata."):
            raise GraphError(400, "ErrorInvalidPropertyUpdateSentToServer", f"The property '{name}' can't be set on an occurrence.")  # fmt: skip
    starts = occurrence_starts(master)
    stamps = [s for s, _ in starts]
    if stamp not in stamps or stamp in (master.get("_cancelled") or []):
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
    change = {k: v for k, v in body.items() if not k.startswith("@odata.")}
    for key in ("start", "end"):
        if key in change:
            change[key] = to_utc(change[key])
    current = dict((master.get("_exceptions") or {}).get(stamp) or {})
    current.update(change)
    if "start" in current:
        tz = series_zone(master)
        new_day = moment(current["start"]).astimezone(tz).date()
        position = stamps.index(stamp)
        before = _day(stamps[position - 1]) if position > 0 else None
        after = _day(stamps[position + 1]) if position + 1 < len(stamps) else None
        if (before is not None and new_day <= before) or (after is not None and new_day >= after):
            raise GraphError(400, "ErrorOccurrenceCrossingBoundary", "The occurrence can't be moved to or beyond the day of an adjacent occurrence.")  # fmt: skip
    current["changeKey"] = secrets.token_urlsafe(12)
    exceptions = dict(master.get("_exceptions") or {})
    exceptions[stamp] = current
    return {**master, "_exceptions": exceptions}


def _day(stamp: str) -> date:
    return date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))


def overlaps(item: dict[str, Any], start: datetime, end: datetime) -> bool:
    return moment(item["start"]) < end and moment(item["end"]) > start


def view(events: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The calendar view: single events and series instances overlapping [start, end)."""
    out: list[dict[str, Any]] = []
    for item in events:
        if item.get("type") == "seriesMaster":
            out += [i for i in instances(item, end) if overlaps(i, start, end)]
        elif overlaps(item, start, end):
            out.append(item)
    out.sort(key=lambda i: (i["start"]["dateTime"], i["id"]))
    return out
