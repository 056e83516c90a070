"""Tasks: CRM `tasks` ⇄ the mailbox's Tasks folder.

Status and percent complete are one state, kept consistent as Exchange keeps it (EWS Status and
PercentComplete: Completed, 100 % and a completion date are one thing; Not Started is 0 %;
MS-OXOTASK PidLidTaskStatus: In Progress lies between). The CRM allows any pair ("Not Started"
at 50 %), which exchangelib resets to 0 % when it creates the item, so both sides' pairs are
read through `progress()`:

- Completed ⇒ 100 %; 100 % on an open task ⇒ Completed;
- Not Started with some percent ⇒ In Progress (the percent is the more telling value);
- no percent ⇒ 0 %; no status ⇒ the one the percent implies; In Progress at 0 % stays
  (Exchange and exchangelib keep it);
- Canceled ⇒ Deferred: the mailbox has no Canceled, so Deferred is what it gets and reads back.

The canonical pair is what both sides compare, fingerprint and write: the mailbox is sent a pair
it keeps unchanged, and a link never shows a difference that is not there, nor makes one. The
CRM row is not rewritten just to tidy it: a CRM "Not Started" at 50 % is In Progress 50 % in the
mailbox, and the row keeps "Not Started" until a status comes back from the mailbox.

Priority ⇄ importance. The task's `category` text holds the mailbox categories (other than our
tracking category, which every synced item keeps).
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
NOT_STARTED, IN_PROGRESS, COMPLETED, CANCELED, DEFERRED = 2, 3, 5, 6, 7
STATUS = {
    NOT_STARTED: (0, "NotStarted"),
    IN_PROGRESS: (0, "InProgress"),
    4: (0, "WaitingOnOthers"),
    COMPLETED: (1, "Completed"),
    CANCELED: (2, "Deferred"),  # the mailbox has no such status
    DEFERRED: (0, "Deferred"),
}
STATUS_FROM_MAILBOX = {"NotStarted": NOT_STARTED, "InProgress": IN_PROGRESS,
                       "WaitingOnOthers": 4, "Completed": COMPLETED, "Deferred": DEFERRED}  # fmt: skip
STATE_DEFAULT_STATUS = {0: NOT_STARTED, 1: COMPLETED, 2: CANCELED}
"""statecode → its default statuscode (task table reference), for rows without a statuscode."""
PRIORITY = {0: "Low", 1: "Normal", 2: "High"}
PRIORITY_FROM_MAILBOX = {v: k for k, v in PRIORITY.items()}
SEPARATOR = "; "
PROGRESS_COLUMNS = ("statecode", "statuscode", "percentcomplete")
"""Both progress fields are read from all three columns: each depends on the other."""


def progress(status: int | None, percent: Any) -> tuple[int, int]:
    """The (statuscode, percent) pair both sides can hold and read back unchanged (rules in
    the module docstring); a canonical pair maps to itself, so writing it changes nothing."""
    done = max(0, min(100, int(percent))) if percent not in (None, "") else 0
    if status is None:
        status = COMPLETED if done == 100 else IN_PROGRESS if done else NOT_STARTED
    if status == COMPLETED or done == 100:
        return COMPLETED, 100
    if status == NOT_STARTED and done:
        return IN_PROGRESS, done
    return (DEFERRED if status == CANCELED else status), done


def _crm_progress(row: Fields) -> tuple[int, int]:
    code = row.get("statuscode")
    if code is None:
        state = row.get("statecode")
        status = STATE_DEFAULT_STATUS.get(int(state)) if state is not None else None
    else:
        status = int(code)
    return progress(status, row.get("percentcomplete"))


def _mailbox_progress(item: Fields) -> tuple[int, int]:
    return progress(STATUS_FROM_MAILBOX.get(item.get("status") or ""), item.get("percent_complete"))


def _status_write(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    return {"statecode": STATUS[int(value)][0], "statuscode": int(value)}


def _status_to_mailbox(value: Any) -> dict[str, Any]:
    return {"status": STATUS[int(value)][1] if value is not None else None}


def _categories_from_mailbox(item: Fields) -> Any:
    names = [c for c in (item.get("categories") or []) if c != TRACKED_CATEGORY]
    return SEPARATOR.join(names) or None


def _categories_to_mailbox(value: Any) -> dict[str, Any]:
    names = [c.strip() for c in str(value).split(";") if c.strip()] if value else []
    return {"categories": [TRACKED_CATEGORY, *names]}


def _task_date(column: str, mailbox: str, direction: Direction = Direction.BOTH) -> FieldMap:
    """Mailbox tasks have dates, not times (Exchange keeps midnight): compare the dates, so a
    CRM due time is not taken for a change. The CRM columns are UserLocal (task.md): the CRM side
    writes a date as its midnight in the user's time zone and reads them back as moments in that
    zone (sync/crm/metadata.py), so the date compared is the one the user sees; midnight UTC
    would be the day before for anyone east of UTC."""

    def midnight(value: Any) -> Any:
        return f"{value}T00:00:00Z" if value else None

    return FieldMap(
        name=column,
        mailbox=(mailbox,),
        direction=direction,
        normalize=norm_date,
        crm_write=lambda v: {column: v},
        to_mailbox=lambda v: {mailbox: midnight(v)},
    )


TASKS = Kind(
    crm_reads_only_mapped=True,
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
            crm_read=lambda row: _crm_progress(row)[0],
            crm_write=_status_write,
            to_mailbox=_status_to_mailbox,
            from_mailbox=lambda item: _mailbox_progress(item)[0],
            crm_columns=PROGRESS_COLUMNS,
            normalize=norm_int,
        ),
        FieldMap(
            name="percentcomplete",
            mailbox=("percent_complete",),
            crm_read=lambda row: _crm_progress(row)[1],
            from_mailbox=lambda item: _mailbox_progress(item)[1],
            crm_columns=PROGRESS_COLUMNS,
            normalize=norm_int,
        ),
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
