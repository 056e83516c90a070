"""Recurrence: exchangelib's `Recurrence` ⇄ the `RECURRENCE_DOC` dict, and occurrence expansion.

Expansion exists because EWS addresses one occurrence of a series by its 1-based instance index
(`OccurrenceItemId`), while the vocabulary names occurrences by their original start: to delete or
move "the occurrence of 14 March" we count the occurrences before it, the way Exchange does.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from exchangelib.ewsdatetime import EWSDate
from exchangelib.fields import MONTHS, WEEK_NUMBERS, WEEKDAY_NAMES, WEEKDAYS
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

from sync.mailbox.fields import OCCURRENCE_FIELDS

_PATTERN_KEYS: dict[str, tuple[str, ...]] = {
    "daily": ("interval",),
    "weekly": ("interval", "weekdays", "first_day_of_week"),
    "absolute_monthly": ("interval", "day_of_month"),
    "relative_monthly": ("interval", "weekdays", "week_index"),
    "absolute_yearly": ("interval", "day_of_month", "month"),
    "relative_yearly": ("interval", "weekdays", "week_index", "month"),
}


def _name(value: Any, names: tuple[str, ...]) -> str:
    """exchangelib enum values are 1-based ints once parsed, names when set by hand."""
    return names[value - 1] if isinstance(value, int) else str(value)


def _names(values: Any, names: tuple[str, ...]) -> list[str]:
    if values is None:
        return []
    if isinstance(values, int | str):
        values = [values]
    return [_name(v, names) for v in values]


def _month(value: Any) -> int:
    return value if isinstance(value, int) else MONTHS.index(value) + 1


def normalize(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    """The canonical form of a recurrence dict (only the keys its pattern uses), for comparing."""
    if not rec:
        return None
    pattern = dict(rec["pattern"])
    kind = pattern["type"]
    out: dict[str, Any] = {"type": kind}
    for key in _PATTERN_KEYS[kind]:
        value = pattern.get(key)
        if key == "interval":
            value = int(value or 1)
        elif key == "weekdays":
            order = {name: i for i, name in enumerate(WEEKDAYS)}
            value = sorted(value or [], key=lambda n: order.get(n, 99))
        elif key == "first_day_of_week":
            value = value or "Sunday"
        elif key in ("day_of_month", "month"):
            value = int(value) if value is not None else None
        out[key] = value
    if kind.endswith("_yearly"):
        out["interval"] = 1
    rng = dict(rec.get("range") or {})
    rng_out = {
        "type": rng.get("type", "no_end"),
        "start": rng.get("start"),
        "end": rng.get("end") if rng.get("type") == "end_date" else None,
        "count": int(rng["count"]) if rng.get("type") == "numbered" and rng.get("count") else None,
    }
    return {"pattern": out, "range": rng_out}


def to_vocab(rec: Recurrence | None) -> dict[str, Any] | None:
    """The RECURRENCE_DOC dict of an exchangelib recurrence (None for a single item)."""
    if rec is None or rec.pattern is None:
        return None
    p = rec.pattern
    pattern: dict[str, Any]
    if isinstance(p, DailyPattern):
        pattern = {"type": "daily", "interval": p.interval}
    elif isinstance(p, WeeklyPattern):
        pattern = {
            "type": "weekly",
            "interval": p.interval,
            "weekdays": _names(p.weekdays, WEEKDAY_NAMES),
            "first_day_of_week": _name(p.first_day_of_week or 7, WEEKDAY_NAMES),
        }
    elif isinstance(p, AbsoluteMonthlyPattern):
        pattern = {
            "type": "absolute_monthly",
            "interval": p.interval,
            "day_of_month": p.day_of_month,
        }
    elif isinstance(p, RelativeMonthlyPattern):
        pattern = {
            "type": "relative_monthly",
            "interval": p.interval,
            "weekdays": _names(p.weekday, WEEKDAYS),
            "week_index": _name(p.week_number, WEEK_NUMBERS),
        }
    elif isinstance(p, AbsoluteYearlyPattern):
        pattern = {
            "type": "absolute_yearly",
            "day_of_month": p.day_of_month,
            "month": _month(p.month),
        }
    elif isinstance(p, RelativeYearlyPattern):
        pattern = {
            "type": "relative_yearly",
            "weekdays": _names(p.weekday, WEEKDAYS),
            "week_index": _name(p.week_number, WEEK_NUMBERS),
            "month": _month(p.month),
        }
    else:  # a task regeneration pattern: not part of the vocabulary
        return None
    b = rec.boundary
    rng: dict[str, Any] = {"type": "no_end", "start": None, "end": None, "count": None}
    if b is not None:
        rng["start"] = _iso_date(b.start)
        if isinstance(b, EndDatePattern):
            rng.update(type="end_date", end=_iso_date(b.end))
        elif isinstance(b, NumberedPattern):
            rng.update(type="numbered", count=b.number)
    return normalize({"pattern": pattern, "range": rng})


def _iso_date(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    return str(value.isoformat())


def _ews_date(value: str) -> EWSDate:
    d = dt.date.fromisoformat(value[:10])
    return EWSDate(d.year, d.month, d.day)


def from_vocab(rec: dict[str, Any] | None, default_start: dt.date) -> Recurrence | None:
    """The exchangelib recurrence for a RECURRENCE_DOC dict; the range starts on `default_start`
    when the dict does not say."""
    norm = normalize(rec)
    if norm is None:
        return None
    p = norm["pattern"]
    kind = p["type"]
    pattern: Any
    if kind == "daily":
        pattern = DailyPattern(interval=p["interval"])
    elif kind == "weekly":
        pattern = WeeklyPattern(
            interval=p["interval"],
            weekdays=list(p["weekdays"]),
            first_day_of_week=p["first_day_of_week"],
        )
    elif kind == "absolute_monthly":
        pattern = AbsoluteMonthlyPattern(interval=p["interval"], day_of_month=p["day_of_month"])
    elif kind == "relative_monthly":
        pattern = RelativeMonthlyPattern(
            interval=p["interval"], weekday=p["weekdays"][0], week_number=p["week_index"]
        )
    elif kind == "absolute_yearly":
        pattern = AbsoluteYearlyPattern(day_of_month=p["day_of_month"], month=p["month"])
    elif kind == "relative_yearly":
        pattern = RelativeYearlyPattern(
            weekday=p["weekdays"][0], week_number=p["week_index"], month=p["month"]
        )
    else:
        raise ValueError(f"unknown recurrence pattern {kind!r}")
    rng = norm["range"]
    start = _ews_date(rng["start"]) if rng["start"] else _ews_date(default_start.isoformat())
    boundary: Any
    if rng["type"] == "end_date":
        boundary = EndDatePattern(start=start, end=_ews_date(rng["end"]))
    elif rng["type"] == "numbered":
        boundary = NumberedPattern(start=start, number=rng["count"])
    else:
        boundary = NoEndPattern(start=start)
    return Recurrence(pattern=pattern, boundary=boundary)


# --- expansion ---------------------------------------------------------------------------------


def _days_matching(name: str, year: int, month: int) -> list[dt.date]:
    days = [dt.date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
    if name == "Day":
        return days
    if name == "Weekday":
        return [d for d in days if d.weekday() < 5]
    if name == "WeekendDay":
        return [d for d in days if d.weekday() >= 5]
    return [d for d in days if d.weekday() == WEEKDAY_NAMES.index(name)]


def _relative_day(p: dict[str, Any], year: int, month: int) -> dt.date:
    days = sorted({d for name in p["weekdays"] for d in _days_matching(name, year, month)})
    index = WEEK_NUMBERS.index(p["week_index"])
    return days[-1] if index == 4 or index >= len(days) else days[index]


def _candidates(p: dict[str, Any], start: dt.date) -> Iterator[dt.date]:
    kind, interval = p["type"], p["interval"]
    if kind == "daily":
        day = start
        while True:
            yield day
            day += dt.timedelta(days=interval)
    if kind == "weekly":
        first = WEEKDAY_NAMES.index(p["first_day_of_week"])
        week = start - dt.timedelta(days=(start.weekday() - first) % 7)
        wanted = {WEEKDAY_NAMES.index(n) for n in p["weekdays"]}
        while True:
            for offset in range(7):
                day = week + dt.timedelta(days=offset)
                if day.weekday() in wanted:
                    yield day
            week += dt.timedelta(weeks=interval)
    year, month = start.year, start.month
    step = 12 if kind.endswith("_yearly") else interval
    if kind.endswith("_yearly"):
        month = p["month"]
    while True:
        if kind.startswith("absolute"):
            last = calendar.monthrange(year, month)[1]
            yield dt.date(year, month, min(p["day_of_month"], last))
        else:
            yield _relative_day(p, year, month)
        month += step
        year, month = year + (month - 1) // 12, (month - 1) % 12 + 1


def occurrence_dates(rec: dict[str, Any], limit: int = 5000) -> Iterator[dt.date]:
    """The dates of a series' occurrences in order (the range's start date must be set)."""
    norm = normalize(rec)
    assert norm is not None and norm["range"]["start"], "recurrence without a start date"
    rng = norm["range"]
    start = dt.date.fromisoformat(rng["start"])
    end = dt.date.fromisoformat(rng["end"]) if rng["end"] else None
    count = 0
    for day in _candidates(norm["pattern"], start):
        if day < start:
            continue
        if end is not None and day > end:
            return
        if rng["count"] is not None and count >= rng["count"]:
            return
        if count >= limit:
            return
        count += 1
        yield day


def instance_index(rec: dict[str, Any], day: dt.date) -> int | None:
    """The 1-based index of the occurrence on `day` (local date in the series' time zone)."""
    for index, occurrence in enumerate(occurrence_dates(rec), start=1):
        if occurrence == day:
            return index
        if occurrence > day:
            return None
    return None


def changed_fields(fields: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that differ from the item's current values (occurrences are written apart).

    Sending an unchanged recurrence again would make Exchange (EWS or Graph) drop the series'
    exceptions, so recurrences are compared in their canonical form."""
    out = {}
    for name, value in fields.items():
        if name in OCCURRENCE_FIELDS:
            continue
        if name in base:
            current = base[name]
            if name == "recurrence":
                value, current = normalize(value), normalize(current)
            if value == current or (not value and not current):
                continue
        out[name] = fields[name]
    return out
