"""Exceptions of a recurring series: moved and deleted occurrences, as one value of the series.

Dataverse keeps them apart from the `recurringappointmentmasters` row and makes them its own way
(create-recurring-appointment-series-instance-exception.md, update-recurring-appointment.md,
delete-or-end-a-recurring-appointment-series-or-instance.md; the columns below are read-only in
appointment.md and recurringappointmentmaster.md, so they are never written):
- the service expands a master into `appointments` rows, `instancetypecode` 2 (Recurring
  Instance), `seriesid` the master, `originalstartdate` the start the pattern gave them;
- a moved occurrence is an instance that was updated: the service makes it an exception
  (`instancetypecode` 3);
- a deleted occurrence is an instance that was deleted: the service lists its original start in
  the master's `deletedexceptionslist`;
- an occurrence the service has not expanded yet (past its expansion window) is made an
  exception, or deleted, with the `CreateException` message (Target: the appointment with its
  series; OriginalStartDate; IsDeleted), which the CRM side posts for a CreateOp holding only
  the message (sync/crm/entities.py MESSAGES).

The mailbox names both by their original start (`deleted_occurrences`, `modified_occurrences`
of sync/mailbox/fields.py). The canonical value is {"deleted": [moment…], "modified":
[{"original_start", "start", "end"}…]} (sorted; None when there is none), so a series stays one
link and one fingerprint. The exception writes are made by the engine after the master
(`child_ops`), from the master's rows as read now: a retried write finds what the first attempt
made and does not make it again.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from sync.kinds.base import ChildRows, FieldMap, Fields, norm_moment, parse_moment
from sync.sides import CreateOp, DeleteOp, UpdateOp, WriteOp

NAVIGATION = "recurringappointmentmaster_appointment"
"""The master's collection of its occurrences (instances and exceptions)."""
SERIES_BIND = "seriesid_recurringappointmentmaster@odata.bind"
INSTANCE = 2
EXCEPTION_TYPES = (3, 4)
"""instancetypecode: 3 Recurring Exception, 4 Recurring Future Exception (2 is a plain instance)."""
OCCURRENCE_TYPES = (INSTANCE, *EXCEPTION_TYPES)
CREATE_EXCEPTION = "CreateException"
"""The message that makes an exception of (or deletes) an occurrence that has no row yet."""
EXPAND = (
    f"{NAVIGATION}($select=activityid,instancetypecode,originalstartdate,"
    "scheduledstart,scheduledend)"
)
"""What the CRM side must add to the master's `$expand` on reads by id for the modified
occurrences to be seen (sync/crm/entities.py KIND_SPECS["recurringappointmentmasters"])."""
_NAMESPACE = uuid.UUID("0b7cf3b4-5a55-4d39-9a7e-2f3c1d0e6a11")
log = logging.getLogger(__name__)


def exception_id(series_id: str, original_start: str) -> str:
    """The key of the write that makes one occurrence an exception (stable across retries)."""
    return str(uuid.uuid5(_NAMESPACE, f"{series_id.lower()}|{norm_moment(original_start)}"))


def value(deleted: Iterable[Any] | None, modified: Iterable[Mapping[str, Any]] | None) -> Any:
    """The canonical exceptions value (None when the series has none)."""
    gone = sorted({m for m in (norm_moment(d) for d in deleted or []) if m})
    moved = sorted(
        (
            {
                "original_start": norm_moment(m.get("original_start")),
                "start": norm_moment(m.get("start")),
                "end": norm_moment(m.get("end")),
            }
            for m in modified or []
            if m.get("original_start")
        ),
        key=lambda m: str(m["original_start"]),
    )
    return {"deleted": gone, "modified": moved} if gone or moved else None


def parse_deleted_list(text: Any) -> list[str]:
    """The moments of a `deletedexceptionslist`, as UTC moments. Its format is not documented
    (recurringappointmentmaster.md: "List of deleted instances", a Memo): one moment per line,
    or separated by commas, semicolons or blanks, each in any ISO 8601 form (a date and a time
    with a blank between them too). What cannot be read as a moment is left out with a warning,
    never failing the series' sync."""
    moments: list[str] = []
    for line in re.split(r"[\r\n,;]+", str(text or "")):
        line = line.strip()
        if not line:
            continue
        whole = _moment_or_none(line)
        if whole is not None:
            moments.append(whole)
            continue
        for part in line.split():
            moment = _moment_or_none(part)
            if moment is None:
                log.warning("deletedexceptionslist entry %r is not a moment: left out", part)
            else:
                moments.append(moment)
    return moments


def _moment_or_none(text: str) -> str | None:
    try:
        return norm_moment(text)
    except (TypeError, ValueError):
        return None


def _occurrence_rows(row: Fields) -> dict[str | None, Mapping[str, Any]]:
    """The master's instance and exception rows (as expanded by the read), by original start."""
    return {
        norm_moment(child.get("originalstartdate")): child
        for child in row.get(NAVIGATION) or []
        if int(child.get("instancetypecode") or 0) in OCCURRENCE_TYPES
    }


def _duration(row: Fields) -> timedelta | None:
    """The length of the series' occurrences (the master's `duration`, else its times)."""
    if row.get("duration") not in (None, ""):
        return timedelta(minutes=int(row["duration"]))
    start, end = parse_moment(row.get("starttime")), parse_moment(row.get("endtime"))
    return end - start if start and end else None


def _original_end(row: Fields, original_start: Any) -> str | None:
    start, length = parse_moment(original_start), _duration(row)
    return norm_moment(start + length) if start and length is not None else None


def _moved(row: Fields, child: Mapping[str, Any]) -> bool:
    """An exception row whose times are not the ones the pattern gives (an exception at its
    original times, e.g. a move undone, is no move)."""
    original = norm_moment(child.get("originalstartdate"))
    return (norm_moment(child.get("scheduledstart")), norm_moment(child.get("scheduledend"))) != (
        original,
        _original_end(row, original),
    )


def from_crm(row: Fields) -> Any:
    moved = [
        {
            "original_start": child.get("originalstartdate"),
            "start": child.get("scheduledstart"),
            "end": child.get("scheduledend"),
        }
        for child in _occurrence_rows(row).values()
        if int(child.get("instancetypecode") or 0) in EXCEPTION_TYPES and _moved(row, child)
    ]
    return value(parse_deleted_list(row.get("deletedexceptionslist")), moved)


def to_crm(exceptions: Any) -> dict[str, Any]:
    """Nothing on the master: `deletedexceptionslist` is read-only (the service keeps it); the
    exceptions are written by `child_ops`."""
    return {}


def to_mailbox(exceptions: Any) -> dict[str, Any]:
    exceptions = exceptions or {}
    return {
        "deleted_occurrences": list(exceptions.get("deleted") or []),
        "modified_occurrences": [dict(m) for m in exceptions.get("modified") or []],
    }


def from_mailbox(item: Fields) -> Any:
    return value(item.get("deleted_occurrences"), item.get("modified_occurrences"))


def _create_exception(
    series_id: str, row: Fields, start: str, times: Mapping[str, Any] | None
) -> CreateOp:
    """The CreateException message for an occurrence without a row: moved to `times`, or
    deleted when `times` is None."""
    target: dict[str, Any] = {
        "@odata.type": "Microsoft.Dynamics.CRM.appointment",
        SERIES_BIND: f"/recurringappointmentmasters({series_id})",
    }
    if times is not None:
        target |= {**times, "subject": row.get("subject"), "location": row.get("location")}
    parameters = {"Target": target, "OriginalStartDate": start, "IsDeleted": times is None}
    return CreateOp(exception_id(series_id, start), {CREATE_EXCEPTION: parameters})


def child_ops(series_id: str, row: Fields, exceptions: Any) -> list[WriteOp]:
    """The writes that make the master's occurrences (`row`, read with `EXPAND`) say
    `exceptions`: a deleted occurrence deletes its row; a moved one updates its row (an
    instance becomes an exception); one with no row yet goes through CreateException; an
    exception no longer moved (nor deleted) is put back at its original times."""
    wanted = {m["original_start"]: m for m in (exceptions or {}).get("modified") or []}
    gone = set((exceptions or {}).get("deleted") or [])
    listed = set(parse_deleted_list(row.get("deletedexceptionslist")))
    rows = _occurrence_rows(row)
    ops: list[WriteOp] = []
    for start in sorted(gone):
        child = rows.get(start)
        if child is not None:
            ops.append(DeleteOp(str(child["activityid"]), None))
        elif start not in listed:
            ops.append(_create_exception(series_id, row, start, None))
    for start, moved in wanted.items():
        if start in gone:
            continue
        times = {"scheduledstart": moved["start"], "scheduledend": moved["end"]}
        child = rows.get(start)
        if child is None:
            ops.append(_create_exception(series_id, row, start, times))
        elif (norm_moment(child.get("scheduledstart")), norm_moment(child.get("scheduledend"))) != (
            moved["start"],
            moved["end"],
        ):
            ops.append(UpdateOp(str(child["activityid"]), None, times))
    for start, child in rows.items():
        back = {"scheduledstart": start, "scheduledend": _original_end(row, start)}
        restored = start not in wanted and start not in gone and start is not None
        if restored and _moved(row, child) and back["scheduledend"] is not None:
            ops.append(UpdateOp(str(child["activityid"]), None, back))
    return ops


def merge_three(base: Any, crm: Any, mailbox: Any) -> Any:
    """Both sides changed a series' exceptions: take each side's own changes, occurrence by
    occurrence (a deletion on either side stands; a move changed on one side only is taken from
    it, on both from the mailbox, whose calendar the user looks at). Converges when a run that
    wrote half of them (the master, not yet its exception rows) is taken up again."""
    old, ours, theirs = (_parts(v) for v in (base, crm, mailbox))
    deleted = _merge_set(old[0], ours[0], theirs[0])
    moved: dict[str, Any] = {}
    for key in sorted(set(old[1]) | set(ours[1]) | set(theirs[1])):
        was, now_crm, now_mailbox = old[1].get(key), ours[1].get(key), theirs[1].get(key)
        pick = now_mailbox if now_mailbox != was else now_crm
        if pick is not None and key not in deleted:
            moved[key] = pick
    return value(deleted, moved.values())


def _parts(exceptions: Any) -> tuple[set[str], dict[str, Any]]:
    found = exceptions or {}
    return set(found.get("deleted") or []), {
        m["original_start"]: m for m in found.get("modified") or []
    }


def _merge_set(base: set[str], crm: set[str], mailbox: set[str]) -> set[str]:
    added = (crm - base) | (mailbox - base)
    removed = (base - crm) | (base - mailbox)
    return (base | added) - removed


def exceptions_field() -> FieldMap:
    return FieldMap(
        name="exceptions",
        mailbox=("deleted_occurrences", "modified_occurrences"),
        crm_read=from_crm,
        crm_write=to_crm,
        to_mailbox=to_mailbox,
        from_mailbox=from_mailbox,
        crm_columns=("deletedexceptionslist",),
        merge_both=merge_three,
    )


def exception_rows() -> ChildRows:
    return ChildRows(field="exceptions", crm_kind="appointments", ops=child_ops)


def series_of(row: Fields) -> str | None:
    """The series an `appointments` row is an exception of (None for anything else)."""
    if int(row.get("instancetypecode") or 0) not in EXCEPTION_TYPES:
        return None
    parent = row.get("_seriesid_value")
    return str(parent).lower() if parent else None
