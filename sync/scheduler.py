"""The in-process scheduler: one BackgroundScheduler, a job per service job, fixed ids.

Started by `run.py serve` only, never by `create_app`, so tests and reloaders never start it and
never twice in one process (APScheduler's FAQ). "Sync now" moves a job's next run to now. A job
the service has no body for (offline, until it is built) is not scheduled at all.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from sync.service import MESSAGING, OFFLINE, SyncService

JOB_IDS = {MESSAGING: "messaging-sync", OFFLINE: "offline-sync"}

_started = threading.Lock()


class AlreadyStarted(RuntimeError):
    """A scheduler runs in this process already."""


class SyncScheduler:
    """The app's scheduler: messaging sync every `interval`, offline sync every `offline_interval`."""

    def __init__(
        self, service: SyncService, interval: float = 60, offline_interval: float = 300
    ) -> None:
        self.service = service
        self.interval = interval
        self.offline_interval = offline_interval
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._asked: set[str] = set()
        """Jobs whose next run the user asked for (Sync now): recorded with trigger "now"."""
        self._asked_lock = threading.Lock()

    def start(self) -> None:
        if not _started.acquire(blocking=False):
            raise AlreadyStarted("a scheduler is already running in this process")
        for job, seconds in ((MESSAGING, self.interval), (OFFLINE, self.offline_interval)):
            if not self.service.has_job(job):
                continue
            self._scheduler.add_job(
                self._run,
                "interval",
                args=[job],
                seconds=seconds,
                id=JOB_IDS[job],
                name=f"{job} sync",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(int(seconds), 30),
                next_run_time=datetime.now(UTC),
            )
        self._scheduler.start()

    def _run(self, job: str) -> None:
        with self._asked_lock:
            trigger = "now" if job in self._asked else "schedule"
            self._asked.discard(job)
        self.service.run(job, trigger)

    def sync_now(self, job: str = MESSAGING) -> None:
        """Run `job` as soon as possible: its next run time becomes now (a job that is not
        scheduled has nothing to run)."""
        if self._scheduler.get_job(JOB_IDS[job]) is None:
            return
        with self._asked_lock:
            self._asked.add(job)
        self._scheduler.modify_job(JOB_IDS[job], next_run_time=datetime.now(UTC))

    def next_run(self, job: str = MESSAGING) -> datetime | None:
        found = self._scheduler.get_job(JOB_IDS[job])
        return found.next_run_time if found is not None else None

    def reschedule(self, job: str, seconds: float) -> None:
        if self._scheduler.get_job(JOB_IDS[job]) is not None:
            self._scheduler.reschedule_job(JOB_IDS[job], trigger="interval", seconds=seconds)

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
            _started.release()
