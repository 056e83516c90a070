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
`EntityDefinitions(LogicalName='task')/Attributes?$select=…` (every column's validity) and the
cast `…/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,
DateTimeBehavior,Format`; the time zone is `usersettingscollection(<user>)?$select=timezonecode`
(usersettings.md; `specify-time-zone-settings-user.md`: "For a list of time zone code values …
use the TimeZoneDefinition.TimeZoneCode column … StandardName stores the standard names").
Definitions rarely change: they are kept for the life of the process, per organization
(`forget` drops them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sync.crm.client import DataverseClient, query_string

log = logging.getLogger(__name__)

USER_LOCAL, DATE_ONLY, TIME_ZONE_INDEPENDENT = "UserLocal", "DateOnly", "TimeZoneIndependent"

TIME_ZONE_CODES: dict[int, tuple[str, str]] = {
    0: ("Dateline Standard Time", "Etc/GMT+12"),
    2: ("Hawaiian Standard Time", "Pacific/Honolulu"),
    3: ("Alaskan Standard Time", "America/Anchorage"),
    4: ("Pacific Standard Time", "America/Los_Angeles"),
    10: ("Mountain Standard Time", "America/Denver"),
    15: ("US Mountain Standard Time", "America/Phoenix"),
    20: ("Central Standard Time", "America/Chicago"),
    25: ("Canada Central Standard Time", "America/Regina"),
    35: ("Eastern Standard Time", "America/New_York"),
    50: ("Atlantic Standard Time", "America/Halifax"),
    65: ("E. South America Standard Time", "America/Sao_Paulo"),
    85: ("GMT Standard Time", "Europe/London"),
    90: ("Greenwich Standard Time", "Atlantic/Reykjavik"),
    92: ("UTC", "Etc/UTC"),
    95: ("Central Europe Standard Time", "Europe/Budapest"),
    100: ("Central European Standard Time", "Europe/Warsaw"),
    105: ("Romance Standard Time", "Europe/Paris"),
    110: ("W. Europe Standard Time", "Europe/Berlin"),
    120: ("Egypt Standard Time", "Africa/Cairo"),
    125: ("FLE Standard Time", "Europe/Kiev"),
    130: ("GTB Standard Time", "Europe/Bucharest"),
    135: ("Israel Standard Time", "Asia/Jerusalem"),
    140: ("South Africa Standard Time", "Africa/Johannesburg"),
    145: ("Russian Standard Time", "Europe/Moscow"),
    150: ("Arab Standard Time", "Asia/Riyadh"),
    190: ("India Standard Time", "Asia/Calcutta"),
    210: ("China Standard Time", "Asia/Shanghai"),
    215: ("Singapore Standard Time", "Asia/Singapore"),
    225: ("W. Australia Standard Time", "Australia/Perth"),
    230: ("Korea Standard Time", "Asia/Seoul"),
    235: ("Tokyo Standard Time", "Asia/Tokyo"),
    255: ("AUS Eastern Standard Time", "Australia/Sydney"),
    290: ("New Zealand Standard Time", "Pacific/Auckland"),
}
"""usersettings.timezonecode → (timezonedefinition standardname, IANA zone), for common zones.
Microsoft's docs give no list of codes (they point to the timezonedefinitions table); these are
Microsoft's Time Zone Index Values (support.microsoft.com/help/973627) in decimal, 92 (UTC) as
organizations' timezonedefinitions carry it, and CLDR's windowsZones mapping of the standard
names to IANA zones. A code not listed is looked up in `timezonedefinitions` (its standardname)
and mapped with the same CLDR table (as shipped with exchangelib)."""


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

    @property
    def shows_a_day(self) -> bool:
        """A UserLocal column the user sees as a date (Format DateOnly)."""
        return self.behaviour == USER_LOCAL and self.format == DATE_ONLY


@dataclass(frozen=True)
class Table:
    logical_name: str
    columns: Mapping[str, Column]


def zone_for_code(code: int, standard_name: str | None = None) -> ZoneInfo | None:
    """The IANA zone of a Dataverse time zone code (or of its timezonedefinition name)."""
    if code in TIME_ZONE_CODES:
        return ZoneInfo(TIME_ZONE_CODES[code][1])
    if standard_name:
        from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

        name = MS_TIMEZONE_TO_IANA_MAP.get(standard_name)
        try:
            return ZoneInfo(name) if name else None
        except ZoneInfoNotFoundError:
            return None
    return None


# --- conversions -------------------------------------------------------------------------------


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _is_day(value: str) -> bool:
    return len(value.strip()) == 10


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


# --- reading the definitions -------------------------------------------------------------------


@dataclass
class _Org:
    tables: dict[str, Table]
    zones: dict[str, ZoneInfo]


_CACHE: dict[str, _Org] = {}
_LOCK = threading.Lock()


def forget(api_url: str | None = None) -> None:
    """Drop what was read of one organization (or of all): the next use reads it again."""
    with _LOCK:
        if api_url is None:
            _CACHE.clear()
        else:
            _CACHE.pop(api_url if api_url.endswith("/") else api_url + "/", None)


class Metadata:
    """One organization's definitions, read through `client` when first needed."""

    def __init__(self, client: DataverseClient) -> None:
        self.client = client
        with _LOCK:
            self._org = _CACHE.setdefault(client.api_url, _Org({}, {}))

    def table(self, logical_name: str) -> Table:
        found = self._org.tables.get(logical_name)
        if found is None:
            found = self._read_table(logical_name)
            with _LOCK:
                self._org.tables[logical_name] = found
        return found

    def _read_table(self, logical_name: str) -> Table:
        base = f"EntityDefinitions(LogicalName='{logical_name}')/Attributes"
        flags = self.client.get_json(
            base + query_string(select=["LogicalName", "IsValidForCreate", "IsValidForUpdate"])
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
            )
        return Table(logical_name, columns)

    def time_zone(self, user_id: str | None) -> ZoneInfo:
        """The user's zone (usersettings.timezonecode); UTC, with a warning, when it cannot be
        told (a code neither listed nor in timezonedefinitions)."""
        user = (user_id or str(self.client.who_am_i()["UserId"])).lower()
        found = self._org.zones.get(user)
        if found is None:
            found = self._read_zone(user)
            with _LOCK:
                self._org.zones[user] = found
        return found

    def _read_zone(self, user: str) -> ZoneInfo:
        settings = self.client.get_json(
            f"usersettingscollection({user})" + query_string(select=["timezonecode"])
        )
        code = settings.get("timezonecode")
        if code is None:
            return ZoneInfo("UTC")
        zone = zone_for_code(int(code))
        if zone is None:
            zone = zone_for_code(int(code), self._standard_name(int(code)))
        if zone is None:
            log.warning("Unknown Dataverse time zone code %s: dates are converted in UTC", code)
            return ZoneInfo("UTC")
        return zone

    def _standard_name(self, code: int) -> str | None:
        from sync.sides import SideError

        try:
            found = self.client.get_json(
                "timezonedefinitions"
                + query_string(select=["standardname"], filter=f"timezonecode eq {code}")
            )
        except SideError:
            return None
        rows = found.get("value") or []
        return str(rows[0]["standardname"]) if rows else None
