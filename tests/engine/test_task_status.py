"""Task status and percent complete: one consistent pair on both sides (issue 14, point 6).

A CRM task "Not Started" at 50 % used to reach the mailbox as NotStarted 50 %, which exchangelib
(Task.clean) resets to 0 % before sending; the link recorded 50 % on both sides while the mailbox
held 0 %. The references: EWS Status and PercentComplete (office-developer-exchange-docs,
web-service-reference/status.md, percentcomplete.md) make Completed, 100 % and a completion
date one thing and NotStarted 0 %; the Dataverse task table (powerapps-docs, reference/entities/
task.md) gives statuscode 2 Not Started, 3 In Progress, 4 Waiting on someone else (state 0 Open),
5 Completed (state 1), 6 Canceled (state 2), 7 Deferred (state 0).
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from exchangelib import Task
from exchangelib.version import EXCHANGE_2016, Version

from sync.kinds.base import Direction
from sync.kinds.tasks import STATUS, TASKS, progress
from sync.mailbox import ews_convert as convert

VERSION = Version(build=EXCHANGE_2016)
STATUSES = (None, *STATUS)
PERCENTS = (None, 0, 1, 25, 50, 99, 100)
ROWS = [
    {"statecode": STATUS[code][0] if code else None, "statuscode": code, "percentcomplete": pct}
    for code, pct in itertools.product(STATUSES, PERCENTS)
]


def _row(code: int | None, percent: int | None) -> dict[str, Any]:
    return {
        "subject": "Call back",
        "statecode": STATUS[code][0] if code else None,
        "statuscode": code,
        "percentcomplete": percent,
    }


def _through_exchangelib(fields: dict[str, Any]) -> dict[str, Any]:
    """What the mailbox holds after a create: the item as exchangelib cleans and sends it."""
    item = Task(**{convert.KEY_FIELD: "crm-1"})
    convert.apply_vocab("tasks", item, fields)
    item.clean(version=VERSION)  # EwsSide._create does this; Task.clean resets a bad percent
    parsed = Task.from_xml(elem=item.to_xml(version=VERSION), account=None)
    return convert.to_vocab("tasks", parsed)


@pytest.mark.parametrize(
    ("status", "percent", "expected"),
    [
        (2, 50, (3, 50)),  # Not Started with a percent: In Progress, the percent kept
        (2, 0, (2, 0)),
        (3, 0, (3, 0)),  # In Progress at 0 %: kept
        (3, 100, (5, 100)),  # 100 % on an open task: Completed
        (4, 100, (5, 100)),
        (4, 30, (4, 30)),
        (5, 40, (5, 100)),  # Completed: 100 %
        (5, None, (5, 100)),
        (6, 30, (7, 30)),  # Canceled: Deferred, the mailbox has no Canceled
        (7, 10, (7, 10)),
        (None, None, (2, 0)),
        (None, 60, (3, 60)),
        (None, 100, (5, 100)),
        (2, 150, (5, 100)),
    ],
)
def test_progress_is_a_pair_the_mailbox_keeps(status: int, percent: int, expected: tuple) -> None:
    assert progress(status, percent) == expected


def test_progress_of_a_canonical_pair_is_itself() -> None:
    for status, percent in itertools.product(STATUSES, range(101)):
        pair = progress(status, percent)
        assert progress(*pair) == pair


def test_crm_not_started_at_fifty_goes_to_the_mailbox_in_progress() -> None:
    values = TASKS.crm_values(_row(2, 50))
    assert (values["statuscode"], values["percentcomplete"]) == (3, 50)
    item = TASKS.mailbox_create(values)
    assert (item["status"], item["percent_complete"]) == ("InProgress", 50)


@pytest.mark.parametrize(("code", "percent"), list(itertools.product(STATUSES, PERCENTS)))
def test_every_crm_pair_reads_back_the_same_from_the_mailbox(
    code: int | None, percent: int | None
) -> None:
    """The fix: whatever pair the CRM holds, the mailbox keeps what is sent, so the link's two
    fingerprints describe what both sides really hold (without it, 12 of 34 demo tasks)."""
    values = TASKS.crm_values(_row(code, percent))
    stored = _through_exchangelib(TASKS.mailbox_create(values))
    back = TASKS.mailbox_values(stored)
    for name in ("statuscode", "percentcomplete"):
        assert back[name] == values[name], (code, percent, name)


def test_writing_the_canonical_pair_to_the_crm_reads_back_the_same() -> None:
    for code, percent in itertools.product(STATUSES, PERCENTS):
        values = TASKS.crm_values(_row(code, percent))
        patch = TASKS.crm_patch(
            {"statuscode": values["statuscode"], "percentcomplete": values["percentcomplete"]}
        )
        assert TASKS.crm_values({**_row(code, percent), **patch}) == values


def test_mailbox_pairs_read_as_the_same_canonical_pair() -> None:
    item = {"status": "NotStarted", "percent_complete": 0}
    assert TASKS.mailbox_values(item)["statuscode"] == 2
    done = TASKS.mailbox_values({"status": "Completed", "percent_complete": 100})
    assert (done["statuscode"], done["percentcomplete"]) == (5, 100)
    assert TASKS.crm_patch({"statuscode": done["statuscode"]}) == {"statecode": 1, "statuscode": 5}
    deferred = TASKS.mailbox_values({"status": "Deferred", "percent_complete": 20})
    assert deferred["statuscode"] == TASKS.crm_values(_row(6, 20))["statuscode"] == 7


def test_both_progress_fields_read_all_three_columns() -> None:
    assert {"statecode", "statuscode", "percentcomplete"} <= set(TASKS.crm_select)
    assert TASKS.direction("statuscode") is Direction.BOTH


# --- the mailbox side: what apply_vocab sends ---------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "base", "expected"),
    [
        ({"status": "NotStarted", "percent_complete": 50}, {}, ("InProgress", 50)),
        ({"status": "Completed", "percent_complete": 40}, {}, ("Completed", 100)),
        ({"status": "WaitingOnOthers", "percent_complete": 100}, {}, ("Completed", 100)),
        ({"status": "NotStarted"}, {"status": "InProgress", "percent_complete": 50}, ("NotStarted", 0)),
        ({"status": "Completed"}, {"status": "InProgress", "percent_complete": 50}, ("Completed", 100)),
        ({"percent_complete": 100}, {"status": "InProgress", "percent_complete": 50}, ("Completed", 100)),
        ({"percent_complete": 30}, {"status": "NotStarted", "percent_complete": 0}, ("InProgress", 30)),
        ({"percent_complete": 30}, {"status": "Completed", "percent_complete": 100}, ("InProgress", 30)),
        ({"status": "Deferred"}, {"status": "Completed", "percent_complete": 100}, ("Deferred", 0)),
        ({"percent_complete": 60}, {"status": "WaitingOnOthers", "percent_complete": 50}, ("WaitingOnOthers", 60)),
    ],
)  # fmt: skip
def test_apply_vocab_sends_a_consistent_pair(
    changes: dict[str, Any], base: dict[str, Any], expected: tuple[str, int]
) -> None:
    item = Task(status=base.get("status", "NotStarted"), percent_complete=0)
    names = convert.apply_vocab("tasks", item, changes, base, new=not base)
    assert (item.status, int(item.percent_complete)) == expected
    for name, value in zip(("status", "percent_complete"), expected, strict=True):
        if name in changes or base.get(name) != value:
            assert name in names, (name, names)
        else:
            assert name not in names, (name, names)  # an update carries only what changed


def test_a_created_task_keeps_its_percent() -> None:
    stored = _through_exchangelib({"subject": "x", "status": "NotStarted", "percent_complete": 50})
    assert (stored["status"], stored["percent_complete"]) == ("InProgress", 50)


def test_a_completed_task_reads_its_completion_date_as_actualend() -> None:
    values = TASKS.mailbox_values(
        {"status": "Completed", "percent_complete": 100, "complete_date": "2026-03-02T10:00:00Z"}
    )
    assert values["actualend"] == dt.date(2026, 3, 2).isoformat()
