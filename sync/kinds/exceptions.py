"""Exceptions of a recurring series: moved and deleted occurrences, as one value of the series.

Dataverse keeps them apart from the `recurringappointmentmasters` row (reference: "Create a
recurring appointment series, instance, or exception", appointment / recurringappointmentmaster
tables):
- a moved occurrence is an `appointments` row with `instancetypecode` 3 (Recurring Exception),
  `seriesid` pointing to the master (relationship `recurringappointmentmaster_appointment`) and
  `originalstartdate` the start the pattern gave it;
- a deleted occurrence is an entry of the master's `deletedexceptionslist`.

The mailbox names both by their original start (`deleted_occurrences`, `modified_occurrences`
of sync/mailbox/fields.py). The canonical value is {"deleted": [moment…], "modified":
[{"original_start", "start", "end"}…]} (sorted; None when there is none), so a series stays one
link and one fingerprint. The exception rows are written by the engine after the master
(`child_ops`), with GUIDs derived from the series and the original start: a retried write finds
the row the first attempt made.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sync.kinds.base import ChildRows, FieldMap, Fields, norm_moment
from sync.sides import CreateOp, DeleteOp, UpdateOp, WriteOp

NAVIGATION = "recurringappointmentmaster_appointment"
"""The master's collection of its occurrences (instances and exceptions)."""
SERIES_BIND = "seriesid_recurringappointmentmaster@odata.bind"
INSTANCE = 2
EXCEPTION_TYPES = (3, 4)
"""instancetypecode: 3 Recurring Exception, 4 Recurring Future Exception (2 is a plain instance)."""
EXPAND = (
    f"{NAVIGATION}($select=activityid,instancetypecode,originalstartdate,"
    "scheduledstart,scheduledend)"
)
"""What the CRM side must add to the master's `$expand` on reads by id for the modified
occurrences to be seen (sync/crm/entities.py KIND_SPECS["recurringappointmentmasters"])."""
_NAMESPACE = uuid.UUID("0b7cf3b4-5a55-4d39-9a7e-2f3c1d0e6a11")


def exception_id(series_id: str, original_start: str) -> str:
    """The GUID of the exception row we create for one occurrence (stable across retries)."""
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
    """The moments of a `deletedexceptionslist` (one per line; commas and semicolons too)."""
    return [part for part in re.split(r"[\s,;]+", str(text or "")) if part]


def _exception_rows(row: Fields) -> list[Mapping[str, Any]]:
    return [
        child
        for child in row.get(NAVIGATION) or []
        if int(child.get("instancetypecode") or 0) in EXCEPTION_TYPES
    ]


def from_crm(row: Fields) -> Any:
    moved = [
        {
            "original_start": child.get("originalstartdate"),
            "start": child.get("scheduledstart"),
            "end": child.get("scheduledend"),
        }
        for child in _exception_rows(row)
    ]
    return value(parse_deleted_list(row.get("deletedexceptionslist")), moved)


def to_crm(exceptions: Any) -> dict[str, Any]:
    """The master's part; the exception rows go through `child_ops`."""
    gone = (exceptions or {}).get("deleted") or []
    return {"deletedexceptionslist": "\n".join(gone) or None}


def to_mailbox(exceptions: Any) -> dict[str, Any]:
    exceptions = exceptions or {}
    return {
        "deleted_occurrences": list(exceptions.get("deleted") or []),
        "modified_occurrences": [dict(m) for m in exceptions.get("modified") or []],
    }


def from_mailbox(item: Fields) -> Any:
    return value(item.get("deleted_occurrences"), item.get("modified_occurrences"))


def _instances(row: Fields) -> dict[str | None, Mapping[str, Any]]:
    """The master's plain instances (rows the service expanded), by original start."""
    return {
        norm_moment(child.get("originalstartdate") or child.get("scheduledstart")): child
        for child in row.get(NAVIGATION) or []
        if int(child.get("instancetypecode") or 0) == INSTANCE
    }


def child_ops(series_id: str, row: Fields, exceptions: Any) -> list[WriteOp]:
    """The writes that make the master's exception rows (`row`, read with `EXPAND`) say
    `exceptions`: create the missing, move the changed, delete the ones no longer wanted.

    Where the service expanded the series into instance rows (the real Dataverse does, the
    sandbox does not), a move updates the instance (the service makes it an exception) and a
    deleted occurrence deletes it (the service lists it in `deletedexceptionslist`)."""
    wanted = {m["original_start"]: m for m in (exceptions or {}).get("modified") or []}
    existing = {norm_moment(c.get("originalstartdate")): c for c in _exception_rows(row)}
    instances = _instances(row)
    ops: list[WriteOp] = []
    for start in (exceptions or {}).get("deleted") or []:
        if start in instances:
            ops.append(DeleteOp(str(instances[start]["activityid"]), None))
    for start, moved in wanted.items():
        times = {"scheduledstart": moved["start"], "scheduledend": moved["end"]}
        child = existing.get(start)
        if child is None and start in instances:
            ops.append(UpdateOp(str(instances[start]["activityid"]), None, times))
        elif child is None:
            fields = {
                **times,
                "subject": row.get("subject"),
                "location": row.get("location"),
                "instancetypecode": 3,
                "originalstartdate": start,
                SERIES_BIND: f"/recurringappointmentmasters({series_id})",
            }
            ops.append(CreateOp(exception_id(series_id, start), fields))
        elif (norm_moment(child.get("scheduledstart")), norm_moment(child.get("scheduledend"))) != (
            moved["start"],
            moved["end"],
        ):
            ops.append(UpdateOp(str(child["activityid"]), None, times))
    for start, child in existing.items():
        if start not in wanted:
            ops.append(DeleteOp(str(child["activityid"]), None))
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
