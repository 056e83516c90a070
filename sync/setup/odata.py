"""Sync filter conditions as one OData `$filter`, for the wizard's live counts.

The engine applies filters itself (change tracking takes no `$filter`, DESIGN.md §3); the
wizard counts a filter's records by asking the CRM with the same conditions. One translation
serves the built-in filters and the user's own: "me" and "today±N days" are resolved first
(`sync.engine.filters.resolve_value`), then each value is written as an OData literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sync.engine.filters import resolve_value

OFFLINE_PREFIX = "offline:"
"""Offline filters are stored with the kind "offline:<entity set>"."""
ENTITY_SETS = {"contacts": "contacts", "appointments": "appointments", "tasks": "tasks"}
OPERATORS = frozenset({"eq", "ne", "gt", "ge", "lt", "le", "contains", "null", "not_null"})
_UNQUOTED = re.compile(
    r"^([0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}|\d{4}-\d\d-\d\dT[\d:.]+Z?)$"
)
"""GUID and date-time literals are written without quotes in OData."""


def entity_set(kind: str) -> str:
    if kind.startswith(OFFLINE_PREFIX):
        return kind.removeprefix(OFFLINE_PREFIX)
    return ENTITY_SETS[kind]


def to_odata(
    conditions: Sequence[Mapping[str, Any]], me: str, now: datetime | None = None, tz: str = "UTC"
) -> str:
    """The conditions (all must hold) as a `$filter`; ValueError on a column or operator that
    could smuggle other syntax in."""
    now = now or datetime.now(UTC)
    parts = []
    for condition in conditions:
        column, op = str(condition["field"]), str(condition["op"])
        if not column.replace("_", "").isalnum() or op not in OPERATORS:
            raise ValueError(f"bad condition {column!r} {op!r}")
        value = resolve_value(condition.get("value"), me, now, tz)
        if op == "null":
            parts.append(f"{column} eq null")
        elif op == "not_null":
            parts.append(f"{column} ne null")
        elif op == "contains":
            parts.append(f"contains({column},{_literal(value)})")
        else:
            parts.append(f"{column} {op} {_literal(value)}")
    return " and ".join(parts)


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and _UNQUOTED.match(value):
        return value
    return "'" + str(value).replace("'", "''") + "'"
