"""Sync filters: which CRM rows go to the mailbox, evaluated by us on each row.

Dataverse change tracking refuses `$filter`, so the engine reads every change and keeps the rows
a filter accepts. A filter is a list of conditions that must all hold; a kind's filters are
alternatives (a row in any of them is in). Values may be "me" (the signed-in user) or
"today", "today+N days", "today-N days" (midnight in the user's time zone, compared in UTC).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sync.kinds.base import Condition, parse_moment

_TODAY = re.compile(r"^today(?:\s*([+-])\s*(\d+)\s*(?:days?)?)?$", re.IGNORECASE)


def resolve_value(value: Any, me: str, now: datetime, tz: str = "UTC") -> Any:
    """Turn "me" and "today±N days" into a user id and a UTC moment."""
    if not isinstance(value, str):
        return value
    if value == "me":
        return me
    match = _TODAY.match(value.strip())
    if match:
        zone = ZoneInfo(tz)
        today = now.astimezone(zone).date()
        days = int(match.group(2) or 0) * (-1 if match.group(1) == "-" else 1)
        local = datetime.combine(today + timedelta(days=days), time(0), tzinfo=zone)
        return local.astimezone(UTC)
    return value


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    """Compare moments as moments, numbers as numbers, the rest as case-folded text."""
    if isinstance(right, datetime):
        return parse_moment(left), right
    if isinstance(right, bool) or isinstance(left, bool):
        return bool(left), bool(right)
    if isinstance(right, int | float) and left is not None:
        try:
            return float(left), float(right)
        except (TypeError, ValueError):
            pass
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold(), right.casefold()
    return left, right


def _test(op: str, left: Any, right: Any) -> bool:
    if op == "null":
        return left in (None, "")
    if op == "not_null":
        return left not in (None, "")
    a, b = _comparable(left, right)
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if op == "contains":
        return a is not None and str(b).casefold() in str(a).casefold()
    if a is None or b is None:
        return False
    ordering: dict[str, Callable[[Any, Any], bool]] = {
        "lt": lambda x, y: x < y,
        "le": lambda x, y: x <= y,
        "gt": lambda x, y: x > y,
        "ge": lambda x, y: x >= y,
    }
    if op not in ordering:
        raise ValueError(f"unknown filter operator {op!r}")
    return ordering[op](a, b)


def matches(
    row: Mapping[str, Any], conditions: Sequence[Condition], me: str, now: datetime, tz: str = "UTC"
) -> bool:
    """True when `row` satisfies every condition."""
    return all(
        _test(c["op"], row.get(c["field"]), resolve_value(c.get("value"), me, now, tz))
        for c in conditions
    )


def in_filter(
    row: Mapping[str, Any],
    filters: Sequence[Sequence[Condition]],
    me: str,
    now: datetime,
    tz: str = "UTC",
) -> bool:
    """True when any filter accepts `row`; no filters at all means nothing goes to the mailbox."""
    return any(matches(row, f, me, now, tz) for f in filters)
