"""The user's own sync filters: conditions on fields of a kind, beside the built-in filters.

A filter is a name, a kind and up to a few conditions that must all hold ("owner is me",
"status is open", "due before today+7 days"). It is stored as a `SyncFilter` row (builtin
false) with the engine's condition dicts, so the engine applies it like the built-in ones; the
wizard shows it with its live count (the same conditions as an OData `$filter`). Dates may be
relative ("today", "today+7", "today-30"): the engine resolves them at each run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select

from sync.setup.messages import N_, Msg, SetupError
from sync.setup.odata import entity_set, to_odata
from sync.setup.ports import CrmDirectory
from sync.setup.profile import Profile
from sync.store.db import Database
from sync.store.models import SyncFilter

USER_PREFIX = "user-"
"""How a user filter is named in the wizard's form (`user-<row id>`), beside built-in slugs."""
MAX_CONDITIONS = 3
MAX_NAME = 80


@dataclass(frozen=True)
class FieldDef:
    """A field a user filter may test: its column, label, type and (for choices) options."""

    column: str
    label: Msg
    type: str  # "user" | "option" | "text" | "date" | "number"
    options: tuple[tuple[int, Msg], ...] = ()
    bounds: tuple[int, int] = (0, 0)
    """A number's smallest and largest value."""


_OWNER = FieldDef("_ownerid_value", N_("Owner"), "user")
FIELDS: dict[str, tuple[FieldDef, ...]] = {
    "contacts": (
        _OWNER,
        FieldDef("statecode", N_("Status"), "option", ((0, N_("Active")), (1, N_("Inactive")))),
        FieldDef("jobtitle", N_("Job title"), "text"),
        FieldDef("department", N_("Department"), "text"),
        FieldDef("address1_city", N_("City"), "text"),
        FieldDef("lastname", N_("Last name"), "text"),
        FieldDef("modifiedon", N_("Modified on"), "date"),
    ),
    "appointments": (
        _OWNER,
        FieldDef(
            "statecode",
            N_("Status"),
            "option",
            ((0, N_("Open")), (1, N_("Completed")), (2, N_("Canceled")), (3, N_("Scheduled"))),
        ),
        FieldDef("subject", N_("Subject"), "text"),
        FieldDef("location", N_("Location"), "text"),
        FieldDef("scheduledstart", N_("Start"), "date"),
        FieldDef("scheduledend", N_("End"), "date"),
    ),
    "tasks": (
        _OWNER,
        FieldDef(
            "statecode",
            N_("Status"),
            "option",
            ((0, N_("Open")), (1, N_("Completed")), (2, N_("Canceled"))),
        ),
        FieldDef(
            "prioritycode",
            N_("Priority"),
            "option",
            ((0, N_("Low")), (1, N_("Normal")), (2, N_("High"))),
        ),
        FieldDef("subject", N_("Subject"), "text"),
        FieldDef("scheduledend", N_("Due"), "date"),
        FieldDef("percentcomplete", N_("Percent complete"), "number", bounds=(0, 100)),
    ),
}
KINDS: dict[str, Msg] = {
    "contacts": N_("Contacts"),
    "appointments": N_("Appointments"),
    "tasks": N_("Tasks"),
}
OPERATORS: dict[str, Msg] = {
    "eq": N_("is"),
    "ne": N_("is not"),
    "contains": N_("contains"),
    "lt": N_("is before"),
    "le": N_("is on or before"),
    "gt": N_("is after"),
    "ge": N_("is on or after"),
    "null": N_("is empty"),
    "not_null": N_("is not empty"),
}
OPERATORS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "user": ("eq", "ne"),
    "option": ("eq", "ne"),
    "text": ("eq", "ne", "contains", "null", "not_null"),
    "date": ("lt", "le", "gt", "ge", "null", "not_null"),
    "number": ("eq", "ne", "lt", "le", "gt", "ge"),
}
NUMBER_OPERATORS: dict[str, Msg] = {
    "lt": N_("is less than"),
    "le": N_("is at most"),
    "gt": N_("is more than"),
    "ge": N_("is at least"),
}
"""A number's comparisons in words ("is before" is for dates)."""
ME_WORD = N_("me")
_RELATIVE = re.compile(r"^today(?:\s*([+-])\s*(\d{1,4}))?$", re.IGNORECASE)
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class UserFilter:
    id: int
    kind: str
    name: str
    conditions: tuple[Mapping[str, Any], ...]
    enabled: bool

    @property
    def slug(self) -> str:
        return f"{USER_PREFIX}{self.id}"


def field_def(kind: str, column: str) -> FieldDef | None:
    return next((f for f in FIELDS.get(kind, ()) if f.column == column), None)


def _value(definition: FieldDef, op: str, raw: str) -> Any:
    """The stored value of one condition, or a SetupError saying what to type."""
    if op in ("null", "not_null"):
        return None
    text = raw.strip()
    if definition.type == "user":
        if text.lower() in ("", "me"):
            return "me"
        if _GUID.match(text):
            return text.lower()
        raise SetupError(N_("Owner: choose me or one of the CRM's users."), "value")
    if definition.type == "number":
        low, high = definition.bounds
        try:
            number = int(text)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise SetupError(
                N_("%(field)s: a whole number from %(min)s to %(max)s.",
                   field=definition.label, min=low, max=high),
                "value",
            )  # fmt: skip
        return number
    if definition.type == "option":
        allowed = {value for value, _label in definition.options}
        by_label = {str(label).casefold(): value for value, label in definition.options}
        try:
            number = int(text)
        except ValueError:
            number = by_label.get(text.casefold(), -1)
        if number not in allowed:
            raise SetupError(N_("%(field)s: choose one of the offered values.",
                                field=definition.label), "value")  # fmt: skip
        return number
    if definition.type == "date":
        match = _RELATIVE.match(text)
        if match:
            sign, days = match.group(1), match.group(2)
            return "today" if not days else f"today{sign}{int(days)} days"
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise SetupError(
                N_("%(field)s: type a date like 2026-12-31, or today, today+7, today-30.",
                   field=definition.label),
                "value",
            ) from None  # fmt: skip
        return datetime(day.year, day.month, day.day, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not text:
        raise SetupError(N_("%(field)s: type the text to compare with.", field=definition.label),
                         "value")  # fmt: skip
    return text[:200]


def parse_filter(
    kind: str, name: str, rows: Sequence[tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """Validate a new filter (rows of field, operator, value; empty rows skipped)."""
    if kind not in FIELDS:
        raise SetupError(N_("Choose what the filter is for."), "kind")
    if not name.strip() or len(name.strip()) > MAX_NAME:
        raise SetupError(N_("Give the filter a name (up to 80 characters)."), "name")
    conditions: list[dict[str, Any]] = []
    for column, op, raw in rows:
        if not column:
            continue
        definition = field_def(kind, column)
        if definition is None:
            raise SetupError(N_("Unknown field: %(name)s.", name=column), "field")
        if op not in OPERATORS_BY_TYPE[definition.type]:
            raise SetupError(N_("%(field)s cannot be compared that way.", field=definition.label),
                             "op")  # fmt: skip
        conditions.append({"field": column, "op": op, "value": _value(definition, op, raw)})
    if not conditions:
        raise SetupError(N_("Add at least one condition."), "field")
    if len(conditions) > MAX_CONDITIONS:
        raise SetupError(N_("A filter has at most three conditions."), "field")
    return conditions


def parse_spec(spec: str) -> tuple[str, str, list[dict[str, Any]]]:
    """`KIND:NAME:FIELD OP [VALUE][;FIELD OP [VALUE]…]` (the command line's form of a filter),
    e.g. `tasks:Due this week:_ownerid_value eq me;scheduledend le today+7`."""
    parts = spec.split(":", 2)
    if len(parts) != 3:
        raise SetupError(
            N_("Write a filter as KIND:NAME:FIELD OP VALUE;FIELD OP VALUE (got %(spec)s).",
               spec=spec),
            "filters",
        )  # fmt: skip
    kind, name, text = (p.strip() for p in parts)
    rows = []
    for condition in text.split(";"):
        words = condition.strip().split(None, 2)
        if len(words) < 2:
            raise SetupError(N_("A condition is FIELD OP VALUE (got %(spec)s).", spec=condition),
                             "filters")  # fmt: skip
        rows.append((words[0], words[1], words[2] if len(words) == 3 else ""))
    return kind, name, parse_filter(kind, name, rows)


def replace_filter(
    profile: Profile, kind: str, name: str, conditions: Sequence[Mapping[str, Any]]
) -> UserFilter:
    """Add the filter, replacing one of the same kind and name (a script run again)."""
    for old in user_filters(profile):
        if (old.kind, old.name) == (kind, name.strip()):
            delete_filter(profile, old.id)
    return add_filter(profile, kind, name, conditions)


def add_filter(
    profile: Profile, kind: str, name: str, conditions: Sequence[Mapping[str, Any]]
) -> UserFilter:
    """Store a validated filter, enabled; the kind then syncs (see `synced_kinds`)."""
    made = store_filter(profile.database, kind, name, conditions)
    refresh_kinds(profile)
    return made


def store_filter(
    database: Database, kind: str, name: str, conditions: Sequence[Mapping[str, Any]]
) -> UserFilter:
    """A validated filter of the user's own stored, enabled (messaging and offline alike)."""
    with database.session() as session:
        row = SyncFilter(
            kind=kind,
            name=name.strip(),
            conditions=[dict(c) for c in conditions],
            enabled=True,
            builtin=False,
        )
        session.add(row)
        session.flush()
        return _user_filter(row)


def user_filters(profile: Profile) -> list[UserFilter]:
    with profile.database.session() as session:
        query = select(SyncFilter).where(SyncFilter.builtin.is_(False)).order_by(SyncFilter.id)
        return [_user_filter(r) for r in session.scalars(query) if r.kind in FIELDS]


def delete_filter(profile: Profile, filter_id: int) -> bool:
    with profile.database.session() as session:
        row = session.get(SyncFilter, filter_id)
        if row is None or row.builtin:
            return False
        session.delete(row)
    refresh_kinds(profile)
    return True


def set_enabled(profile: Profile, enabled_slugs: Sequence[str]) -> None:
    """Enable exactly the user filters named in `enabled_slugs` (the wizard's ticked boxes)."""
    wanted = set(enabled_slugs)
    with profile.database.session() as session:
        for row in session.scalars(select(SyncFilter).where(SyncFilter.builtin.is_(False))):
            row.enabled = f"{USER_PREFIX}{row.id}" in wanted


def refresh_kinds(profile: Profile) -> None:
    """The kinds that sync: those with an enabled filter, built-in or the user's."""
    with profile.database.session() as session:
        rows = session.scalars(select(SyncFilter).where(SyncFilter.enabled.is_(True)))
        kinds = sorted({r.kind for r in rows if r.kind in FIELDS})
    profile.set("kinds", kinds)


def count(directory: CrmDirectory, found: UserFilter, me: str, tz: str = "UTC") -> int:
    return directory.count(entity_set(found.kind), to_odata(found.conditions, me, tz=tz))


def _user_filter(row: SyncFilter) -> UserFilter:
    return UserFilter(row.id, row.kind, row.name, tuple(row.conditions or ()), bool(row.enabled))


def operator_label(definition: FieldDef, op: str) -> Msg:
    """The operator in words for this field's type."""
    if definition.type == "number" and op in NUMBER_OPERATORS:
        return NUMBER_OPERATORS[op]
    return OPERATORS[op]


_STORED_RELATIVE = re.compile(r"^today(?:([+-])(\d+) days)?$")


def value_words(
    definition: FieldDef, value: Any, user_names: Mapping[str, str] | None = None
) -> Msg | str:
    """A stored value as the user would say it: "me", a user's name, an option's label,
    "7 days from today", a date without its time."""
    if value is None:
        return ""
    for option, label in definition.options:
        if option == value:
            return label
    text = str(value)
    if definition.type == "user":
        return ME_WORD if text == "me" else (user_names or {}).get(text, text)
    if definition.type == "date":
        relative = _STORED_RELATIVE.match(text)
        if relative and not relative.group(2):
            return N_("today")
        if relative:
            days = int(relative.group(2))
            if relative.group(1) == "-":
                return N_("%(days)s days before today", days=days)
            return N_("%(days)s days from today", days=days)
        return text[:10] if re.match(r"^\d{4}-\d\d-\d\dT00:00:00Z$", text) else text
    return text


def describe_conditions(
    kind: str,
    conditions: Sequence[Mapping[str, Any]],
    user_names: Mapping[str, str] | None = None,
    extra: Sequence[FieldDef] = (),
) -> list[tuple[Msg, Msg, Msg | str]]:
    """(field label, operator label, value in words) per condition of `kind`; `extra`: fields
    only built-in filters test (not offered to the user)."""
    out: list[tuple[Msg, Msg, Msg | str]] = []
    for condition in conditions:
        column = str(condition["field"])
        definition = field_def(kind, column) or next((f for f in extra if f.column == column), None)
        if definition is None:
            continue
        op = str(condition["op"])
        shown = value_words(definition, condition.get("value"), user_names)
        out.append((definition.label, operator_label(definition, op), shown))
    return out


def describe(
    found: UserFilter, user_names: Mapping[str, str] | None = None
) -> list[tuple[Msg, Msg, Msg | str]]:
    """(field label, operator label, value in words) per condition of a user filter."""
    return describe_conditions(found.kind, found.conditions, user_names)


def user_ids(filters: Sequence[UserFilter]) -> set[str]:
    """The users (not "me") the filters' owner conditions name: their names are looked up."""
    return {
        str(c.get("value"))
        for f in filters
        for c in f.conditions
        if (d := field_def(f.kind, str(c["field"]))) is not None
        and d.type == "user"
        and c.get("value") not in (None, "me")
    }
