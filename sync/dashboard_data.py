"""What the dashboard shows, computed from the store: per-kind status and the run-history chart.

Pure queries and arithmetic, no Flask, so `status --json` and the web pages tell the same story.
A run's `counts` is `{kind: {"crm": {...}, "mailbox": {...}, "errors": n, "conflicts": n}}`,
where `"crm"` holds the writes made *in* the CRM (mailbox → CRM) and `"mailbox"` the writes made in
the mailbox (CRM → mailbox). Email keeps flat counts (`counts["email"]`: tracked, linked,
untracked, attachments_skipped, errors; `counts["outgoing"]`: sent, failed, already_sent, errors),
read into the same two sides by `split_counts`, so every card and the chart use one model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from sync.runs import recent_runs
from sync.settings import get_setting
from sync.store.db import Database
from sync.store.models import Link, Run

MESSAGING_KINDS: tuple[tuple[str, str], ...] = (
    ("contacts", "Contacts"),
    ("appointments", "Appointments"),
    ("tasks", "Tasks"),
)
"""One card per kind that syncs today (the email cards: EMAIL_KINDS). Offline data gets its
card (DESIGN.md 1.2) when it is built: a card for work nothing does would say "never" or
"skipped" for ever."""
LINK_KINDS: dict[str, str] = {"recurringappointments": "appointments"}
"""Engine kinds shown on another kind's card (a recurring series is an appointment to the user)."""
ACTIONS = ("created", "updated", "deleted", "tracked", "sent")

# --- email cards (issue 8 part 7) ---------------------------------------------------------
EMAIL_KINDS: tuple[tuple[str, str], ...] = (
    ("email", "Email tracking"),
    ("outgoing", "Outgoing email"),
)
"""Cards shown only while the profile turns the work on (`email_kinds_enabled`)."""
FLAT_COUNTS: dict[str, dict[str, str]] = {
    "email": {
        "tracked": "crm",
        "linked": "crm",
        "untracked": "other",
        "attachments_skipped": "other",
    },
    "outgoing": {"sent": "mailbox", "already_sent": "other", "failed": "other"},
}
"""Where each flat count of an email kind goes on the card: a write in the CRM (a tracked
message, one linked to the CRM email that was there already), in the mailbox (a CRM email sent
through it), or neither (untracked, skipped attachments, sends refused, found already sent)."""
ACTION_LABELS: dict[str, str] = {
    "attachments_skipped": "attachments skipped",
    "already_sent": "already sent",
    "failed": "not sent (refused)",
}
"""Words for the count keys that are not words themselves (translated where shown)."""


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
    other: dict[str, int] = field(default_factory=dict)
    """What the last run did that is no write on either side (e.g. untracked, skipped)."""
    totals: dict[str, int] = field(default_factory=dict)
    """Each count summed over every run (the email cards: tracked, sent, … so far)."""

    def action_label(self, action: str) -> str:
        """The English words for a count's key (the page translates them)."""
        return ACTION_LABELS.get(action, action)


def split_counts(
    kind: str, counts: Mapping[str, Any] | None
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """One kind's counts in a run as (to_crm, to_mailbox, other), whichever shape it has."""
    counts = counts or {}
    flat = FLAT_COUNTS.get(kind)
    if flat is None:
        return _nonzero(counts.get("crm")), _nonzero(counts.get("mailbox")), {}
    sides: dict[str, dict[str, int]] = {"crm": {}, "mailbox": {}, "other": {}}
    for key, side in flat.items():
        value = counts.get(key)
        if isinstance(value, int) and value:
            sides[side][key] = value
    return sides["crm"], sides["mailbox"], sides["other"]


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


def email_kinds_enabled(database: Database) -> set[str]:
    """The email cards the profile turns on (keys: sync.mail.ports' docstring): "email" while
    a tracking option other than "none" is chosen or a folder is tracked, "outgoing" while CRM
    email is sent through the mailbox."""
    kinds = set()
    option = get_setting(database, "tracking_option")
    if (option and option != "none") or get_setting(database, "tracked_folders"):
        kinds.add("email")
    if get_setting(database, "send_crm_email"):
        kinds.add("outgoing")
    return kinds


def history_totals(database: Database, kind: str) -> dict[str, int]:
    """The flat counts of an email kind summed over every run, in one query (no run is loaded)."""
    keys = list(FLAT_COUNTS[kind])
    sums = [func.coalesce(func.sum(Run.counts[(kind, key)].as_integer()), 0) for key in keys]
    with database.session() as session:
        row = session.execute(select(*sums)).one()
    return {key: int(n) for key, n in zip(keys, row, strict=True) if n}


def kind_statuses(
    database: Database, enabled: Iterable[str], history: int = 50
) -> list[KindStatus]:
    """Each kind's state from the newest run that did something about it; the email cards
    only while their work is turned on."""
    runs = recent_runs(database, limit=history)
    enabled = set(enabled)
    linked = linked_counts(database)
    email_on = email_kinds_enabled(database)
    shown = [*MESSAGING_KINDS, *((k, label) for k, label in EMAIL_KINDS if k in email_on)]
    statuses = []
    for kind, label in shown:
        on = kind in enabled or kind in email_on
        status = KindStatus(kind, label, "never" if on else "off")
        status.in_sync = linked.get(kind, 0) if kind not in FLAT_COUNTS else 0
        if kind in FLAT_COUNTS:
            status.totals = history_totals(database, kind)
        for run in runs:
            if run.job != "messaging":
                continue
            counts = (run.counts or {}).get(kind)
            if counts is None and run.outcome not in ("running", "failed"):
                continue
            status.last_run_at, status.last_run_id = run.started_at, run.id
            status.state = run.outcome if on else "off"
            status.message = run.message if counts is None else counts.get("message")
            if counts:
                status.to_crm, status.to_mailbox, status.other = split_counts(kind, counts)
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
    for kind, counts in (run.counts or {}).items():
        if isinstance(counts, Mapping):
            to_crm, to_mailbox, _other = split_counts(kind, counts)
            total += sum(to_crm.values()) + sum(to_mailbox.values())
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
