"""Recurrence patterns: `recurringappointmentmasters` columns ⇄ the mailbox's RECURRENCE_DOC.

The canonical form is the mailbox dict (sync/mailbox/fields.py RECURRENCE_DOC) with only the
keys its pattern type uses, so both sides compare equal when they mean the same series.
Column values come from the recurringappointmentmaster table reference: recurrencepatterntype
0 daily, 1 weekly, 2 monthly, 3 yearly; daysofweekmask Sunday=1 … Saturday=64; instance 1–4 and
5 (last); patternendtype 1 no end, 2 a number of occurrences, 3 an end date.

`expand` lists a series' occurrences in its time zone, so a series crossing a DST change keeps
its wall-clock time (what the mailbox and the CRM both do).

`patternstartdate` and `patternenddate` are days here (`YYYY-MM-DD`). In Dataverse they are
UserLocal columns with Format DateOnly (recurringappointmentmaster.md): the CRM side writes a day
as its midnight in the series' own zone (its `utcconversiontimezonecode`, the zone the service
expands it in; the user's zone when the series names none it knows) and reads it back in that
zone (sync/crm/side.py OWN_ZONE, sync/crm/metadata.py), so the first ten characters of what it
reads are the day. `firstdayofweek` is valid for create only (same page): the CRM side leaves
it out of updates. The series' zone itself is part of the kind's recurrence value
(sync/kinds/appointments.py), not of these columns' dict.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sync.kinds.base import norm_date, parse_moment

DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
WEEK_INDEX = {1: "First", 2: "Second", 3: "Third", 4: "Fourth", 5: "Last"}
WEEK_INDEX_CODE = {v: k for k, v in WEEK_INDEX.items()}
WEEKDAYS_MASK = 0b0111110  # Monday–Friday
COLUMNS = (
    "recurrencepatterntype",
    "interval",
    "daysofweekmask",
    "dayofmonth",
    "instance",
    "monthofyear",
    "isnthmonthly",
    "isnthyearly",
    "isweekdaypattern",
    "firstdayofweek",
    "patternstartdate",
    "patternendtype",
    "occurrences",
    "patternenddate",
)


def mask_to_days(mask: int | None) -> list[str]:
    mask = mask or 0
    return [day for i, day in enumerate(DAYS) if mask & (1 << i)]


def days_to_mask(days: list[str] | None) -> int:
    return sum(1 << DAYS.index(day) for day in (days or []) if day in DAYS)


def _int(value: Any, default: int | None = None) -> int | None:
    return default if value in (None, "") else int(value)


def from_columns(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The RECURRENCE_DOC dict of a recurringappointmentmasters row (None if no pattern)."""
    kind = _int(row.get("recurrencepatterntype"))
    if kind is None:
        return None
    interval = _int(row.get("interval"), 1) or 1
    mask = _int(row.get("daysofweekmask"), 0) or 0
    pattern: dict[str, Any]
    if kind == 0 and row.get("isweekdaypattern"):
        pattern = {"type": "weekly", "interval": 1, "weekdays": mask_to_days(WEEKDAYS_MASK),
                   "first_day_of_week": DAYS[_int(row.get("firstdayofweek"), 0) or 0]}  # fmt: skip
    elif kind == 0:
        pattern = {"type": "daily", "interval": interval}
    elif kind == 1:
        pattern = {"type": "weekly", "interval": interval, "weekdays": mask_to_days(mask),
                   "first_day_of_week": DAYS[_int(row.get("firstdayofweek"), 0) or 0]}  # fmt: skip
    elif kind == 2 and row.get("isnthmonthly"):
        pattern = {"type": "relative_monthly", "interval": interval,
                   "weekdays": mask_to_days(mask),
                   "week_index": WEEK_INDEX[_int(row.get("instance"), 1) or 1]}  # fmt: skip
    elif kind == 2:
        pattern = {"type": "absolute_monthly", "interval": interval,
                   "day_of_month": _int(row.get("dayofmonth"), 1)}  # fmt: skip
    elif kind == 3 and row.get("isnthyearly"):
        pattern = {"type": "relative_yearly", "interval": 1, "weekdays": mask_to_days(mask),
                   "week_index": WEEK_INDEX[_int(row.get("instance"), 1) or 1],
                   "month": _int(row.get("monthofyear"), 1)}  # fmt: skip
    elif kind == 3:
        pattern = {"type": "absolute_yearly", "interval": 1,
                   "day_of_month": _int(row.get("dayofmonth"), 1),
                   "month": _int(row.get("monthofyear"), 1)}  # fmt: skip
    else:
        raise ValueError(f"unknown recurrencepatterntype {kind}")
    end_type = _int(row.get("patternendtype"), 1)
    start = norm_date(row.get("patternstartdate"))
    if end_type == 2:
        rng = {"type": "numbered", "start": start, "end": None,
               "count": _int(row.get("occurrences"))}  # fmt: skip
    elif end_type == 3:
        rng = {"type": "end_date", "start": start, "end": norm_date(row.get("patternenddate")),
               "count": None}  # fmt: skip
    else:
        rng = {"type": "no_end", "start": start, "end": None, "count": None}
    return {"pattern": pattern, "range": rng}


def to_columns(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """The recurringappointmentmasters columns for a RECURRENCE_DOC dict."""
    if not doc:
        return {}
    pattern, rng = doc["pattern"], doc["range"]
    kind = pattern["type"]
    cols: dict[str, Any] = {
        "interval": int(pattern.get("interval") or 1),
        "isnthmonthly": kind == "relative_monthly",
        "isnthyearly": kind == "relative_yearly",
        "isweekdaypattern": False,
        "daysofweekmask": None,
        "dayofmonth": None,
        "instance": None,
        "monthofyear": None,
        "firstdayofweek": None,
    }
    if kind == "daily":
        cols["recurrencepatterntype"] = 0
    elif kind == "weekly":
        cols["recurrencepatterntype"] = 1
        cols["daysofweekmask"] = days_to_mask(pattern.get("weekdays"))
        cols["firstdayofweek"] = DAYS.index(pattern.get("first_day_of_week") or "Sunday")
    elif kind in ("absolute_monthly", "relative_monthly"):
        cols["recurrencepatterntype"] = 2
    elif kind in ("absolute_yearly", "relative_yearly"):
        cols["recurrencepatterntype"] = 3
        cols["monthofyear"] = int(pattern["month"])
    else:
        raise ValueError(f"unknown pattern type {kind}")
    if kind.startswith("absolute_"):
        cols["dayofmonth"] = int(pattern["day_of_month"])
    if kind.startswith("relative_"):
        cols["daysofweekmask"] = days_to_mask(pattern.get("weekdays"))
        cols["instance"] = WEEK_INDEX_CODE[pattern["week_index"]]
    cols["patternstartdate"] = rng.get("start")
    cols["patternendtype"] = {"no_end": 1, "numbered": 2, "end_date": 3}[rng["type"]]
    cols["occurrences"] = rng.get("count") if rng["type"] == "numbered" else None
    cols["patternenddate"] = rng.get("end") if rng["type"] == "end_date" else None
    return cols


def normalize(doc: Any) -> dict[str, Any] | None:
    """The canonical form of a mailbox RECURRENCE_DOC dict (same keys as `from_columns`)."""
    if not doc:
        return None
    return from_columns(to_columns(doc))


# --- expansion -------------------------------------------------------------------------------


def _nth_weekday(year: int, month: int, weekdays: list[str], index: str) -> date | None:
    wanted = {(DAYS.index(d) - 1) % 7 for d in weekdays}  # Python: Monday=0
    days = [
        date(year, month, d)
        for d in range(1, calendar.monthrange(year, month)[1] + 1)
        if date(year, month, d).weekday() in wanted
    ]
    if not days:
        return None
    if index == "Last":
        return days[-1]
    n = WEEK_INDEX_CODE[index] - 1
    return days[n] if n < len(days) else None


def _dates(doc: Mapping[str, Any], first: date) -> Any:
    """Occurrence dates of the pattern from `first` on (unbounded generator)."""
    pattern = doc["pattern"]
    kind, interval = pattern["type"], int(pattern.get("interval") or 1)
    if kind == "daily":
        day = first
        while True:
            yield day
            day += timedelta(days=interval)
    elif kind == "weekly":
        wanted = {(DAYS.index(d) - 1) % 7 for d in pattern.get("weekdays") or []}
        week_start = first - timedelta(days=first.weekday())
        while True:
            for offset in range(7):
                day = week_start + timedelta(days=offset)
                if day >= first and day.weekday() in wanted:
                    yield day
            week_start += timedelta(weeks=interval)
    else:
        months = interval if kind.endswith("monthly") else 12
        year, month = first.year, first.month
        if kind.endswith("yearly"):
            month = int(pattern["month"])
        while True:
            if kind.startswith("absolute_"):
                last = calendar.monthrange(year, month)[1]
                day_or_none: date | None = date(
                    year, month, min(int(pattern["day_of_month"]), last)
                )
            else:
                day_or_none = _nth_weekday(year, month, pattern["weekdays"], pattern["week_index"])
            if day_or_none is not None and day_or_none >= first:
                yield day_or_none
            month += months
            year, month = year + (month - 1) // 12, (month - 1) % 12 + 1


def expand(
    doc: Mapping[str, Any], start: Any, timezone: str = "UTC", limit: int = 500
) -> list[datetime]:
    """Occurrence starts (UTC) of a series whose first occurrence starts at `start`, keeping
    the wall-clock time of `start` in `timezone` on every occurrence."""
    zone = ZoneInfo(timezone or "UTC")
    first_moment = parse_moment(start)
    if first_moment is None:
        return []
    local = first_moment.astimezone(zone)
    rng = doc["range"]
    first_day = date.fromisoformat(rng["start"]) if rng.get("start") else local.date()
    end_day = date.fromisoformat(rng["end"]) if rng.get("end") else None
    count = rng.get("count") if rng["type"] == "numbered" else None
    out: list[datetime] = []
    for day in _dates(doc, first_day):
        if end_day is not None and day > end_day:
            break
        if len(out) >= (count or limit):
            break
        wall = datetime.combine(day, local.timetz().replace(tzinfo=None)).replace(tzinfo=zone)
        out.append(wall.astimezone(UTC))
    return out
