"""Appointments: CRM `appointments` and `recurringappointmentmasters` ⇄ the Calendar.

Two kinds share the Calendar: single appointments (items without recurrence; CRM rows that are
not occurrences of a series) and recurring series (one link per series, never one per
occurrence; moved and deleted occurrences are one field of the series, see
sync/kinds/exceptions.py). Organizer and attendees are activity parties
(participationtypemask 7 organizer, 5 required, 6 optional), compared by email address; a
`resolve(email)` function may bind an address to a CRM record (`partyid_contact@odata.bind`),
else it is kept as `addressused`.

Appointment show-as is the CRM status reason (1 Free, 2 Tentative, 5 Busy, 6 Out of Office;
the last two belong to the Scheduled state); an appointment's `statecode` is not valid for create
(appointment.md), so the CRM side sets state and status with an update right after the create.
The organizer of a CRM appointment can only be a system user (Organizer: Targets systemuser): an
organizer who is not one is kept in the mailbox only. The CRM has no reminder column: reminders
stay mailbox-only.

A series is expanded in its own time zone on both sides: the CRM by the master's
`utcconversiontimezonecode` ("Time zone code that was in use when the record was created",
valid for create and update: recurringappointmentmaster.md), Exchange by the item's start time
zone. So the zone is part of the series' recurrence value (by Windows zone name, as both keep
it: sync/timezones.py): a CRM series made by a user in New York keeps New York's wall-clock in
the mailbox of a user in Tokyo, across New York's DST changes, and a mailbox series reaches the
CRM with its own zone. The kind's `timezone` (the profile's) serves only series whose zone
neither side can name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sync import timezones
from sync.kinds import exceptions, recurrence
from sync.kinds.base import (
    FieldMap,
    Fields,
    Kind,
    norm_bool,
    norm_moment,
    norm_text,
    parse_moment,
    simple,
)

ORGANIZER, REQUIRED, OPTIONAL = 7, 5, 6
SHOW_AS = {1: "Free", 2: "Tentative", 5: "Busy", 6: "OOF"}
SHOW_AS_FROM_MAILBOX = {"Free": 1, "Tentative": 2, "Busy": 5, "OOF": 6, "WorkingElsewhere": 5}
STATE_OF_STATUS = {1: 0, 2: 0, 3: 1, 4: 2, 5: 3, 6: 3}

USER_BIND = "partyid_systemuser@odata.bind"
Resolver = Callable[[str], dict[str, str] | None]
"""email → the bind of the CRM record with that address (e.g. {"partyid_contact@odata.bind":
"/contacts(<id>)"}), or None when no record has it."""


def _email(value: Any) -> str | None:
    return str(value).strip().lower() or None if value else None


def _parties_value(organizer: Any, required: Any, optional: Any) -> dict[str, Any] | None:
    value = {
        "organizer": _email(organizer),
        "required": sorted({e for e in map(_email, required or []) if e}),
        "optional": sorted({e for e in map(_email, optional or []) if e}),
    }
    return value if value["organizer"] or value["required"] or value["optional"] else None


def parties_field(navigation: str, resolve: Resolver | None) -> FieldMap:
    """Organizer and attendees ⇄ the activity parties in `navigation`."""

    def read(row: Fields) -> Any:
        by_mask: dict[int, list[str]] = {ORGANIZER: [], REQUIRED: [], OPTIONAL: []}
        for party in row.get(navigation) or []:
            mask = int(party.get("participationtypemask") or 0)
            address = party.get("addressused")
            if mask in by_mask and address:
                by_mask[mask].append(address)
        organizer = by_mask[ORGANIZER][0] if by_mask[ORGANIZER] else None
        return _parties_value(organizer, by_mask[REQUIRED], by_mask[OPTIONAL])

    def write(value: Any) -> dict[str, Any]:
        value = value or {}
        parties: list[dict[str, Any]] = []
        wanted = [(ORGANIZER, [value["organizer"]] if value.get("organizer") else [])]
        wanted += [(REQUIRED, value.get("required") or []), (OPTIONAL, value.get("optional") or [])]
        for mask, addresses in wanted:
            for address in addresses:
                party: dict[str, Any] = {"participationtypemask": mask, "addressused": address}
                bound = resolve(address) if resolve else None
                if mask == ORGANIZER and not (bound and USER_BIND in bound):
                    # The organizer may only be a system user (Organizer: Targets systemuser,
                    # appointment.md): one who is not stays in the mailbox only.
                    continue
                if bound:
                    party.update(bound)
                parties.append(party)
        return {navigation: parties}

    def keep_organizer(crm_value: Any, mailbox_value: Any) -> Any:
        """The mailbox cannot change a meeting's organizer (it is whoever sent it): the CRM's
        stays; the mailbox's is taken only where the CRM has none."""
        if not mailbox_value:
            return crm_value and _parties_value((crm_value or {}).get("organizer"), [], [])
        organizer = (crm_value or {}).get("organizer") or mailbox_value.get("organizer")
        return _parties_value(organizer, mailbox_value["required"], mailbox_value["optional"])

    return FieldMap(
        name="parties",
        into_crm=keep_organizer,
        mailbox=("organizer", "required_attendees", "optional_attendees"),
        crm_read=read,
        crm_write=write,
        to_mailbox=lambda v: {
            "organizer": (v or {}).get("organizer"),
            "required_attendees": list((v or {}).get("required") or []),
            "optional_attendees": list((v or {}).get("optional") or []),
        },
        from_mailbox=lambda item: _parties_value(
            item.get("organizer"), item.get("required_attendees"), item.get("optional_attendees")
        ),
        crm_columns=(),
    )


def _show_as() -> FieldMap:
    return FieldMap(
        name="statuscode",
        mailbox=("show_as",),
        crm_write=lambda v: (
            {} if v is None else {"statecode": STATE_OF_STATUS[int(v)], "statuscode": int(v)}
        ),  # fmt: skip
        to_mailbox=lambda v: {"show_as": SHOW_AS.get(int(v), "Busy") if v is not None else None},
        from_mailbox=lambda item: SHOW_AS_FROM_MAILBOX.get(item.get("show_as") or ""),
        crm_columns=("statecode", "statuscode"),
    )


def _common(navigation: str, resolve: Resolver | None) -> tuple[FieldMap, ...]:
    return (
        simple("subject", "subject"),
        simple("description", "body", normalize=norm_text),
        simple("location", "location"),
        simple("isalldayevent", "is_all_day", normalize=norm_bool),
        _show_as(),
        parties_field(navigation, resolve),
    )


def _is_single(row: Fields) -> bool:
    return int(row.get("instancetypecode") or 0) == 0


def _is_recurring_item(item: Fields) -> bool:
    return bool(item.get("recurrence"))


WINDOW_FILTER = (
    {"field": "_ownerid_value", "op": "eq", "value": "me"},
    {"field": "statecode", "op": "ne", "value": 2},
    {"field": "scheduledend", "op": "ge", "value": "today-30 days"},
)
"""My appointments: owned by me, not canceled, not ended more than 30 days ago."""


def appointments_kind(resolve: Resolver | None = None) -> Kind:
    """Single appointments (`resolve` binds attendee addresses to CRM records)."""
    return Kind(
        name="appointments",
        entity_set="appointments",
        primary_key="activityid",
        folder="calendar",
        is_meeting=True,
        crm_reads_by_id=True,
        fields=(
            *_common("appointment_activity_parties", resolve),
            simple("scheduledstart", "start", normalize=norm_moment),
            simple("scheduledend", "end", normalize=norm_moment),
        ),
        default_filters=(WINDOW_FILTER,),
        filter_columns=("_ownerid_value", "statecode", "scheduledend", "instancetypecode"),
        crm_accepts=_is_single,
        mailbox_accepts=lambda item: not _is_recurring_item(item),
        crm_parent=exceptions.series_of,
        parent_kind="recurringappointments",
    )


def _series_times() -> FieldMap:
    """The first occurrence's start and end ⇄ the master's pattern start/end time + duration
    (the zone they keep their wall-clock in is the recurrence's: `_recurrence`)."""

    def write(value: Any) -> dict[str, Any]:
        value = value or {}
        start, end = parse_moment(value.get("start")), parse_moment(value.get("end"))
        duration = int((end - start).total_seconds() // 60) if start and end else None
        return {"starttime": value.get("start"), "endtime": value.get("end"), "duration": duration}

    def pair(start: Any, end: Any) -> dict[str, Any] | None:
        value = {"start": norm_moment(start), "end": norm_moment(end)}
        return value if value["start"] or value["end"] else None

    return FieldMap(
        name="series_times",
        mailbox=("start", "end"),
        crm_read=lambda row: pair(row.get("starttime"), row.get("endtime")),
        crm_write=write,
        to_mailbox=lambda v: {"start": (v or {}).get("start"), "end": (v or {}).get("end")},
        from_mailbox=lambda item: pair(item.get("start"), item.get("end")),
        crm_columns=("starttime", "endtime", "duration"),
    )


ZONE_COLUMN = "utcconversiontimezonecode"
"""The master's time zone code: the zone the service expands the series in."""


def _recurrence(timezone: str) -> FieldMap:
    """The pattern and range ⇄ the master's pattern columns, with the series' zone ⇄ its
    `utcconversiontimezonecode` and the item's `timezone`. Zones compare by Windows name
    (`timezones.windows_name`); a side that names none (a code not listed, an item without a
    zone) gives `timezone`, the one the copy was made in before zones were synced."""
    fallback = timezones.windows_name(timezone or "UTC")

    def with_zone(doc: dict[str, Any] | None, zone: str | None) -> dict[str, Any] | None:
        return None if doc is None else {**doc, "zone": zone or fallback}

    def write(value: Any) -> dict[str, Any]:
        columns = recurrence.to_columns(value)
        code = timezones.code_for((value or {}).get("zone"))
        if value and code is not None:
            columns[ZONE_COLUMN] = code
        return columns

    def to_mailbox(value: Any) -> dict[str, Any]:
        if not value:
            return {"recurrence": None}
        zone = value.get("zone")
        shown = timezone if timezones.windows_name(timezone) == zone else timezones.iana_name(zone)
        doc = {"pattern": value["pattern"], "range": value["range"]}
        return {"recurrence": doc, "timezone": shown or timezone}

    return FieldMap(
        name="recurrence",
        mailbox=("recurrence", "timezone"),
        crm_read=lambda row: with_zone(
            recurrence.from_columns(row), timezones.name_for_code(row.get(ZONE_COLUMN))
        ),
        crm_write=write,
        to_mailbox=to_mailbox,
        from_mailbox=lambda item: with_zone(
            recurrence.normalize(item.get("recurrence")),
            timezones.windows_name(item.get("timezone")),
        ),
        crm_columns=(*recurrence.COLUMNS, ZONE_COLUMN),
    )


def recurring_kind(resolve: Resolver | None = None, timezone: str = "UTC") -> Kind:
    """Recurring series: one link per series, kept in the series' own zone (`timezone`: for a
    series whose zone neither side names)."""
    return Kind(
        name="recurringappointments",
        entity_set="recurringappointmentmasters",
        primary_key="activityid",
        folder="calendar",
        mailbox_kind="appointments",
        is_meeting=True,
        crm_reads_by_id=True,
        fields=(
            *_common("recurringappointmentmaster_activity_parties", resolve),
            _series_times(),
            _recurrence(timezone),
            exceptions.exceptions_field(),
        ),
        crm_children=exceptions.exception_rows(),
        default_filters=(
            (
                {"field": "_ownerid_value", "op": "eq", "value": "me"},
                {"field": "statecode", "op": "ne", "value": 2},
            ),
        ),
        crm_accepts=lambda _row: True,
        mailbox_accepts=_is_recurring_item,
    )


APPOINTMENTS = appointments_kind()
RECURRING_APPOINTMENTS = recurring_kind()
