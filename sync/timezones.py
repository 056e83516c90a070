"""Time zones as Dataverse and Exchange name them: Dataverse time zone codes, Windows zone names
(what Exchange's `StartTimeZone` Id and Dataverse's `timezonedefinition.standardname` hold) and
IANA names (what Python and the mailbox vocabulary use).

Why one module: a recurring series is expanded in its own zone on both sides (the CRM by the
master's `utcconversiontimezonecode`, Exchange by the item's start time zone), so the kinds
compare series zones and the CRM side converts a series' dates in it; both need the same
tables, and neither may depend on the other's adapter.

Zones are compared by their Windows name: several IANA names share one Windows zone (Europe/
Madrid and Europe/Paris are both "Romance Standard Time"), and that is the granularity both
services keep.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
"""Dataverse time zone code (usersettings.timezonecode, a record's utcconversiontimezonecode)
→ (timezonedefinition standardname, IANA zone), for common zones. Microsoft's docs give no list
of codes (they point to the timezonedefinitions table); these are Microsoft's Time Zone Index
Values (support.microsoft.com/help/973627) in decimal, 92 (UTC) as organizations'
timezonedefinitions carry it, and CLDR's windowsZones mapping of the standard names to IANA
zones. A code not listed is looked up in `timezonedefinitions` by the CRM side
(sync/crm/metadata.py)."""

_CODE_OF_NAME = {name: code for code, (name, _) in TIME_ZONE_CODES.items()}


@lru_cache(maxsize=256)
def windows_name(zone: str | None) -> str | None:
    """The Windows zone name of an IANA name (or of a Windows name, returned as is); None for
    None, and the name itself when no Windows zone is known for it."""
    if not zone:
        return None
    if zone in _CODE_OF_NAME:
        return zone
    from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP, MS_TIMEZONE_TO_IANA_MAP

    if zone in MS_TIMEZONE_TO_IANA_MAP:
        return zone
    found = IANA_TO_MS_TIMEZONE_MAP.get(zone)
    return str(found[0]) if found else zone


def code_for(zone: str | None) -> int | None:
    """The Dataverse code of a zone (IANA or Windows name); None when it has none listed."""
    name = windows_name(zone)
    return _CODE_OF_NAME.get(name) if name else None


def name_for_code(code: object) -> str | None:
    """The Windows name of a listed Dataverse code (None for None or a code not listed)."""
    try:
        number = int(str(code)) if code is not None and str(code).strip() else None
    except ValueError:
        return None
    found = TIME_ZONE_CODES.get(number) if number is not None else None
    return found[0] if found else None


@lru_cache(maxsize=256)
def iana_name(zone: str | None) -> str | None:
    """An IANA name for a zone given by its Windows name (or an IANA name, returned as is),
    the one Exchange reports back for that Windows zone where there is one."""
    if not zone:
        return None
    from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

    if zone in MS_TIMEZONE_TO_IANA_MAP:
        return str(MS_TIMEZONE_TO_IANA_MAP[zone])
    if zone in _CODE_OF_NAME:
        return TIME_ZONE_CODES[_CODE_OF_NAME[zone]][1]
    return zone


def zone_info(zone: str | None) -> ZoneInfo | None:
    """The ZoneInfo of a zone given by its IANA or Windows name (None when unknown)."""
    name = iana_name(zone)
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
