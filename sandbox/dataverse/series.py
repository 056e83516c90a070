"""Recurring series the way Dataverse keeps them: a `recurringappointmentmasters` row expanded
into `appointments` instances, exceptions made by updating or deleting instances, and the
messages that act on a series.

What the docs say, and what is done here:

- Creating a master creates its instances as appointment rows with `instancetypecode` 2
  (Recurring Instance), `seriesid` the master, `originalstartdate` the start the pattern gives
  (create-recurring-appointment-series-instance-exception.md), from the effective start date
  up to the future expansion window (recurring-appointment-partial-expansion-model.md; the
  window and the cap are `Context.expansion`, the docs give no defaults).
- Updating an instance makes it an exception (instancetypecode 3); deleting an instance (or an
  exception) lists its original start in the master's `deletedexceptionslist`
  (update-recurring-appointment.md, delete-or-end-a-recurring-appointment-series-or-instance.md).
- Changing a master's recurrence information deletes its instances and expands the new pattern;
  changing subject, location or description updates the instances that are not exceptions
  (update-recurring-appointment.md).
- `CreateException` (bound to the recurringappointmentmaster collection: Target, the
  appointment; OriginalStartDate; IsDeleted) makes an exception of one occurrence, or deletes
  it; `DeleteOpenInstances` (unbound: Target, SeriesEndDate, StateOfPastInstances) ends a
  series; `AddRecurrence` (bound to an appointment: Target, the master) turns an appointment
  into a series (powerapps-docs webapi/reference pages of the three actions).

The series is expanded in the wall-clock time of its zone: the master's
`utcconversiontimezonecode` ("Time zone code that was in use when the record was created"), which
a create without it takes from the creating user's `usersettings.timezonecode`. The dates of
`patternstartdate`/`patternenddate` (UserLocal, Format DateOnly) are read in that zone.
"""

from __future__ import annotations

import calendar
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sandbox.dataverse.errors import ODataError, bad_request
from sandbox.dataverse.operations import (
    _DEFAULT_STATUS,
    _STATE_MESSAGE,
    INVALID_STATE_STATUS,
    INVALID_TIME_ZONE,
    Context,
    check_guid,
    coerce,
    create,
    entity_for,
    parse_ref,
    update,
    utc_now,
)
from sandbox.dataverse.schema import ENTITIES, SERIES_COLUMNS, TIME_ZONES
from sandbox.dataverse.store import Row

INSTANCE, EXCEPTION, FUTURE_EXCEPTION = 2, 3, 4
UTC_CODE = 92
INVALID_SERIES_START = "0x8004E109"
"""InvalidSeriesIdOriginalStart "Invalid seriesid or original start date." (Web service error
codes)."""
INVALID_RECURRENCE = "0x8004E100"
"""InvalidRecurrencePattern "Invalid recurrence pattern."."""
BASIC_COLUMNS = ("subject", "location", "description")
"""What an update of the master copies to its instances ("basic information")."""
_NAMESPACE = uuid.UUID("6f1d7d38-1c55-4c3e-8e38-3a0c2f6b9d41")
_LIST_SPLIT = re.compile(r"[\s,;]+")


def check_time_zone(code: Any) -> None:
    """usersettings.timezonecode must name a zone the organization knows."""
    if code is not None and int(code) not in TIME_ZONES:
        raise bad_request(
            f"Time Zone Code {code} specified is not recognized. Please specify a valid Time Zone "
            "Code value.",
            INVALID_TIME_ZONE,
        )


def user_time_zone(ctx: Context, user_id: str | None) -> int:
    """A user's usersettings.timezonecode (UTC when the user has none)."""
    settings = ctx.store.table(ctx.org, "usersettingscollection").get(user_id or "")
    code = settings.values.get("timezonecode") if settings else None
    return int(code) if code is not None else UTC_CODE


def zone(values: dict[str, Any]) -> ZoneInfo:
    code = values.get("utcconversiontimezonecode")
    return ZoneInfo(TIME_ZONES.get(int(code) if code is not None else UTC_CODE, TIME_ZONES[92])[1])


def prepare_master(ctx: Context, row: Row) -> None:
    """A new master records the time zone in use when it was created (its creator's)."""
    if row.values.get("utcconversiontimezonecode") is None:
        row.values["utcconversiontimezonecode"] = user_time_zone(ctx, ctx.user_id)
    check_time_zone(row.values["utcconversiontimezonecode"])


# --- the pattern ---------------------------------------------------------------------------------


def _local_date(value: Any, tz: ZoneInfo) -> date | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.astimezone(tz).date()


def _weekdays(mask: int) -> set[int]:
    """daysofweekmask (Sunday=1 … Saturday=64) as Python weekdays (Monday=0)."""
    return {(bit - 1) % 7 for bit in range(7) if mask & (1 << bit)}


def _nth(year: int, month: int, days: set[int], instance: int) -> date | None:
    """The instance-th (1–4; 5 = last) day of the month among `days`."""
    found = [
        date(year, month, d)
        for d in range(1, calendar.monthrange(year, month)[1] + 1)
        if date(year, month, d).weekday() in days
    ]
    if not found:
        return None
    if instance >= 5:
        return found[-1]
    return found[instance - 1] if instance - 1 < len(found) else None


def _dates(values: dict[str, Any], start: date) -> Iterator[date]:
    """The days the pattern gives from `start` on (unbounded)."""
    kind = int(values.get("recurrencepatterntype") or 0)
    interval = max(1, int(values.get("interval") or 1))
    mask = int(values.get("daysofweekmask") or 0)
    if values.get("isweekdaypattern"):
        kind, mask, interval = 1, 0b0111110, 1
    if kind == 0:
        day = start
        while True:
            yield day
            day += timedelta(days=interval)
    elif kind == 1:
        wanted = _weekdays(mask)
        if not wanted:
            raise bad_request("Invalid recurrence pattern.", INVALID_RECURRENCE)
        first = int(values.get("firstdayofweek") or 0)  # 0 = Sunday
        week = start - timedelta(days=(start.weekday() - (first - 1)) % 7)
        while True:
            for offset in range(7):
                day = week + timedelta(days=offset)
                if day >= start and day.weekday() in wanted:
                    yield day
            week += timedelta(weeks=interval)
    elif kind in (2, 3):
        step = interval if kind == 2 else 12 * interval
        year, month = start.year, start.month
        if kind == 3:
            month = int(values.get("monthofyear") or start.month)
            if month < start.month:
                year += 1
        nth = values.get("isnthmonthly") if kind == 2 else values.get("isnthyearly")
        for _ in range(100000):
            if nth:
                found = _nth(year, month, _weekdays(mask), int(values.get("instance") or 1))
            else:
                last = calendar.monthrange(year, month)[1]
                found = date(year, month, min(int(values.get("dayofmonth") or 1), last))
            if found is not None and found >= start:
                yield found
            month += step
            year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    else:
        raise bad_request("Invalid recurrence pattern.", INVALID_RECURRENCE)


def _starts(values: dict[str, Any]) -> Iterator[datetime]:
    """Occurrence starts (UTC) of a master, in the wall-clock time of its zone, in order (as
    many as its range gives: unbounded for a series without end)."""
    tz = zone(values)
    first = _local_date(values.get("patternstartdate"), tz)
    start_time = values.get("starttime")
    if first is None or not start_time:
        return
    clock = datetime.fromisoformat(str(start_time).replace("Z", "+00:00")).astimezone(tz)
    end_type = int(values.get("patternendtype") or 1)
    last = _local_date(values.get("patternenddate"), tz) if end_type == 3 else None
    count = int(values.get("occurrences") or 0) if end_type == 2 else None
    for made, day in enumerate(_dates(values, first)):
        if (last is not None and day > last) or (count is not None and made >= count):
            return
        local = datetime.combine(day, time(clock.hour, clock.minute, clock.second), tz)
        yield local.astimezone(UTC)


def occurrences(values: dict[str, Any], until: datetime | None, limit: int) -> list[datetime]:
    """Occurrence starts (UTC) of a master, at most `limit` of them and none after `until`."""
    out: list[datetime] = []
    for moment in _starts(values):
        if (until is not None and moment > until) or len(out) >= limit:
            break
        out.append(moment)
    return out


def _duration(values: dict[str, Any]) -> timedelta:
    if values.get("duration") is not None:
        return timedelta(minutes=int(values["duration"]))
    if values.get("starttime") and values.get("endtime"):
        begin = datetime.fromisoformat(str(values["starttime"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(values["endtime"]).replace("Z", "+00:00"))
        return end - begin
    return timedelta(minutes=30)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deleted_list(values: dict[str, Any]) -> list[str]:
    return [p for p in _LIST_SPLIT.split(str(values.get("deletedexceptionslist") or "")) if p]


# --- instances -----------------------------------------------------------------------------------


def children(ctx: Context, master_id: str) -> dict[str, Row]:
    """The master's instance and exception rows, by original start."""
    table = ctx.store.table(ctx.org, "appointments")
    return {
        str(row.values.get("originalstartdate")): row
        for row in table.rows.values()
        if row.values.get("_seriesid_value") == master_id
    }


def instance_id(master_id: str, original_start: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{master_id}|{original_start}"))


def _instance(ctx: Context, master: Row, start: datetime) -> Row:
    values = master.values
    original = _iso(start)
    now = utc_now()
    row = Row(
        {
            "activityid": instance_id(str(values["activityid"]), original),
            "activitytypecode": "appointment",
            "subject": values.get("subject"),
            "description": values.get("description"),
            "location": values.get("location"),
            "isalldayevent": values.get("isalldayevent"),
            "scheduledstart": original,
            "scheduledend": _iso(start + _duration(values)),
            "scheduleddurationminutes": int(_duration(values).total_seconds() // 60),
            "originalstartdate": original,
            "instancetypecode": INSTANCE,
            "statecode": values.get("statecode"),
            "statuscode": values.get("statuscode"),
            "_seriesid_value": values["activityid"],
            "_ownerid_value": values.get("_ownerid_value"),
            "_createdby_value": ctx.user_id or values.get("_createdby_value"),
            "_modifiedby_value": ctx.user_id or values.get("_modifiedby_value"),
            "createdon": now,
            "modifiedon": now,
        },
        {"seriesid": "recurringappointmentmaster", "ownerid": "systemuser"},
    )
    if row.values["_createdby_value"]:
        row.targets["createdby"] = row.targets["modifiedby"] = "systemuser"
    row.values["versionnumber"] = ctx.store.next_version()
    return row


def expand(ctx: Context, master: Row) -> None:
    """Make the instances a master's pattern gives that have no row yet (nor were deleted)."""
    until = datetime.now(UTC) + timedelta(days=ctx.expansion.future_days)
    have = children(ctx, str(master.values["activityid"]))
    gone = set(deleted_list(master.values))
    for start in occurrences(master.values, until, ctx.expansion.limit):
        original = _iso(start)
        if original not in have and original not in gone:
            ctx.store.put(ctx.org, "appointments", _instance(ctx, master, start))


def _touch(ctx: Context, entity_set: str, row: Row, changes: dict[str, Any]) -> Row:
    """A write the service makes itself (no validation): new values, version and modifiedon."""
    changed = row.copy()
    changed.values.update(changes)
    changed.values["modifiedon"] = utc_now()
    changed.values["versionnumber"] = ctx.store.next_version()
    ctx.store.put(ctx.org, entity_set, changed)
    return changed


def master_updated(ctx: Context, before: Row, after: Row) -> None:
    """New recurrence information: the instances and exceptions go and the new pattern is
    expanded; new basic information reaches the instances that are not exceptions."""
    master_id = str(after.values["activityid"])
    changed = {c for c in SERIES_COLUMNS if before.values.get(c) != after.values.get(c)}
    if "utcconversiontimezonecode" in changed:
        # an unknown zone is refused as on create (the write is undone with the request)
        check_time_zone(after.values.get("utcconversiontimezonecode"))
    if changed:
        for row in children(ctx, master_id).values():
            ctx.store.remove(ctx.org, "appointments", str(row.values["activityid"]))
        if after.values.get("deletedexceptionslist"):
            after = _touch(
                ctx, "recurringappointmentmasters", after, {"deletedexceptionslist": None}
            )
        expand(ctx, after)
        return
    basic = {
        c: after.values.get(c) for c in BASIC_COLUMNS if before.values.get(c) != after.values.get(c)
    }
    if basic:
        for row in children(ctx, master_id).values():
            if row.values.get("instancetypecode") == INSTANCE:
                _touch(ctx, "appointments", row, basic)


def occurrence_deleted(ctx: Context, row: Row) -> None:
    """An instance or exception deleted: its original start joins `deletedexceptionslist`."""
    master_id = row.values.get("_seriesid_value")
    original = row.values.get("originalstartdate")
    if not master_id or not original or row.values.get("instancetypecode") not in (2, 3, 4):
        return
    master = ctx.store.table(ctx.org, "recurringappointmentmasters").get(str(master_id))
    if master is None:
        return
    listed = deleted_list(master.values)
    if original not in listed:
        text = "\n".join([*listed, str(original)])
        _touch(ctx, "recurringappointmentmasters", master, {"deletedexceptionslist": text})


# --- messages ------------------------------------------------------------------------------------


def _parameters(body: Any, required: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    for name, kind in required.items():
        if name not in body:
            raise bad_request(f"The parameter '{name}' in the request payload is missing.")
        if not isinstance(body[name], kind) or isinstance(body[name], bool) != (kind is bool):
            raise bad_request(f"The parameter '{name}' in the request payload is not valid.")
    unknown = set(body) - set(required) - {"@odata.type"}
    if unknown:
        raise bad_request(
            f"The parameter '{sorted(unknown)[0]}' in the request payload is not a valid "
            "parameter for the operation."
        )
    return body


def _moment(text: str) -> str:
    try:
        return str(coerce(ENTITIES["appointments"], "scheduledstart", text))
    except ODataError:
        raise bad_request(
            f"Cannot convert the literal '{text}' to the expected type 'Edm.DateTimeOffset'."
        ) from None


def _series_start_error() -> ODataError:
    return bad_request("Invalid seriesid or original start date.", INVALID_SERIES_START)


def create_exception(ctx: Context, body: Any) -> dict[str, Any]:
    """`recurringappointmentmasters/Microsoft.Dynamics.CRM.CreateException`: the Target
    appointment names its series (`seriesid_recurringappointmentmaster@odata.bind`, or the
    `activityid` of one of its rows); OriginalStartDate must be an occurrence of the series
    that is not deleted. An existing instance is updated (or deleted); otherwise an exception
    row is made (or the occurrence listed as deleted). Answers CreateExceptionResponse."""
    params = _parameters(body, {"Target": dict, "OriginalStartDate": str, "IsDeleted": bool})
    target = dict(params["Target"])
    target.pop("@odata.type", None)
    original = _moment(params["OriginalStartDate"])
    master = _series_of(ctx, target)
    master_id = str(master.values["activityid"])
    if original in deleted_list(master.values):
        raise _series_start_error()
    rows = children(ctx, master_id)
    exception_id = str(target.pop("activityid", "") or instance_id(master_id, original))
    if original in rows:
        existing = rows[original]
        existing_id = str(existing.values["activityid"])
        if params["IsDeleted"]:
            from sandbox.dataverse.operations import delete

            delete(ctx, "appointments", existing_id)
        elif target:
            update(ctx, "appointments", existing_id, target)
        else:
            _touch(ctx, "appointments", existing, {"instancetypecode": EXCEPTION})
        return {"id": existing_id}
    if not _is_occurrence(master.values, original):
        raise _series_start_error()
    if params["IsDeleted"]:
        text = "\n".join([*deleted_list(master.values), original])
        _touch(ctx, "recurringappointmentmasters", master, {"deletedexceptionslist": text})
        return {"id": exception_id}
    check_guid(exception_id)
    times = {
        "scheduledstart": original,
        "scheduledend": _iso(
            datetime.fromisoformat(original.replace("Z", "+00:00")) + _duration(master.values)
        ),
        "subject": master.values.get("subject"),
        "location": master.values.get("location"),
    }
    # the occurrence belongs to the series' owner, whoever asks (as the instances do)
    owner = master.values.get("_ownerid_value")
    made = create(
        ctx, "appointments", {**times, **target}, row_id=exception_id.lower(), owner=owner
    )
    made.values.update(
        {
            "instancetypecode": EXCEPTION,
            "originalstartdate": original,
            "_seriesid_value": master_id,
            "statecode": master.values.get("statecode"),
            "statuscode": master.values.get("statuscode"),
        }
    )
    made.targets["seriesid"] = "recurringappointmentmaster"
    return {"id": str(made.values["activityid"])}


def _series_of(ctx: Context, target: dict[str, Any]) -> Row:
    masters = ctx.store.table(ctx.org, "recurringappointmentmasters")
    bind = target.pop("seriesid_recurringappointmentmaster@odata.bind", None)
    if bind is not None:
        entity_set, master_id = parse_ref(ctx, bind)
        found = masters.get(master_id) if entity_set == "recurringappointmentmasters" else None
        if found is None:
            raise _series_start_error()
        return found
    row_id = target.get("activityid")
    row = ctx.store.table(ctx.org, "appointments").get(str(row_id)) if row_id else None
    series = row.values.get("_seriesid_value") if row else None
    found = masters.get(str(series)) if series else None
    if found is None:
        raise bad_request("SeriesId is null or invalid.", "0x8004E105")
    target.pop("activityid", None)
    return found


def _is_occurrence(values: dict[str, Any], original: str) -> bool:
    """Whether the pattern gives an occurrence starting at `original` (walked up to it, one
    start at a time)."""
    moment = datetime.fromisoformat(original.replace("Z", "+00:00"))
    for start in _starts(values):
        if start >= moment:
            return start == moment
    return False


def delete_open_instances(ctx: Context, body: Any) -> None:
    """`DeleteOpenInstances`: deletes the open and scheduled instances from SeriesEndDate on,
    sets the state of the earlier ones to StateOfPastInstances, ends the series at the last
    earlier instance and cancels it (delete-or-end-a-recurring-appointment-series-or-instance.md)."""
    params = _parameters(body, {"Target": dict, "SeriesEndDate": str, "StateOfPastInstances": int})
    master_id = check_guid(str(params["Target"].get("activityid", "")))
    master = ctx.store.table(ctx.org, "recurringappointmentmasters").get(master_id)
    if master is None:
        from sandbox.dataverse import errors

        raise errors.not_found("recurringappointmentmaster", master_id)
    end = _moment(params["SeriesEndDate"])
    state = params["StateOfPastInstances"]
    status = _DEFAULT_STATUS["appointment"].get(state)
    if status is None:
        raise bad_request(_STATE_MESSAGE, INVALID_STATE_STATUS)
    last: str | None = None
    for original, row in sorted(children(ctx, master_id).items()):
        start = str(row.values.get("scheduledstart") or original)
        if start >= end:
            if row.values.get("statecode") in (0, 3):
                ctx.store.remove(ctx.org, "appointments", str(row.values["activityid"]))
            continue
        last = max(last or start, start)  # a moved exception may start after a later one
        _touch(ctx, "appointments", row, {"statecode": state, "statuscode": status})
    changes: dict[str, Any] = {"statecode": 2, "statuscode": 4}
    if last is not None:
        tz = zone(master.values)
        day = _local_date(last, tz)
        assert day is not None
        midnight = datetime.combine(day, time(0), tz)
        changes.update({"patternendtype": 3, "patternenddate": _iso(midnight)})
    _touch(ctx, "recurringappointmentmasters", master, changes)


def add_recurrence(ctx: Context, appointment_id: str, body: Any) -> Row:
    """`appointments(<id>)/Microsoft.Dynamics.CRM.AddRecurrence`: a new master from the Target's
    recurrence columns and the appointment's data; the appointment is deleted
    (create-recurring-appointment-series-instance-exception.md, "Convert an appointment")."""
    params = _parameters(body, {"Target": dict})
    appointment = ctx.store.table(ctx.org, "appointments").get(appointment_id)
    if appointment is None:
        from sandbox.dataverse import errors

        raise errors.not_found("appointment", appointment_id)
    values = appointment.values
    target = {k: v for k, v in params["Target"].items() if k != "@odata.type"}
    copied: dict[str, Any] = {
        "subject": values.get("subject"),
        "location": values.get("location"),
        "description": values.get("description"),
        "starttime": values.get("scheduledstart"),
        "endtime": values.get("scheduledend"),
    }
    master = create(
        ctx,
        "recurringappointmentmasters",
        {**{k: v for k, v in copied.items() if v is not None}, **target},
        owner=values.get("_ownerid_value"),
    )
    from sandbox.dataverse.operations import children_of, delete

    entity = entity_for("appointments")
    for party in children_of(ctx, entity, "appointment_activity_parties", appointment_id):
        moved = party.copy()
        moved.values["_activityid_value"] = master.values["activityid"]
        moved.targets["activityid"] = "recurringappointmentmaster"
        moved.values["versionnumber"] = ctx.store.next_version()
        ctx.store.put(ctx.org, "activityparties", moved)
    delete(ctx, "appointments", appointment_id)
    return master
