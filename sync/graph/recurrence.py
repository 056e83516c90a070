"""Graph's patternedRecurrence ⇄ the vocabulary's recurrence dict (`RECURRENCE_DOC`), and the
original starts of a series' occurrences. Pure functions.

Graph (resources/patternedrecurrence.md, recurrencepattern.md, recurrencerange.md): a
`pattern` {type daily | weekly | absoluteMonthly | relativeMonthly | absoluteYearly |
relativeYearly, interval, daysOfWeek (lower-case names), firstDayOfWeek, dayOfMonth, month,
index first…last} and a `range` {type endDate | noEnd | numbered, startDate, endDate,
numberOfOccurrences, recurrenceTimeZone}. The vocabulary speaks Exchange's names (EWS's
"Weekday" for Monday–Friday in a relative pattern), so a relative pattern on every weekday
is one name there and five days here. The zone is a Windows name, as Graph reports zones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sync import timezones
from sync.mailbox import ews_recurrence

TYPES = {
    "daily": "daily",
    "weekly": "weekly",
    "absolute_monthly": "absoluteMonthly",
    "relative_monthly": "relativeMonthly",
    "absolute_yearly": "absoluteYearly",
    "relative_yearly": "relativeYearly",
}
TYPES_BACK = {v: k for k, v in TYPES.items()}
RANGES = {"no_end": "noEnd", "end_date": "endDate", "numbered": "numbered"}
RANGES_BACK = {v: k for k, v in RANGES.items()}
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
GROUPS = {"Day": DAYS, "Weekday": DAYS[:5], "WeekendDay": DAYS[5:]}
"""EWS's day groups (DayOfWeekType) as the days Graph lists instead."""
INDEXES = ("First", "Second", "Third", "Fourth", "Last")


def _graph_days(names: Any) -> list[str]:
    out: list[str] = []
    for name in names or []:
        for day in GROUPS.get(str(name), (str(name),)):
            if day.lower() not in out:
                out.append(day.lower())
    return sorted(out, key=lambda d: DAYS.index(d.capitalize()))


def _vocab_days(names: Any, relative: bool) -> list[str]:
    days = sorted(
        {str(n).capitalize() for n in names or []}, key=lambda d: DAYS.index(d)
    )  # fmt: skip
    if relative:
        for group, members in GROUPS.items():
            if tuple(days) == members:
                return [group]
    return days


def to_graph(rec: Mapping[str, Any] | None, zone: str | None, first_day: dt.date) -> dict[str, Any] | None:  # fmt: skip
    """The patternedRecurrence of a vocabulary recurrence; the range starts on `first_day` when
    the dict does not say; `zone` (IANA or Windows) becomes recurrenceTimeZone."""
    norm = ews_recurrence.normalize(dict(rec) if rec else None)
    if norm is None:
        return None
    p, r = norm["pattern"], norm["range"]
    relative = p["type"].startswith("relative")
    pattern: dict[str, Any] = {"type": TYPES[p["type"]], "interval": int(p.get("interval") or 1)}
    if p["type"] == "weekly":
        pattern["daysOfWeek"] = _graph_days(p.get("weekdays"))
        pattern["firstDayOfWeek"] = str(p.get("first_day_of_week") or "Sunday").lower()
    if relative:
        pattern["daysOfWeek"] = _graph_days(p.get("weekdays"))
        pattern["index"] = str(p.get("week_index") or "First").lower()
    if p["type"].startswith("absolute"):
        pattern["dayOfMonth"] = int(p.get("day_of_month") or 1)
    if p["type"].endswith("_yearly"):
        pattern["month"] = int(p.get("month") or 1)
    rng: dict[str, Any] = {
        "type": RANGES[r["type"]],
        "startDate": r.get("start") or first_day.isoformat(),
        "recurrenceTimeZone": timezones.windows_name(zone) or "UTC",
    }
    if r["type"] == "end_date":
        rng["endDate"] = r["end"]
    if r["type"] == "numbered":
        rng["numberOfOccurrences"] = int(r["count"] or 1)
    return {"pattern": pattern, "range": rng}


def from_graph(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The vocabulary recurrence (normalized) of a patternedRecurrence; None for none."""
    if not value or not value.get("pattern"):
        return None
    p, r = value["pattern"], value.get("range") or {}
    kind = TYPES_BACK.get(str(p.get("type")))
    if kind is None:
        return None
    relative = kind.startswith("relative")
    index = str(p.get("index") or "first").capitalize()
    pattern = {
        "type": kind,
        "interval": int(p.get("interval") or 1),
        "weekdays": _vocab_days(p.get("daysOfWeek"), relative),
        "first_day_of_week": str(p.get("firstDayOfWeek") or "sunday").capitalize(),
        "day_of_month": int(p["dayOfMonth"]) if p.get("dayOfMonth") else None,
        "week_index": index if index in INDEXES else "First",
        "month": int(p["month"]) if p.get("month") else None,
    }
    range_type = RANGES_BACK.get(str(r.get("type")), "no_end")
    rng = {
        "type": range_type,
        "start": _day(r.get("startDate")),
        "end": _day(r.get("endDate")) if range_type == "end_date" else None,
        "count": int(r.get("numberOfOccurrences") or 0) or None,
    }
    return ews_recurrence.normalize({"pattern": pattern, "range": rng})


def zone_of(value: Mapping[str, Any] | None) -> str | None:
    """The recurrenceTimeZone of a patternedRecurrence (a Windows or IANA name), if any."""
    if not value:
        return None
    return (value.get("range") or {}).get("recurrenceTimeZone") or None


def _day(value: Any) -> str | None:
    text = str(value or "")[:10]
    return text if text and not text.startswith("0001") else None


def original_starts(
    rec: Mapping[str, Any], first_start: dt.datetime, zone: str | None, until: dt.datetime
) -> list[dt.datetime]:
    """The UTC starts of a series' occurrences up to `until`: the pattern's dates in the
    series' zone at the wall-clock time of `first_start` (so a series crossing a DST change
    keeps its local time)."""
    info = timezones.zone_info(zone) or dt.UTC
    local = first_start.astimezone(info)
    norm = ews_recurrence.normalize(dict(rec))
    if norm is None:
        return []
    if not norm["range"]["start"]:
        norm["range"]["start"] = local.date().isoformat()
    out = []
    for day in ews_recurrence.occurrence_dates(norm):
        moment = dt.datetime.combine(day, local.time(), info).astimezone(dt.UTC)
        if moment > until:
            break
        out.append(moment)
    return out
