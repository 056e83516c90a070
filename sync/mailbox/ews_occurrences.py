"""Single occurrences of a recurring series: delete one, move one (EWS exceptions).

EWS addresses an occurrence by the series' id and its 1-based instance index
(`OccurrenceItemId`); the vocabulary names it by its original start. `ews_recurrence` counts the
occurrences before that start, in the series' time zone, to find the index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from exchangelib.items import AUTO_RESOLVE, SEND_TO_NONE, SOFT_DELETE, CalendarItem
from exchangelib.properties import OccurrenceItemId

from sync.mailbox import ews_convert as convert
from sync.mailbox import ews_recurrence
from sync.mailbox.ews_connection import side_error
from sync.mailbox.fields import OCCURRENCE_FIELDS
from sync.sides import NotFound, Result, SideError, Written

if TYPE_CHECKING:
    from sync.mailbox.ews import EwsSide


def has_occurrences(fields: Mapping[str, Any]) -> bool:
    """Whether `fields` ask for deleted or modified occurrences."""
    return any(fields.get(name) for name in OCCURRENCE_FIELDS)


def raise_first(results: list[Any]) -> None:
    """Raise the first per-item error of a batch answer as a `sync.sides` error."""
    for res in results:
        if isinstance(res, Exception):
            raise side_error(res)


def write_occurrences(
    side: EwsSide,
    kind: str,
    written: Written,
    fields: Mapping[str, Any],
    before: Mapping[str, Any],
) -> Result:
    """Apply the deleted / modified occurrences of `fields` not yet in `before` (the series'
    values before the write, {} for a new series); the result carries the new ChangeKey."""
    master_id = written.id
    merged = {**before, **fields}
    rec = merged.get("recurrence")
    if not rec:
        return written
    tz = convert.series_timezone(merged)
    rec = dict(rec)
    if not (rec.get("range") or {}).get("start"):
        start_day = convert.local_date(merged["start"], tz).isoformat()
        rec["range"] = {**(rec.get("range") or {}), "start": start_day}
    if ews_recurrence.normalize(before.get("recurrence")) != ews_recurrence.normalize(rec):
        before = {}  # a new pattern drops every exception: apply them all again
    done_deleted = set(before.get("deleted_occurrences") or [])
    done_modified = {
        (m["original_start"], m.get("start"), m.get("end"))
        for m in before.get("modified_occurrences") or []
    }

    def occurrence(original_start: str) -> Any:
        index = ews_recurrence.instance_index(rec, convert.local_date(original_start, tz))
        if index is None:
            raise ValueError(f"{original_start} is not an occurrence of the series")
        return CalendarItem(
            account=side.account,
            folder=side.folder(kind),
            _id=OccurrenceItemId(id=master_id, instance_index=index),
        )

    try:
        for change in fields.get("modified_occurrences") or []:
            signature = (change["original_start"], change.get("start"), change.get("end"))
            if signature in done_modified:
                continue
            target = occurrence(change["original_start"])
            target.start = convert.parse_moment(change["start"]).astimezone(tz)
            target.end = convert.parse_moment(change["end"]).astimezone(tz)
            target._start_timezone = target._end_timezone = tz
            names = ["start", "end"]
            for extra in ("subject", "location"):
                if change.get(extra):
                    setattr(target, extra, change[extra])
                    names.append(extra)
            raise_first(side._bulk_update([(target, names)], AUTO_RESOLVE))
        new_deleted = [d for d in fields.get("deleted_occurrences") or [] if d not in done_deleted]
        if new_deleted:
            targets = [occurrence(d) for d in new_deleted]
            raise_first(side._bulk_delete(targets, SOFT_DELETE, SEND_TO_NONE))
    except (ValueError, KeyError) as exc:
        return side_error(exc)
    except SideError as error:
        return error
    fresh = side._fetch(kind, [master_id])
    if master_id not in fresh:
        return NotFound("The series is gone", "ErrorItemNotFound")
    return Written(master_id, fresh[master_id].version, fresh[master_id].fields)
