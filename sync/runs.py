"""Recording runs and alerts in the store, so the dashboard and `status` can show them.

A run records the process that runs it. A process killed mid-run (SIGKILL, power loss) never
writes the end, and its run would stay "running" for ever, with the dashboard polling every
second beside a progress bar; at start-up `close_interrupted_runs` ends those whose process is
gone as "interrupted".
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from sync.messages import N_, Msg, render, to_json
from sync.store.base import utcnow
from sync.store.db import Database
from sync.store.models import Alert, Run

ProgressListener = Callable[[int, int, str | None], None]
"""Told each progress step of a run besides the store (the command line draws a bar)."""


class RunRecorder:
    """Writes one run's start, progress and end; each call is its own short transaction."""

    def __init__(
        self, database: Database, job: str, trigger: str, listener: ProgressListener | None = None
    ) -> None:
        self.database = database
        self.listener = listener
        pid = os.getpid()
        with database.session() as session:
            run = Run(
                job=job,
                trigger=trigger,
                outcome="running",
                counts={},
                pid=pid,
                host=socket.gethostname(),
                process_start=process_start(pid),
            )
            session.add(run)
            session.flush()
            self.run_id = run.id

    def progress(
        self, done: int, total: int, phase: str | None = None, kind: str | None = None
    ) -> None:
        """Record a step. With `kind`, it updates that kind in the run's progress model
        (sync/progress.py), and the run's done/total become the whole run's percent (of 100),
        as the listener is told too; without, the step's own counts (older callers)."""
        from sync import progress as model

        with self.database.session() as session:
            run = session.get(Run, self.run_id)
            if run is None:
                return
            if kind is not None:
                run.progress = model.updated(run.progress, kind, model.phase_of(phase), done, total)
                done, total = model.percent(run.progress), 100
                phase = model.describe(run.progress)
            run.progress_done, run.progress_total = done, total
            if phase is not None:
                run.phase = phase
        if self.listener is not None:
            self.listener(done, total, phase)

    def counts(self, counts: Mapping[str, Any]) -> None:
        with self.database.session() as session:
            run = session.get(Run, self.run_id)
            if run is not None:
                run.counts = dict(counts)

    def finish(self, outcome: str, message: Msg | str | None = None) -> None:
        """End the run; a `Msg` message is kept as its id too, translated where shown."""
        with self.database.session() as session:
            run = session.get(Run, self.run_id)
            if run is not None:
                run.outcome = outcome
                run.message = None if message is None else render(message)
                run.message_msg = to_json(message) if isinstance(message, Msg) else None
                run.finished_at = utcnow()
                run.phase = None
                if run.progress_total and outcome == "ok":
                    run.progress_done = run.progress_total


INTERRUPTED = "interrupted"


@cache
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When process `pid` started, as a marker that differs for a later process given the same
    pid (boot id and start tick, Linux); None where the system does not tell, or it is gone."""
    boot = _boot_id()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and ")"
    return f"{boot}/{fields[19]}" if boot and len(fields) > 19 else None


def process_gone(run: Run) -> bool:
    """Whether the process that runs `run` has ended. A run of another computer (a data dir
    on a shared disk) cannot be checked and counts as alive; one recorded before runs named
    their process (pid None) counts as gone, as no run of an older version can be going on."""
    if run.pid is None:
        return True
    if run.host != socket.gethostname():
        return False
    try:
        os.kill(run.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's: a reused pid, ours was this user's
    if run.process_start is None:
        return False
    now = process_start(run.pid)
    return now is not None and now != run.process_start


def close_interrupted_runs(database: Database) -> list[int]:
    """End, as "interrupted", the runs still "running" whose process is gone; returns their
    ids. Called at start-up (serve, sync --once), before this process starts any run."""
    with database.session() as session:
        closed = []
        for run in list(session.scalars(select(Run).where(Run.outcome == "running"))):
            if not process_gone(run):
                continue
            message = (
                N_(
                    "Interrupted: its process (%(pid)s) ended before the run did; "
                    "the next run goes on from what it saved.",
                    pid=run.pid,
                )
                if run.pid is not None
                else N_("Interrupted: its process ended before the run did.")
            )
            # only if still running: the process may have finished it since it was read
            done = session.execute(
                update(Run)
                .where(Run.id == run.id, Run.outcome == "running")
                .values(
                    outcome=INTERRUPTED,
                    message=render(message),
                    message_msg=to_json(message),
                    finished_at=utcnow(),
                    phase=None,
                )
            )
            if getattr(done, "rowcount", 0):
                closed.append(run.id)
        return closed


def recent_runs(database: Database, limit: int = 20, job: str | None = None) -> list[Run]:
    """The newest runs first."""
    query = select(Run).order_by(Run.id.desc()).limit(limit)
    if job is not None:
        query = query.where(Run.job == job)
    with database.session() as session:
        return list(session.scalars(query))


def raise_alert(
    database: Database,
    code: str,
    title: Msg | str,
    message: Msg | str = "",
    action: Msg | str = "",
    severity: str = "warning",
    subject: str = "",
) -> None:
    """Open an alert, or bump the open one with the same code and subject.

    Title, message and action given as `Msg` are kept as ids too (`Alert.texts`), so the page
    shows them in the reader's language; the text columns keep the English."""
    texts = {
        name: to_json(value)
        for name, value in (("title", title), ("message", message), ("action", action))
        if isinstance(value, Msg)
    } or None
    title, message, action = render(title), render(message), render(action)
    with database.session() as session:
        alert = session.scalars(
            select(Alert).where(
                Alert.code == code, Alert.subject == subject, Alert.resolved_at.is_(None)
            )
        ).first()
        if alert is None:
            session.add(
                Alert(
                    code=code,
                    subject=subject,
                    title=title,
                    message=message,
                    action=action,
                    severity=severity,
                    texts=texts,
                )
            )
        else:
            alert.count += 1
            alert.last_seen_at = utcnow()
            alert.title, alert.message, alert.action = title, message, action
            alert.texts = texts


def resolve_alerts(database: Database, code: str, subject: str = "") -> None:
    with database.session() as session:
        for alert in session.scalars(
            select(Alert).where(
                Alert.code == code, Alert.subject == subject, Alert.resolved_at.is_(None)
            )
        ):
            alert.resolved_at = utcnow()


def open_alerts(database: Database) -> list[Alert]:
    with database.session() as session:
        return list(
            session.scalars(
                select(Alert).where(Alert.resolved_at.is_(None)).order_by(Alert.id.desc())
            )
        )


def dismiss_alert(database: Database, alert_id: int) -> None:
    """The user says it is dealt with; the same problem raises a new alert next time."""
    with database.session() as session:
        alert = session.get(Alert, alert_id)
        if alert is not None and alert.resolved_at is None:
            alert.resolved_at = utcnow()
