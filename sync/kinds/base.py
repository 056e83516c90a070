"""What a kind is: field maps between CRM columns and the mailbox vocabulary, plus rules.

The engine compares records in one vocabulary only, the *canonical values*: for every mapped
field, the value as the CRM would hold it (after conversion). A CRM row gives them through
`FieldMap.crm_value`, a mailbox item through `FieldMap.mailbox_value`; writing goes back
through `crm_patch` / `mailbox_patch`. Converters must round-trip (value → mailbox fields →
value) or a quiet sync would see changes that are not there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sync.mailbox.fields import MODIFIED, TRACKED_CATEGORY
from sync.sides import WriteOp

CRM_READ_ALWAYS = ("modifiedon",)
"""Columns the engine reads of every CRM row besides the mapped ones: `modifiedon` says which
side changed last when a conflict is explained (`changed_later_in_mailbox`)."""
Fields = Mapping[str, Any]
Condition = Mapping[str, Any]
"""One filter condition: {"field": column, "op": "eq"|"ne"|..., "value": ...}."""


class Direction(StrEnum):
    """Which way a field flows. A field changed on both sides is settled by its direction."""

    BOTH = "both"
    TO_MAILBOX = "to_mailbox"
    TO_CRM = "to_crm"
    NONE = "none"

    @property
    def to_mailbox(self) -> bool:
        return self in (Direction.BOTH, Direction.TO_MAILBOX)

    @property
    def to_crm(self) -> bool:
        return self in (Direction.BOTH, Direction.TO_CRM)


# --- value normalizers (both sides must agree on "no value" and on formats) --------------------


def norm(value: Any) -> Any:
    """Empty strings and empty lists mean "no value" on both sides: None."""
    if value == "" or value == [] or value == {}:
        return None
    return value


def norm_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).replace("\r\n", "\n")
    return text if text.strip() else None


def parse_moment(value: Any) -> datetime | None:
    """An ISO 8601 moment (any offset, or naive meaning UTC) as an aware UTC datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip().replace("Z", "+00:00")
        # bench (issue 13, hostile input): a year under 1000 as strftime writes it ("1-01-01…",
        # unpadded) is read as the year it names instead of crashing the run
        year, dash, rest = text.partition("-")
        if dash and year.isdigit() and len(year) < 4:
            text = f"{int(year):04d}-{rest}"
        moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def norm_moment(value: Any) -> str | None:
    """Moments as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds): the form both sides compare in."""
    moment = parse_moment(value)
    # bench (issue 13, hostile input): the year padded by hand; strftime's %Y writes year 1 as
    # "1", which fromisoformat then refuses (an appointment in year 0001 crashed a run)
    return None if moment is None else f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%SZ")


def norm_date(value: Any) -> str | None:
    """Dates as `YYYY-MM-DD`; a moment keeps only its date part, the day of the offset it is
    written with (the CRM side writes UserLocal days in the user's zone, so this is the day
    the user sees: sync/crm/metadata.py)."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10]


def norm_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def norm_bool(value: Any) -> bool:
    return bool(value)


# --- field maps --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldMap:
    """One mapped field. `name` is its canonical name (the CRM column, or a made-up name for a
    value spread over several columns); the defaults map one CRM column to one mailbox field."""

    name: str
    mailbox: tuple[str, ...]
    direction: Direction = Direction.BOTH
    normalize: Callable[[Any], Any] = norm
    crm_read: Callable[[Fields], Any] | None = None
    crm_write: Callable[[Any], dict[str, Any]] | None = None
    to_mailbox: Callable[[Any], dict[str, Any]] | None = None
    from_mailbox: Callable[[Fields], Any] | None = None
    crm_columns: tuple[str, ...] | None = None
    """CRM columns to `$select` for this field (default: `name`)."""
    into_crm: Callable[[Any, Any], Any] | None = None
    """(CRM value, mailbox value) → the value to write to the CRM when the mailbox's wins;
    for values the mailbox holds only in part (an organizer it cannot change)."""
    merge_both: Callable[[Any, Any, Any], Any] | None = None
    """(base, CRM value, mailbox value) → one value for both sides when both changed, for
    values made of parts that change apart (a series' exceptions): no conflict to record."""

    def mailbox_wins(self, crm_value: Any, mailbox_value: Any) -> Any:
        return self.into_crm(crm_value, mailbox_value) if self.into_crm else mailbox_value

    def crm_value(self, row: Fields) -> Any:
        raw = self.crm_read(row) if self.crm_read else row.get(self.name)
        return self.normalize(raw)

    def mailbox_value(self, item: Fields) -> Any:
        raw = self.from_mailbox(item) if self.from_mailbox else item.get(self.mailbox[0])
        return self.normalize(raw)

    def crm_patch(self, value: Any) -> dict[str, Any]:
        return self.crm_write(value) if self.crm_write else {self.name: value}

    def mailbox_patch(self, value: Any) -> dict[str, Any]:
        return self.to_mailbox(value) if self.to_mailbox else {self.mailbox[0]: value}

    @property
    def columns(self) -> tuple[str, ...]:
        return self.crm_columns if self.crm_columns is not None else (self.name,)


def _accept_all(_fields: Fields) -> bool:
    return True


def fingerprint(values: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical values: equal values, equal fingerprints, whatever the version."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ChildRows:
    """CRM rows of another entity set that hold part of one field's value (a series'
    exceptions are `appointments` rows): written by the engine after their parent."""

    field: str
    """The field whose value they carry."""
    crm_kind: str
    """The CRM side kind they are written to."""
    ops: Callable[[str, Fields, Any], list[WriteOp]]
    """(parent id, parent row as read now, wanted value) → the writes, keyed for retries."""


@dataclass(frozen=True)
class Kind:
    """A kind of record synced both ways: where it lives on each side and how fields map."""

    name: str
    """The name the store, runs and dashboard use (also the default side kind names)."""
    entity_set: str
    primary_key: str
    folder: str
    fields: tuple[FieldMap, ...]
    default_filters: tuple[tuple[Condition, ...], ...] = ()
    """Filters (OR of ANDs of conditions) used when the user chose none."""
    filter_columns: tuple[str, ...] = ("_ownerid_value", "statecode")
    crm_kind: str = ""
    mailbox_kind: str = ""
    is_meeting: bool = False
    crm_accepts: Callable[[Fields], bool] = _accept_all
    """CRM rows of the entity set that belong to this kind (e.g. no occurrences of a series)."""
    mailbox_accepts: Callable[[Fields], bool] = _accept_all
    """Mailbox items of the folder that belong to this kind (e.g. only recurring masters)."""
    title_field: str = "subject"
    title_fields: tuple[str, ...] = ()
    """Fields whose values joined by spaces name a record (a contact's full name); the
    `title_field` when they are all empty."""
    crm_reads_only_mapped: bool = False
    """The kind's rules read no CRM column but its field maps', its filters' and its key: the
    CRM side may read only those (`crm_select`, `$select`) instead of every column."""
    crm_reads_by_id: bool = False
    """Changed CRM rows must be read again by id (expanded columns such as activity parties
    are not returned by change tracking)."""
    crm_create_extra: Mapping[str, Any] = field(default_factory=dict)
    crm_children: ChildRows | None = None
    """Rows elsewhere in the CRM that belong to one field of this kind (see ChildRows)."""
    crm_parent: Callable[[Fields], str | None] | None = None
    """For a CRM row of this kind's entity set that belongs to a record of `parent_kind`
    (an exception of a series): that record's id, so the parent's next run re-reads it."""
    parent_kind: str = ""

    def __post_init__(self) -> None:
        if not self.crm_kind:
            object.__setattr__(self, "crm_kind", self.entity_set)
        if not self.mailbox_kind:
            object.__setattr__(self, "mailbox_kind", self.name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def crm_select(self) -> list[str]:
        """The columns to read from the CRM: the mapped ones plus what filters need."""
        columns: list[str] = [self.primary_key]
        for fmap in self.fields:
            columns.extend(c for c in fmap.columns if c not in columns)
        columns.extend(c for c in self.filter_columns if c not in columns)
        columns.extend(c for c in CRM_READ_ALWAYS if c not in columns)
        return columns

    def crm_columns(self, filters: Sequence[Sequence[Condition]]) -> list[str]:
        """`crm_select` and every column `filters` (the sync filters in force) look at."""
        columns = self.crm_select
        for conditions in filters:
            for condition in conditions:
                name = str(condition.get("field") or "")
                if name and name not in columns:
                    columns.append(name)
        return columns

    def field(self, name: str) -> FieldMap:
        for fmap in self.fields:
            if fmap.name == name:
                return fmap
        raise KeyError(name)

    def direction(self, name: str, overrides: Mapping[str, Any] | None = None) -> Direction:
        if overrides and name in overrides:
            return Direction(overrides[name])
        return self.field(name).direction

    def crm_values(self, row: Fields) -> dict[str, Any]:
        return {f.name: f.crm_value(row) for f in self.fields}

    def mailbox_values(self, item: Fields) -> dict[str, Any]:
        return {f.name: f.mailbox_value(item) for f in self.fields}

    def fingerprint(self, values: Mapping[str, Any]) -> str:
        return fingerprint({name: values.get(name) for name in self.field_names})

    def crm_patch(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """CRM columns for these canonical values (only fields given)."""
        patch: dict[str, Any] = {}
        for name, value in values.items():
            patch.update(self.field(name).crm_patch(value))
        return patch

    def mailbox_patch(self, values: Mapping[str, Any]) -> dict[str, Any]:
        patch: dict[str, Any] = {}
        for name, value in values.items():
            patch.update(self.field(name).mailbox_patch(value))
        return patch

    def crm_create(
        self, values: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The CRM row for a record created from a mailbox item (fields that flow to the CRM)."""
        chosen = {
            n: v for n, v in values.items() if v is not None and self.direction(n, overrides).to_crm
        }
        return {**self.crm_create_extra, **self.crm_patch(chosen)}

    def mailbox_create(
        self, values: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The mailbox item for a CRM record: fields that flow to the mailbox, marked tracked."""
        chosen = {
            n: v
            for n, v in values.items()
            if v is not None and self.direction(n, overrides).to_mailbox
        }
        item = self.mailbox_patch(chosen)
        categories = list(item.get("categories") or [])
        if TRACKED_CATEGORY not in categories:
            categories.append(TRACKED_CATEGORY)
        item["categories"] = categories
        return item

    def title(self, values: Mapping[str, Any]) -> str:
        """How pages and alerts name the record (e.g. a contact's full name)."""
        joined = " ".join(str(values[f]).strip() for f in self.title_fields if values.get(f))
        return (joined or str(values.get(self.title_field) or ""))[:300]


def changed_later_in_mailbox(crm_row: Fields, item: Fields) -> tuple[bool, str, str] | None:
    """Whether the mailbox copy changed after the CRM row (`modifiedon` against the item's
    own change time), with both moments; None when either side does not say."""
    try:
        crm_at = parse_moment(crm_row.get("modifiedon"))
        mailbox_at = parse_moment(item.get(MODIFIED))
    except (TypeError, ValueError):
        return None
    if crm_at is None or mailbox_at is None:
        return None
    shown = "%Y-%m-%d %H:%M:%S UTC"
    return mailbox_at > crm_at, mailbox_at.strftime(shown), crm_at.strftime(shown)


def is_tracked(item: Fields) -> bool:
    """A mailbox item the user marked for the CRM (the Outlook category)."""
    return TRACKED_CATEGORY in (item.get("categories") or [])


def simple(name: str, mailbox: str, direction: Direction = Direction.BOTH, **kw: Any) -> FieldMap:
    """A one-column ⇄ one-field map."""
    return FieldMap(name=name, mailbox=(mailbox,), direction=direction, **kw)
