"""Table definitions and the signed-in user's time zone, read from the organization and kept per
organization: what the CRM side needs to write date-time columns the way each one stores them
and to leave out columns a write may not carry.

Why: Dataverse date-time columns have a behaviour (powerapps-docs
`behavior-format-date-time-attribute.md`): UserLocal values are stored in UTC and a value sent
without an offset is taken as UTC ("Submitting through the API": the client must apply the
user's offset itself); DateOnly values are an `Edm.Date`; TimeZoneIndependent values are kept as
given. A UserLocal column with Format DateOnly (a series' `patternstartdate`) still holds a
moment: the day the user sees is the one of that moment in the user's time zone. Columns also
say whether a create or an update may set them (IsValidForCreate / IsValidForUpdate), e.g. an
appointment's `statecode` is not valid for create and a series' `firstdayofweek` not for
update.

Both are read from the organization, as `webapi/query-metadata-web-api.md` shows:
`EntityDefinitions(LogicalName='task')/Attributes?$select=…` (every column's validity and its
DisplayName, the label in the reading user's language) and the
cast `…/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,
DateTimeBehavior,Format`; the time zone is `usersettingscollection(<user>)?$select=timezonecode`
(usersettings.md; `specify-time-zone-settings-user.md`: "For a list of time zone code values …
use the TimeZoneDefinition.TimeZoneCode column … StandardName stores the standard names").

Definitions rarely change, and each new process would otherwise pay about seven requests for
them: they are kept in memory and, given a `MetadataStore` (the local database), across
processes, per organization, each entry for `TTL_SECONDS` (a day). A write the service refuses
for a column reason (`column_refusal`) drops the organization's entries (`Metadata.invalidate`):
a customization may have changed a column's rules.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time as clock
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sync import timezones
from sync.crm.client import DataverseClient, query_string
from sync.sides import SideError
from sync.timezones import TIME_ZONE_CODES

log = logging.getLogger(__name__)

__all__ = ["TIME_ZONE_CODES", "Column", "Metadata", "MetadataStore", "Table"]

USER_LOCAL, DATE_ONLY, TIME_ZONE_INDEPENDENT = "UserLocal", "DateOnly", "TimeZoneIndependent"
TTL_SECONDS = 24 * 3600.0
"""How long read definitions and time zones are trusted before they are read again."""
INVALID_ARGUMENT = "0x80040203"
"""InvalidArgument (Web service error codes): what a write to a column not valid for it meets."""
_COLUMN_TEXTS = (
    "not valid for create",
    "not valid for update",
    "does not exist on type",
    "could not find a property named",
    "cannot convert the literal",
)


@dataclass(frozen=True)
class Column:
    """One column's definition: whether writes may set it, and its date-time behaviour."""

    name: str
    valid_for_create: bool = True
    valid_for_update: bool = True
    behaviour: str | None = None
    """DateTimeBehavior of a DateTime column; None for other types."""
    format: str | None = None
    """DateTimeFormat: DateAndTime or DateOnly."""
    label: str | None = field(default=None, compare=False)
    """[offline2] DisplayName.UserLocalizedLabel: the column's name in the language of the user
    who read the definitions (None when the service gave none); words, not a rule, so two
    definitions with the same rules are equal whatever the reader's language."""

    @property
    def shows_a_day(self) -> bool:
        """A UserLocal column the user sees as a date (Format DateOnly)."""
        return self.behaviour == USER_LOCAL and self.format == DATE_ONLY


@dataclass(frozen=True)
class Table:
    logical_name: str
    columns: Mapping[str, Column]


def _user_label(value: Any) -> str | None:
    """A Label's UserLocalizedLabel text (query-metadata-web-api.md: DisplayName is a Label)."""
    if isinstance(value, Mapping):
        local = value.get("UserLocalizedLabel")
        if isinstance(local, Mapping) and local.get("Label"):
            return str(local["Label"])
    return None


def zone_for_code(code: int, standard_name: str | None = None) -> ZoneInfo | None:
    """The IANA zone of a Dataverse time zone code (or of its timezonedefinition name)."""
    if code in TIME_ZONE_CODES:
        return _zone(TIME_ZONE_CODES[code][1])
    return timezones.zone_info(standard_name) if standard_name else None


def _zone(key: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def column_refusal(error: object) -> bool:
    """Whether a write was refused for a column reason (a column not valid for the write, an
    unknown property, a value of the wrong type): the definitions held may be out of date."""
    if not isinstance(error, SideError):
        return False
    text = (error.message or "").lower()
    return (error.code or "").lower() == INVALID_ARGUMENT or any(t in text for t in _COLUMN_TEXTS)


# --- conversions -------------------------------------------------------------------------------


def _parse(value: str) -> datetime:
    text = value.strip().replace("Z", "+00:00")
    # bench (issue 13, hostile input): a year under 1000 unpadded ("1-01-01…") is that year
    year, dash, rest = text.partition("-")
    if dash and year.isdigit() and len(year) < 4:
        text = f"{int(year):04d}-{rest}"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _is_day(value: str) -> bool:
    return len(value.strip()) == 10


def _utc(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%SZ")  # bench: year 1 is 0001


def to_service(value: Any, column: Column, zone: ZoneInfo) -> Any:
    """A value the kinds give (a day `YYYY-MM-DD` or a moment) in the form `column` stores:
    UserLocal: a day is its midnight in the user's zone, sent in UTC (what the user would have
    entered in the app; "Submitting through the API"); DateOnly: the day (a moment: its day in
    the user's zone); TimeZoneIndependent: the date and time the user sees, without offset."""
    if not isinstance(value, str) or not value.strip() or column.behaviour is None:
        return value
    if column.behaviour == DATE_ONLY:
        return value[:10] if _is_day(value) else _parse(value).astimezone(zone).date().isoformat()
    if _is_day(value):
        local = datetime.combine(date.fromisoformat(value.strip()), time(0), zone)
    else:
        local = _parse(value).astimezone(zone)
    if column.behaviour == TIME_ZONE_INDEPENDENT:
        return local.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _utc(local)


def from_service(value: Any, column: Column, zone: ZoneInfo) -> Any:
    """A UserLocal value the kinds read as a day: the same moment written in the user's zone
    (`2027-03-14T23:00:00Z` → `2027-03-15T00:00:00+01:00` for Paris), so its first ten
    characters are the day the user sees and it still compares as the same moment."""
    if not isinstance(value, str) or _is_day(value) or column.behaviour != USER_LOCAL:
        return value
    return _parse(value).astimezone(zone).isoformat()


# --- keeping the definitions ---------------------------------------------------------------------


class MetadataStore(Protocol):
    """Where definitions outlive the process: JSON values by key (sync/store/cache.py)."""

    def load(self, key: str) -> Any: ...

    def save(self, key: str, value: Any) -> None: ...

    def drop(self, key: str) -> None: ...


def store_key(api_url: str) -> str:
    """The store key of one organization's definitions (short: the settings key is 100 long)."""
    digest = hashlib.sha256(_normal(api_url).encode()).hexdigest()[:32]
    return f"crm-metadata:{digest}"


def _normal(api_url: str) -> str:
    return api_url if api_url.endswith("/") else api_url + "/"


@dataclass
class _Org:
    tables: dict[str, tuple[Table, float]] = field(default_factory=dict)
    zones: dict[str, tuple[str, float]] = field(default_factory=dict)
    """user id → (IANA name, when read)."""
    codes: dict[int, tuple[str | None, float]] = field(default_factory=dict)
    """time zone code not listed → (its timezonedefinition standard name, when read)."""
    loaded: bool = False
    """Whether the store's entries were taken in (once per process and organization)."""

    def encode(self) -> dict[str, Any]:
        return {
            "tables": {
                name: {
                    "at": at,
                    "columns": [
                        list(astuple(c))  # name, create, update, behaviour, format, label
                        for c in table.columns.values()
                    ],
                }
                for name, (table, at) in self.tables.items()
            },
            "zones": {user: {"at": at, "zone": zone} for user, (zone, at) in self.zones.items()},
            "codes": {str(c): {"at": at, "name": name} for c, (name, at) in self.codes.items()},
        }

    def take(self, stored: Any) -> None:
        """Entries of a stored value that this process has not read itself (bad ones are left
        out: they are read again)."""
        if not isinstance(stored, Mapping):
            return
        try:
            for name, entry in dict(stored.get("tables") or {}).items():
                columns = {
                    str(c[0]): Column(
                        str(c[0]), bool(c[1]), bool(c[2]), c[3], c[4], c[5] if len(c) > 5 else None
                    )
                    for c in entry["columns"]
                }
                self.tables.setdefault(str(name), (Table(str(name), columns), float(entry["at"])))
            for user, entry in dict(stored.get("zones") or {}).items():
                self.zones.setdefault(str(user), (str(entry["zone"]), float(entry["at"])))
            for code, entry in dict(stored.get("codes") or {}).items():
                self.codes.setdefault(int(code), (entry.get("name"), float(entry["at"])))
        except (KeyError, TypeError, ValueError, IndexError) as error:
            log.info("stored table definitions not usable (%s): reading them again", error)


_CACHE: dict[str, _Org] = {}
_LOCK = threading.Lock()


def forget(api_url: str | None = None, store: MetadataStore | None = None) -> None:
    """Drop what was read of one organization (or of all, from memory): the next use reads it
    again. With `store`, the organization's stored entries go too."""
    with _LOCK:
        if api_url is None:
            _CACHE.clear()
        else:
            _CACHE.pop(_normal(api_url), None)
    if store is not None and api_url is not None:
        store.drop(store_key(api_url))


class Metadata:
    """One organization's definitions, read through `client` when first needed (or when older
    than `ttl` seconds), kept in memory and in `store` when given."""

    def __init__(
        self,
        client: DataverseClient,
        store: MetadataStore | None = None,
        ttl: float = TTL_SECONDS,
        now: Callable[[], float] = clock.time,
    ) -> None:
        self.client = client
        self.store = store
        self.ttl = ttl
        self.now = now
        self.key = _normal(client.api_url)
        with _LOCK:
            self._org = _CACHE.setdefault(self.key, _Org())
        if store is not None and not self._org.loaded:
            try:
                stored = store.load(store_key(self.key))
            except Exception as error:  # a damaged row must not stop a sync: read again
                log.warning("could not load stored table definitions: %s", error)
                stored = None
            with _LOCK:
                self._org.take(stored)
                self._org.loaded = True

    def _fresh(self, at: float) -> bool:
        return 0 <= self.now() - at < self.ttl

    def _keep(self) -> None:
        if self.store is None:
            return
        with _LOCK:
            value = self._org.encode()
        try:
            self.store.save(store_key(self.key), value)
        except Exception as error:  # keeping is an optimisation: never fail a read for it
            log.warning("could not store table definitions: %s", error)

    def invalidate(self) -> None:
        """Forget this organization's definitions, here and in the store (a write was refused
        for a column reason: they may have changed)."""
        with _LOCK:
            self._org.tables.clear()
            self._org.zones.clear()
            self._org.codes.clear()
        if self.store is not None:
            try:
                self.store.drop(store_key(self.key))
            except Exception as error:
                log.warning("could not drop stored table definitions: %s", error)

    def table(self, logical_name: str) -> Table:
        found = self._org.tables.get(logical_name)
        if found is not None and self._fresh(found[1]):
            return found[0]
        table = self._read_table(logical_name)
        with _LOCK:
            self._org.tables[logical_name] = (table, self.now())
        self._keep()
        return table

    def _read_table(self, logical_name: str) -> Table:
        base = f"EntityDefinitions(LogicalName='{logical_name}')/Attributes"
        flags = self.client.get_json(
            base
            + query_string(
                select=["LogicalName", "IsValidForCreate", "IsValidForUpdate", "DisplayName"]
            )
        )
        dates = self.client.get_json(
            base
            + "/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata"
            + query_string(select=["LogicalName", "DateTimeBehavior", "Format"])
        )
        behaviours = {
            str(a["LogicalName"]): (
                (a.get("DateTimeBehavior") or {}).get("Value"),
                a.get("Format"),
            )
            for a in dates.get("value", [])
        }
        columns = {}
        for attribute in flags.get("value", []):
            name = str(attribute["LogicalName"])
            behaviour, shown = behaviours.get(name, (None, None))
            columns[name] = Column(
                name,
                valid_for_create=attribute.get("IsValidForCreate") is not False,
                valid_for_update=attribute.get("IsValidForUpdate") is not False,
                behaviour=behaviour,
                format=shown,
                label=_user_label(attribute.get("DisplayName")),
            )
        return Table(logical_name, columns)

    def time_zone(self, user_id: str | None) -> ZoneInfo:
        """The user's zone (usersettings.timezonecode); UTC, with a warning, when it cannot be
        told (a code neither listed nor in timezonedefinitions)."""
        user = (user_id or str(self.client.who_am_i()["UserId"])).lower()
        found = self._org.zones.get(user)
        if found is not None and self._fresh(found[1]):
            zone = _zone(found[0])
            if zone is not None:
                return zone
        zone = self._read_zone(user)
        with _LOCK:
            self._org.zones[user] = (zone.key, self.now())
        self._keep()
        return zone

    def _read_zone(self, user: str) -> ZoneInfo:
        settings = self.client.get_json(
            f"usersettingscollection({user})" + query_string(select=["timezonecode"])
        )
        code = settings.get("timezonecode")
        if code is None:
            return ZoneInfo("UTC")
        zone = self.zone_of_code(int(code))
        if zone is None:
            log.warning("Unknown Dataverse time zone code %s: dates are converted in UTC", code)
            return ZoneInfo("UTC")
        return zone

    def zone_of_code(self, code: int) -> ZoneInfo | None:
        """The zone of a time zone code: a listed one at once, another through its
        timezonedefinition (read once, kept like the definitions); None when unknown."""
        zone = zone_for_code(code)
        if zone is not None:
            return zone
        found = self._org.codes.get(code)
        if found is None or not self._fresh(found[1]):
            name = self._standard_name(code)
            with _LOCK:
                self._org.codes[code] = (name, self.now())
            self._keep()
        else:
            name = found[0]
        return zone_for_code(code, name) if name else None

    def _standard_name(self, code: int) -> str | None:
        try:
            found = self.client.get_json(
                "timezonedefinitions"
                + query_string(select=["standardname"], filter=f"timezonecode eq {code}")
            )
        except SideError as error:
            log.info("timezonedefinitions could not be read for code %s: %s", code, error)
            return None
        rows = found.get("value") or []
        return str(rows[0]["standardname"]) if rows else None
