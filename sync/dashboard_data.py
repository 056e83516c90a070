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

from sync.messages import NP_, from_json
from sync.runs import recent_runs
from sync.settings import get_setting
from sync.setup.mailbox import ACT_ALERT
from sync.setup.messages import N_, Msg
from sync.setup.profile import CHOICES_SAVED
from sync.store.db import Database
from sync.store.models import Alert, Link, Run, Setting

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


# --- history (issue 11 point 7) -------------------------------------------------------------
TRIGGER_WORDS: dict[str, Msg] = {
    "schedule": N_("On schedule"),
    "now": N_("Sync now"),
    "cli": N_("Command line"),
    "change": N_("Change seen"),
}
"""What started a run, in people's words (the stored value is the scheduler's name)."""


def trigger_word(trigger: str) -> Msg | str:
    return TRIGGER_WORDS.get(trigger, trigger)


def setup_finished_at(database: Database) -> datetime | None:
    """When setup finished: the wizard's last step (What to sync) saved, which it allows only
    once every step before it is done (sync/setup/profile.py). None while it has not."""
    with database.session() as session:
        row = session.get(Setting, CHOICES_SAVED)
        return row.updated_at if row is not None and row.value else None


QUIET_MESSAGE = "Nothing changed."
"""What a run that changed nothing says (sync/messaging.py)."""


def quiet(run: Run) -> bool:
    """A run that ended well, changed nothing and said no more: one of many, told together."""
    if run.outcome != "ok" or run_changes(run):
        return False
    said = (run.message_msg or {}).get("id") if isinstance(run.message_msg, Mapping) else None
    if (said or run.message or QUIET_MESSAGE) != QUIET_MESSAGE:
        return False
    return not any(
        isinstance(c, Mapping) and (c.get("errors") or c.get("conflicts"))
        for c in (run.counts or {}).values()
    )


@dataclass
class HistoryRow:
    """A row of the runs table: one run, or consecutive quiet runs told as one."""

    run: Run
    """The run shown (for a quiet group: its newest)."""
    quiet_count: int = 1
    quiet_since: datetime | None = None
    """For a quiet group: when its oldest run started."""

    @property
    def grouped(self) -> bool:
        return self.quiet_count > 1


def history_rows(
    runs: Sequence[Run], since: datetime | None = None, limit: int = 15
) -> list[HistoryRow]:
    """The newest runs first, none started before `since` (setup finished), consecutive quiet
    runs collapsed into one row; failures and runs with changes keep their own row."""
    shown: list[HistoryRow] = []
    for run in runs:
        if since is not None and run.started_at < since:
            continue
        last = shown[-1] if shown else None
        if last is not None and quiet(run) and quiet(last.run):
            last.quiet_count += 1
            last.quiet_since = run.started_at
            continue
        if len(shown) == limit:
            break
        shown.append(HistoryRow(run, quiet_since=run.started_at))
    return shown


@dataclass
class Tick:
    """An axis tick: where (SVG units) and its value (a number, or a time shown by the page)."""

    at: float
    value: Any


@dataclass
class ScaledChart:
    """Changes per run against time, with both axes' ticks (the SVG is drawn by the page)."""

    width: int
    height: int
    left: int
    bottom: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    bar_width: float
    outcomes: list[str]
    """The outcomes drawn, for the legend."""

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom


def nice_step(most: int, ticks: int = 4) -> int:
    """A round step (1, 2, 5 × 10ⁿ) for about `ticks` ticks up to `most`."""
    rough = max(most / ticks, 1)
    magnitude = 10 ** (len(str(int(rough))) - 1)
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= rough:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover (10 always fits)


def scaled_chart(runs: Sequence[Run], width: int = 640, height: int = 160) -> ScaledChart:
    """Each run a bar at its start time, its height its changes, on a y scale of round ticks
    (0 to at least the most changes) and an x axis of start times, oldest on the left."""
    left, bottom, top, right = 40, 22, 20, 8
    ordered = sorted(runs, key=lambda run: run.started_at)
    most = max((run_changes(run) for run in ordered), default=0)
    step = nice_step(most)
    ceiling = max(step * -(-most // step), step)
    plot_h = height - bottom - top
    plot_w = width - left - right
    y_ticks = [
        Tick(round(height - bottom - plot_h * value / ceiling, 2), value)
        for value in range(0, ceiling + 1, step)
    ]
    start = ordered[0].started_at if ordered else None
    span = (ordered[-1].started_at - start).total_seconds() if ordered and start else 0.0
    bar_width = round(max(2.0, min(12.0, plot_w / max(len(ordered), 1) * 0.7)), 2)

    def x_of(moment: datetime) -> float:
        if not span or start is None:
            return left + plot_w / 2
        return left + bar_width / 2 + (plot_w - bar_width) * (moment - start).total_seconds() / span

    bars = []
    for run in ordered:
        changes = run_changes(run)
        bar_h = max(1.5, plot_h * changes / ceiling)
        seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
        bars.append(
            Bar(
                run_id=run.id,
                x=round(x_of(run.started_at) - bar_width / 2, 2),
                y=round(height - bottom - bar_h, 2),
                height=round(bar_h, 2),
                outcome=run.outcome,
                changes=changes,
                seconds=round(seconds, 1),
                label=f"#{run.id} {run.outcome}: {changes} changes, {seconds:.1f} s",
            )
        )
    x_ticks: list[Tick] = []
    if ordered and start is not None:
        # four steps over the span; under four minutes (ticks by the minute would repeat), its
        # two ends, or its one moment
        steps = 4 if span >= 240 else 1 if span >= 60 else 0
        for index in range(steps + 1):
            moment = start + (ordered[-1].started_at - start) * (index / steps if steps else 0)
            x_ticks.append(Tick(round(x_of(moment), 2), moment))
    outcomes = sorted({run.outcome for run in ordered}, key=_outcome_order)
    return ScaledChart(width, height, left, bottom, bars, y_ticks, x_ticks, bar_width, outcomes)


LEGEND_ORDER = ("ok", "partial", "failed", "skipped", "interrupted", "running")


def _outcome_order(outcome: str) -> tuple[int, str]:
    """The legend's order of outcomes (any other after them, by name)."""
    known = outcome in LEGEND_ORDER
    return (LEGEND_ORDER.index(outcome) if known else len(LEGEND_ORDER), outcome)


# --- per-workload status, as the CRM's mailbox record shows it (issue 11 point 7) ----------
SUCCESS, FAILURE, NOT_RUN = "success", "failure", "not-run"
WORKLOAD_STATES: dict[str, Msg] = {
    SUCCESS: N_("Success"),
    FAILURE: N_("Failure"),
    NOT_RUN: N_("Not run"),
}
WORKLOAD_TITLES: dict[str, Msg] = {
    "incoming": N_("Incoming email"),
    "outgoing": N_("Outgoing email"),
    "act": N_("Appointments, contacts and tasks"),
    "offline": N_("Offline"),
}
WORKLOAD_KINDS: dict[str, tuple[str, ...]] = {
    "incoming": ("email",),
    "outgoing": ("outgoing",),
    "act": ("contacts", "appointments", "recurringappointments", "tasks"),
}
"""The run's counts entries each workload is made of (offline: its own job's runs)."""
WORKLOAD_ALERT_SUBJECTS = {"act": "", "incoming": "incoming", "outgoing": "outgoing"}
"""The subject of the open "method not set" alert of each workload (sync/setup/mailbox.py)."""


@dataclass
class Workload:
    """One workload's status: state, why (a message, or the server's words) and what to do."""

    key: str
    title: Msg
    state: str
    reason: Msg | str | None = None
    fix: Msg | str | None = None
    at: datetime | None = None

    @property
    def state_word(self) -> Msg:
        return WORKLOAD_STATES[self.state]


def _said(entry: Mapping[str, Any]) -> Msg | str | None:
    """What a counts entry says about why its kind did not run (None: it ran)."""
    if not isinstance(entry, Mapping):
        return None
    said = from_json(entry.get("message_msg")) or entry.get("message")
    return said if said else None  # a kind that ran has "message": None


def _alert_fix(alerts: Sequence[Alert], subject: str) -> Msg | str | None:
    for alert in alerts:
        if alert.code == ACT_ALERT and alert.subject == subject:
            return from_json((alert.texts or {}).get("action")) or alert.action or None
    return None


def workload_statuses(
    database: Database, enabled: Iterable[str], runs: Sequence[Run], alerts: Sequence[Alert]
) -> list[Workload]:
    """Incoming email, Outgoing email, Appointments contacts and tasks, Offline: each Success,
    Failure or Not run from the newest run that did its work, with the reason and the fix."""
    enabled = set(enabled)
    email_on = email_kinds_enabled(database)
    chosen = {
        "incoming": "email" in email_on,
        "outgoing": "outgoing" in email_on,
        "act": bool(enabled & set(WORKLOAD_KINDS["act"])),
        "offline": any(run.job == "offline" for run in runs),
    }
    statuses = []
    for key, title in WORKLOAD_TITLES.items():
        status = Workload(key, title, NOT_RUN)
        statuses.append(status)
        if not chosen[key]:
            status.reason = N_("Not chosen in the setup.")
            status.fix = N_("To sync it, choose it in the setup wizard (What to sync).")
            continue
        status.reason = N_("No sync has done it yet.")
        status.fix = N_("Press Sync now, or wait for the schedule.")
        for run in runs:
            if run.outcome == "running" or run.job != (
                "offline" if key == "offline" else "messaging"
            ):
                continue
            if key == "offline":
                _judge_run(status, run)
                break
            entries = [
                (run.counts or {})[kind]
                for kind in WORKLOAD_KINDS[key]
                if isinstance((run.counts or {}).get(kind), Mapping)
            ]
            if not entries and run.outcome != "failed":
                continue
            _judge_entries(status, run, entries)
            if status.state == FAILURE and key in WORKLOAD_ALERT_SUBJECTS:
                status.fix = _alert_fix(alerts, WORKLOAD_ALERT_SUBJECTS[key]) or status.fix
            break
    return statuses


def _judge_run(status: Workload, run: Run) -> None:
    status.at = run.started_at
    ok = run.outcome in ("ok", "partial")
    status.state = SUCCESS if ok else NOT_RUN if run.outcome == "skipped" else FAILURE
    status.reason = from_json(run.message_msg) or run.message
    status.fix = None if ok else N_("See the Log page for what failed.")


def _judge_entries(status: Workload, run: Run, entries: Sequence[Mapping[str, Any]]) -> None:
    status.at = run.started_at
    said = next((s for s in map(_said, entries) if s is not None), None)
    errors = sum(int(e.get("errors") or 0) for e in entries)
    if not entries:  # the run failed before this workload
        status.state = FAILURE
        status.reason = from_json(run.message_msg) or run.message
        status.fix = N_("See the Log page for what failed.")
    elif said is not None:
        status.state = FAILURE
        status.reason = said
        status.fix = N_("See the alert on this page for what to do.")
    elif errors:
        status.state = FAILURE
        status.reason = NP_(
            "%(num)d item failed (retried later)", "%(num)d items failed (retried later)", errors
        )
        status.fix = N_("See the Log page for each item and why.")
    else:
        status.state, status.reason, status.fix = SUCCESS, None, None


# --- the Log page's activity (issue 11 point 8) ---------------------------------------------
SIDE_WORDS: dict[str, Msg] = {"crm": N_("CRM"), "mailbox": N_("mailbox")}


def side_word(side: str) -> Msg | str:
    """A side's name for people ("CRM", "mailbox")."""
    return SIDE_WORDS.get(side, side)


def run_summary(run: Run) -> list[Msg | str]:
    """What one run did, a line per kind: its writes each way, what failed and why."""
    from sync.progress import KIND_TITLES, SHOWN_AS

    lines: list[Msg | str] = []
    for kind, counts in (run.counts or {}).items():
        if not isinstance(counts, Mapping):
            continue
        title = KIND_TITLES.get(SHOWN_AS.get(kind, kind), kind)
        said = _said(counts)
        if said is not None:
            lines.append(N_("%(kind)s: not run: %(reason)s", kind=title, reason=said))
            continue
        to_crm, to_mailbox, other = split_counts(kind, counts)
        for side, done in (("mailbox", to_mailbox), ("crm", to_crm)):
            for action, n in done.items():
                lines.append(
                    N_(
                        "%(kind)s: %(num)s %(action)s → %(side)s",
                        kind=title,
                        num=n,
                        action=N_(ACTION_LABELS.get(action, action)),
                        side=SIDE_WORDS[side],
                    )
                )
        for action, n in other.items():
            lines.append(
                N_(
                    "%(kind)s: %(num)s %(action)s",
                    kind=title,
                    num=n,
                    action=N_(ACTION_LABELS.get(action, action)),
                )
            )
        errors = int(counts.get("errors") or 0)
        if errors:
            lines.append(
                N_(
                    "%(kind)s: %(problem)s",
                    kind=title,
                    problem=NP_(
                        "%(num)d item failed (retried later)",
                        "%(num)d items failed (retried later)",
                        errors,
                    ),
                )
            )
        conflicts = int(counts.get("conflicts") or 0)
        if conflicts:
            lines.append(
                N_(
                    "%(kind)s: %(problem)s",
                    kind=title,
                    problem=NP_("%(num)d conflict", "%(num)d conflicts", conflicts),
                )
            )
    return lines


@dataclass
class FailedItem:
    """An item that failed and is retried: which, where, what was tried and the error."""

    kind: Msg | str
    side: Msg | str
    operation: str
    item_id: str
    message: str
    attempts: int
    at: datetime


def failed_items(database: Database, limit: int = 50) -> list[FailedItem]:
    """The items waiting for a retry, the newest first."""
    from sync.progress import KIND_TITLES, SHOWN_AS
    from sync.store.models import ItemError

    with database.session() as session:
        rows = session.scalars(
            select(ItemError).order_by(ItemError.created_at.desc()).limit(limit)
        ).all()
        return [
            FailedItem(
                kind=KIND_TITLES.get(SHOWN_AS.get(row.kind, row.kind), row.kind),
                side=SIDE_WORDS.get(row.side, row.side),
                operation=row.operation,
                item_id=row.item_id,
                message=row.message,
                attempts=row.attempts,
                at=row.created_at,
            )
            for row in rows
        ]


# --- the change watchers (issue 9 part 4) ---------------------------------------------------


@dataclass(frozen=True)
class WatchLine:
    """What the dashboard says about hearing changes as they happen."""

    watching: tuple[str, ...]
    """Which sides are watched now ("mailbox", "crm")."""
    down: tuple[str, ...]
    """Which sides' watchers are down (the schedule syncs meanwhile)."""
    last_change_at: datetime | None
    """The latest change a watcher heard (UTC, naive as the store's times)."""
    delay_seconds: float | None
    """From that change to the end of the first run after it (None: no such run yet)."""


def watch_line(database: Database) -> WatchLine | None:
    """The watchers' state for the dashboard; None while neither has ever run."""
    from sync.watcher import read_status

    statuses = {name: read_status(database, name) for name in ("mailbox", "crm")}
    if not any(statuses.values()):
        return None
    watching = tuple(n for n, st in statuses.items() if st.get("state") == "watching")
    down = tuple(n for n, st in statuses.items() if st.get("state") == "down")
    moments = [_moment(st.get("last_change_at")) for st in statuses.values()]
    last = max((m for m in moments if m is not None), default=None)
    delay = None
    if last is not None:
        with database.session() as session:
            after = session.scalars(
                select(Run.finished_at)
                .where(Run.job == "messaging", Run.started_at >= last, Run.finished_at.is_not(None))
                .order_by(Run.started_at)
                .limit(1)
            ).first()
        if after is not None:
            delay = max((after - last).total_seconds(), 0.0)
    return WatchLine(watching, down, last, delay)


def _moment(text: Any) -> datetime | None:
    """An ISO time the watcher wrote, as the store's naive UTC (None: absent or unreadable)."""
    from datetime import UTC

    try:
        moment = datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None
    if moment is not None and moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment
