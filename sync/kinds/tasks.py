"""Tasks: CRM `tasks` ⇄ the mailbox's Tasks folder.

Status is one value on each side: the CRM's status reason (`statuscode`, which implies the
`statecode`) ⇄ the mailbox status. Priority ⇄ importance. The task's `category` text holds the
mailbox categories (other than our tracking category, which every synced item keeps).
"""

from __future__ import annotations

from typing import Any

from sync.kinds.base import (
    Direction,
    FieldMap,
    Fields,
    Kind,
    norm_date,
    norm_int,
    norm_text,
    simple,
)
from sync.mailbox.fields import TRACKED_CATEGORY

# statuscode → (statecode, mailbox status); from the task table reference.
STATUS = {
    2: (0, "NotStarted"),
    3: (0, "InProgress"),
    4: (0, "WaitingOnOthers"),
    5: (1, "Completed"),
    6: (2, "Deferred"),  # Canceled: the mailbox has no such status
    7: (0, "Deferred"),
}
STATUS_FROM_MAILBOX = {"NotStarted": 2, "InProgress": 3, "WaitingOnOthers": 4,
                       "Completed": 5, "Deferred": 7}  # fmt: skip
PRIORITY = {0: "Low", 1: "Normal", 2: "High"}
PRIORITY_FROM_MAILBOX = {v: k for k, v in PRIORITY.items()}
SEPARATOR = "; "


def _status_read(row: Fields) -> Any:
    code = row.get("statuscode")
    if code is None:
        state = row.get("statecode")
        return {0: 2, 1: 5, 2: 6}.get(state) if state is not None else None
    return int(code)


def _status_write(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    return {"statecode": STATUS[int(value)][0], "statuscode": int(value)}


def _status_to_mailbox(value: Any) -> dict[str, Any]:
    return {"status": STATUS[int(value)][1] if value is not None else None}


def _status_from_mailbox(item: Fields) -> Any:
    return STATUS_FROM_MAILBOX.get(item.get("status") or "")


def _categories_from_mailbox(item: Fields) -> Any:
    names = [c for c in (item.get("categories") or []) if c != TRACKED_CATEGORY]
    return SEPARATOR.join(names) or None


def _categories_to_mailbox(value: Any) -> dict[str, Any]:
    names = [c.strip() for c in str(value).split(";") if c.strip()] if value else []
    return {"categories": [TRACKED_CATEGORY, *names]}


def _task_date(column: str, mailbox: str, direction: Direction = Direction.BOTH) -> FieldMap:
    """Mailbox tasks have dates, not times (Exchange keeps midnight): compare the dates, so a
    CRM due time is not taken for a change; a date from the mailbox is written as midnight UTC."""

    def midnight(value: Any) -> Any:
        return f"{value}T00:00:00Z" if value else None

    return FieldMap(
        name=column,
        mailbox=(mailbox,),
        direction=direction,
        normalize=norm_date,
        crm_write=lambda v: {column: midnight(v)},
        to_mailbox=lambda v: {mailbox: midnight(v)},
    )


TASKS = Kind(
    name="tasks",
    entity_set="tasks",
    primary_key="activityid",
    folder="tasks",
    fields=(
        simple("subject", "subject"),
        simple("description", "body", normalize=norm_text),
        _task_date("scheduledstart", "start_date"),
        _task_date("scheduledend", "due_date"),
        FieldMap(
            name="statuscode",
            mailbox=("status",),
            crm_read=_status_read,
            crm_write=_status_write,
            to_mailbox=_status_to_mailbox,
            from_mailbox=_status_from_mailbox,
            crm_columns=("statecode", "statuscode"),
            normalize=norm_int,
        ),
        simple("percentcomplete", "percent_complete", normalize=norm_int),
        FieldMap(
            name="prioritycode",
            mailbox=("importance",),
            to_mailbox=lambda v: {"importance": PRIORITY.get(v) if v is not None else None},
            from_mailbox=lambda item: PRIORITY_FROM_MAILBOX.get(item.get("importance") or ""),
            normalize=norm_int,
        ),
        # Exchange sets the completion date itself when the status becomes Completed.
        _task_date("actualend", "complete_date", Direction.TO_CRM),
        FieldMap(
            name="category",
            mailbox=("categories",),
            to_mailbox=_categories_to_mailbox,
            from_mailbox=_categories_from_mailbox,
        ),
    ),
    default_filters=(
        (
            {"field": "_ownerid_value", "op": "eq", "value": "me"},
            {"field": "statecode", "op": "eq", "value": 0},
        ),
    ),
)
"""My open tasks by default (owner is me, status open)."""
