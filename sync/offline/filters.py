"""Offline filters of the user's own: which rows of a table "Go offline" takes, for the usual
record types and for any table typed by its logical name (issue 12, item 1).

A filter is stored as the messaging filters are (`SyncFilter`, builtin false, kind
"offline:<entity set>"), so `sync.offline.download.offline_filters` takes it like the built-in
ones. What differs is where the fields come from: not a fixed list but the table's own
definitions (`sync.offline.metadata.read_table`: labels in the user's language, types, option
sets), so a custom table gets a typed builder too.

A typed table name is checked against the organization's `EntityDefinitions` (powerapps-docs
webapi/query-metadata-web-api.md): unknown → a `SetupError` on the name field; a table whose
`ChangeTrackingEnabled` is false is accepted and said: every refresh reads its chosen rows in
full instead (the downloader falls back when change tracking is refused).

Before download the wizard shows each filter's live count and a size estimate: the count
(`$count`) times the average size of a sample page of the same rows (`$top`), doubled because
the local store keeps each row twice (the row and its base snapshot, DESIGN.md §1.4).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import select

from sync.crm.client import DataverseClient, query_string
from sync.offline.download import row_fields
from sync.offline.metadata import read_table
from sync.setup import user_filters
from sync.setup.messages import N_, Msg, SetupError
from sync.setup.odata import OFFLINE_PREFIX, to_odata
from sync.setup.user_filters import FieldDef, UserFilter
from sync.sides import Invalid, NotFound, SideError
from sync.store.db import Database
from sync.store.models import SyncFilter

LISTED: dict[str, Msg] = {
    "contacts": N_("Contacts"),
    "accounts": N_("Accounts"),
    "leads": N_("Leads"),
    "opportunities": N_("Opportunities"),
    "tasks": N_("Tasks"),
    "appointments": N_("Appointments"),
}
"""The record types offered by name (issue 12); any other table is typed by its logical name."""
OTHER = "other"
"""The builder's table choice that shows the logical-name box."""
SAMPLE_ROWS = 20
"""How many rows the size estimate reads."""
_LOGICAL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_INT_BOUNDS = (-2_147_483_648, 2_147_483_647)
_BUILDER_TYPES = {
    "text": "text",
    "memo": "text",
    "int": "number",
    "number": "number",
    "money": "number",
    "datetime": "date",
    "option": "option",
}
"""The metadata's field type → the builder's (two-option and most lookups are not offered:
a filter on them is rare and their OData literal differs)."""


@dataclass(frozen=True)
class TableChoice:
    """A table offline filters may choose rows of."""

    logical_name: str
    entity_set: str
    tracked: bool
    """`ChangeTrackingEnabled`: false → each refresh reads the chosen rows in full."""
    label: str = ""

    @property
    def kind(self) -> str:
        return OFFLINE_PREFIX + self.entity_set


@dataclass(frozen=True)
class Estimate:
    """A filter's live count and how big its download is estimated to be."""

    count: int
    sampled: int
    average_bytes: int

    @property
    def total_bytes(self) -> int:
        # kept twice locally: the row and its base snapshot (the merge's common ancestor)
        return self.count * self.average_bytes * 2


def find_table(client: DataverseClient, name: str) -> TableChoice:
    """The table of a logical name (or a listed entity set); SetupError on "table_name" when
    the organization has none."""
    typed = name.strip().lower()
    if not typed:
        raise SetupError(N_("Type the table's logical name, such as account."), "table_name")
    if not _LOGICAL_NAME.match(typed):
        raise SetupError(
            N_("%(name)s is not a table's logical name: lowercase letters, digits and _.",
               name=name.strip()[:64]),
            "table_name",
        )  # fmt: skip
    column = "EntitySetName" if typed in LISTED else "LogicalName"
    found = _definitions(client, f"{column} eq '{typed}'")
    if not found:
        raise SetupError(
            N_("This organization has no table named %(name)s. Type its logical name (the "
               "singular, such as account or new_project), not its display name.", name=typed),
            "table_name",
        )  # fmt: skip
    row = found[0]
    label = row.get("DisplayName") or {}
    local = label.get("UserLocalizedLabel") if isinstance(label, Mapping) else None
    return TableChoice(
        str(row["LogicalName"]),
        str(row["EntitySetName"]),
        row.get("ChangeTrackingEnabled") is not False,
        str(local.get("Label") or "") if isinstance(local, Mapping) else "",
    )


def _definitions(client: DataverseClient, where: str) -> list[dict[str, Any]]:
    names = ["LogicalName", "EntitySetName", "ChangeTrackingEnabled"]
    try:  # with its display name where the service serves it
        path = "EntityDefinitions" + query_string(select=[*names, "DisplayName"], filter=where)
        return list(client.get_json(path).get("value", []))
    except (Invalid, NotFound):
        path = "EntityDefinitions" + query_string(select=names, filter=where)
        return list(client.get_json(path).get("value", []))


def builder_fields(client: DataverseClient, entity_set: str) -> tuple[FieldDef, ...]:
    """The fields a filter of this table may test, from its definitions: labels in the user's
    language, option-set choices; the owner as "me or a user"."""
    fields: list[FieldDef] = []
    for column in read_table(client, entity_set).columns:
        name, kind = str(column["name"]), str(column["type"])
        if name == "_ownerid_value":
            fields.insert(0, FieldDef(name, N_("Owner"), "user"))
            continue
        shown = _BUILDER_TYPES.get(kind)
        if shown is None or (shown == "option" and not column.get("options")):
            continue
        options = tuple((int(v), str(label)) for v, label in column.get("options") or [])
        label: Any = str(column.get("label") or name)
        fields.append(FieldDef(name, label, shown, options, _INT_BOUNDS))  # type: ignore[arg-type]
    return tuple(fields)


def user_language(client: DataverseClient, me: str) -> int | None:
    """The CRM user's language (usersettings.uilanguageid): the table definitions' labels come
    in it (`UserLocalizedLabel`), so what is cached of them is kept per language."""
    try:
        row = client.get_json(f"usersettingscollection({me})" + query_string(select=["uilanguageid"]))  # fmt: skip
    except SideError:
        return None  # read without the cache: a real failure shows in that read
    value = row.get("uilanguageid")
    return value if isinstance(value, int) else None


@dataclass
class TableCache:
    """What the builder read of a table (its choice and fields), per organization, table and
    language, for `ttl` seconds: the builder draws itself again on each change of the form, and
    a table's definitions are eight requests (one with the language)."""

    ttl: float = 600.0
    clock: Callable[[], float] = time.monotonic
    _found: dict[tuple[Any, ...], tuple[float, Any]] = field(default_factory=dict)

    def table(
        self, client: DataverseClient, org: str, me: str, name: str
    ) -> tuple[TableChoice, tuple[FieldDef, ...]]:
        """The table typed as `name` and its builder fields (SetupError: no such table)."""
        language = user_language(client, me)
        key = (org, name.strip().lower(), language)
        hit = self._found.get(key)
        now = self.clock()
        if language is not None and hit is not None and now - hit[0] < self.ttl:
            return cast(tuple[TableChoice, tuple[FieldDef, ...]], hit[1])
        table = find_table(client, name)
        found = table, builder_fields(client, table.entity_set)
        if language is not None:  # unknown language: read again next time
            self._found[key] = (now, found)
        return found


def parse(
    fields: Sequence[FieldDef], name: str, rows: Sequence[tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """Validate a new offline filter (rows of field, operator, value; empty rows skipped): the
    messaging builder's rules over this table's fields."""
    if not name.strip() or len(name.strip()) > user_filters.MAX_NAME:
        raise SetupError(N_("Give the filter a name (up to 80 characters)."), "name")
    by_column = {f.column: f for f in fields}
    conditions: list[dict[str, Any]] = []
    for column, op, raw in rows:
        if not column:
            continue
        definition = by_column.get(column)
        if definition is None:
            raise SetupError(N_("Unknown field: %(name)s.", name=column), "field")
        if op not in user_filters.OPERATORS_BY_TYPE[definition.type]:
            raise SetupError(N_("%(field)s cannot be compared that way.", field=definition.label),
                             "op")  # fmt: skip
        value = user_filters._value(definition, op, raw)  # noqa: SLF001 (one rule for both)
        condition: dict[str, Any] = {"field": column, "op": op, "value": value}
        # the words the user chose it by, kept for the summary (no CRM call to show it again)
        condition["label"] = str(definition.label)
        shown = next((str(label) for v, label in definition.options if v == value), None)
        if shown is not None:
            condition["shown"] = shown
        conditions.append(condition)
    if not conditions:
        raise SetupError(N_("Add at least one condition."), "field")
    if len(conditions) > user_filters.MAX_CONDITIONS:
        raise SetupError(N_("A filter has at most three conditions."), "field")
    return conditions


def estimate(
    client: DataverseClient,
    entity_set: str,
    conditions: Sequence[Mapping[str, Any]],
    me: str,
    tz: str = "UTC",
) -> Estimate:
    """The live count and the size estimate of one filter (two requests)."""
    where = to_odata(conditions, me, tz=tz) or None
    count = client.count(entity_set, where)
    sample = next(iter(client.iter_pages(entity_set, filter=where, top=SAMPLE_ROWS)), [])
    sizes = [len(json.dumps(row_fields(r), separators=(",", ":"))) for r in sample]
    return Estimate(count, len(sizes), sum(sizes) // len(sizes) if sizes else 0)


def add(
    database: Database, table: TableChoice, name: str, conditions: Sequence[Mapping[str, Any]]
) -> UserFilter:
    """Store a validated offline filter, enabled (the wizard's box for it starts ticked)."""
    return user_filters.store_filter(database, table.kind, name, conditions)


def own_filters(database: Database) -> list[UserFilter]:
    """The user's own offline filters (their wizard slug is `user-<id>`, as messaging's)."""
    with database.session() as session:
        query = select(SyncFilter).where(
            SyncFilter.builtin.is_(False), SyncFilter.kind.startswith(OFFLINE_PREFIX)
        )
        return [
            UserFilter(r.id, r.kind, r.name, tuple(r.conditions or ()), bool(r.enabled))
            for r in session.scalars(query.order_by(SyncFilter.id))
        ]


def table_label(entity_set: str) -> Msg | str:
    """A listed record type's name, else the entity set as the CRM names it."""
    return LISTED.get(entity_set, entity_set)


def kind_label(kind: str) -> Msg:
    """An offline filter's kind in words: "Accounts (offline)", "new_projects (offline)"."""
    from sync.setup.choices import KIND_LABELS

    table = kind.removeprefix(OFFLINE_PREFIX)
    return KIND_LABELS.get(kind) or N_("%(table)s (offline)", table=table)


def size_words(size: int) -> str:
    """Bytes as a short figure (kB, MB, GB: units every language here writes the same)."""
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
