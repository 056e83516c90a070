"""Recording runs and alerts in the store, so the dashboard and `status` can show them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select

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
        with database.session() as session:
            run = Run(job=job, trigger=trigger, outcome="running", counts={})
            session.add(run)
            session.flush()
            self.run_id = run.id

    def progress(self, done: int, total: int, phase: str | None = None) -> None:
        if self.listener is not None:
            self.listener(done, total, phase)
        with self.database.session() as session:
            run = session.get(Run, self.run_id)
            if run is not None:
                run.progress_done, run.progress_total = done, total
                if phase is not None:
                    run.phase = phase

    def counts(self, counts: Mapping[str, Any]) -> None:
        with self.database.session() as session:
            run = session.get(Run, self.run_id)
            if run is not None:
                run.counts = dict(counts)

    def finish(self, outcome: str, message: str | None = None) -> None:
        with self.database.session() as session:
            run = session.get(Run, self.run_id)
            if run is not None:
                run.outcome = outcome
                run.message = message
                run.finished_at = utcnow()
                run.phase = None
                if run.progress_total and outcome == "ok":
                    run.progress_done = run.progress_total


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
    title: str,
    message: str = "",
    action: str = "",
    severity: str = "warning",
    subject: str = "",
) -> None:
    """Open an alert, or bump the open one with the same code and subject."""
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
                )
            )
        else:
            alert.count += 1
            alert.last_seen_at = utcnow()
            alert.title, alert.message, alert.action = title, message, action


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
