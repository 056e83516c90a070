"""What the dashboard shows, computed from the store: per-kind status and the run-history chart.

Pure queries and arithmetic, no Flask, so `status --json` and the web pages tell the same story.
A run's `counts` is `{kind: {"crm": {...}, "mailbox": {...}, "errors": n, "conflicts": n}}`,
where `"crm"` holds the writes made *in* the CRM (mailbox → CRM) and `"mailbox"` the writes made in
the mailbox (CRM → mailbox).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from sync.runs import recent_runs
from sync.store.db import Database
from sync.store.models import Link, Run

MESSAGING_KINDS: tuple[tuple[str, str], ...] = (
    ("contacts", "Contacts"),
    ("appointments", "Appointments"),
    ("tasks", "Tasks"),
)
"""One card per kind that syncs today. Email tracking, outgoing email and offline data get
theirs (DESIGN.md 1.2) when they are built: a card for work nothing does would say "never" or
"skipped" for ever."""
LINK_KINDS: dict[str, str] = {"recurringappointments": "appointments"}
"""Engine kinds shown on another kind's card (a recurring series is an appointment to the user)."""
ACTIONS = ("created", "updated", "deleted", "tracked", "sent")


@dataclass
class KindStatus:
    """The card of one kind on the dashboard."""

    kind: str
    label: str
    state: str
    """never | running | ok | partial | failed | skipped | off"""
    last_run_at: datetime | None = None
    last_run_id: int | None = None
    to_crm: dict[str, int] = field(default_factory=dict)
    to_mailbox: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    conflicts: int = 0
    message: str | None = None
    in_sync: int = 0
    """Records linked on both sides now (not what the last run did: what stays in step)."""


def _nonzero(counts: Mapping[str, Any] | None) -> dict[str, int]:
    return {action: int(n) for action, n in (counts or {}).items() if n}


def linked_counts(database: Database) -> dict[str, int]:
    """How many CRM records each dashboard kind keeps linked to a mailbox item."""
    query = (
        select(Link.kind, func.count())
        .where(Link.state != "retired", Link.mailbox_id.is_not(None))
        .group_by(Link.kind)
    )
    totals: dict[str, int] = {}
    with database.session() as session:
        for kind, n in session.execute(query):
            shown = LINK_KINDS.get(kind, kind)
            totals[shown] = totals.get(shown, 0) + int(n)
    return totals


def kind_statuses(
    database: Database, enabled: Iterable[str], history: int = 50
) -> list[KindStatus]:
    """Each kind's state from the newest run that did something about it."""
    runs = recent_runs(database, limit=history)
    enabled = set(enabled)
    linked = linked_counts(database)
    statuses = []
    for kind, label in MESSAGING_KINDS:
        status = KindStatus(kind, label, "never" if kind in enabled else "off")
        status.in_sync = linked.get(kind, 0)
        for run in runs:
            if run.job != "messaging":
                continue
            counts = (run.counts or {}).get(kind)
            if counts is None and run.outcome not in ("running", "failed"):
                continue
            status.last_run_at, status.last_run_id = run.started_at, run.id
            status.state = run.outcome if kind in enabled else "off"
            status.message = run.message if counts is None else counts.get("message")
            if counts:
                status.to_crm = _nonzero(counts.get("crm"))
                status.to_mailbox = _nonzero(counts.get("mailbox"))
                status.errors = int(counts.get("errors", 0))
                status.conflicts = int(counts.get("conflicts", 0))
            break
        statuses.append(status)
    return statuses


@dataclass
class Bar:
    """One run in the history chart (SVG coordinates already computed)."""

    run_id: int
    x: float
    y: float
    height: float
    outcome: str
    changes: int
    seconds: float
    label: str


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar]
    max_changes: int
    bar_width: float


def run_changes(run: Run) -> int:
    """All writes a run made, both ways, every kind."""
    total = 0
    for counts in (run.counts or {}).values():
        if isinstance(counts, Mapping):
            for side in ("crm", "mailbox"):
                total += sum(int(n) for n in (counts.get(side) or {}).values())
    return total


def history_chart(runs: Sequence[Run], width: int = 640, height: int = 120) -> Chart:
    """Bars of changes per run, oldest on the left; a run with no change still shows a stub."""
    ordered = sorted(runs, key=lambda run: run.id)
    most = max((run_changes(run) for run in ordered), default=0) or 1
    slot = width / max(len(ordered), 1)
    bar_width = max(slot * 0.7, 1.0)
    bars = []
    for index, run in enumerate(ordered):
        changes = run_changes(run)
        bar_height = max(2.0, (height - 4) * changes / most)
        seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
        bars.append(
            Bar(
                run_id=run.id,
                x=round(index * slot + (slot - bar_width) / 2, 2),
                y=round(height - bar_height, 2),
                height=round(bar_height, 2),
                outcome=run.outcome,
                changes=changes,
                seconds=round(seconds, 1),
                label=f"#{run.id} {run.outcome}: {changes} changes, {seconds:.1f} s",
            )
        )
    return Chart(width, height, bars, most, round(bar_width, 2))
