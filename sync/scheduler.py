"""The in-process scheduler: one BackgroundScheduler, a job per service job, fixed ids.

Started by `run.py serve` only, never by `create_app`, so tests and reloaders never start it and
never twice in one process (APScheduler's FAQ). "Sync now" moves a job's next run to now. A job
the service has no body for is not scheduled at all; one whose body is not ready (offline with
no offline filter chosen) is scheduled but its runs do nothing and record nothing.
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
        self._asked: dict[str, str] = {}
        """Jobs whose next run was asked for, with the trigger to record: "now" (Sync now),
        "change" (the change watcher saw the mailbox change)."""
        self._running: set[str] = set()
        self._again: dict[str, str] = {}
        """Asked for while running: APScheduler would skip a run while one is going
        (max_instances=1), so the job runs again as soon as the current run ends."""
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
        if not self.service.is_ready(job):  # offline (issue 12): no offline filter chosen yet
            return
        with self._asked_lock:
            trigger = self._asked.pop(job, "schedule")
            self._running.add(job)
        try:
            self.service.run(job, trigger)
        finally:
            with self._asked_lock:
                self._running.discard(job)
                again = self._again.pop(job, None)
            if again is not None:
                self.sync_now(job, again)

    def sync_now(self, job: str = MESSAGING, trigger: str = "now") -> None:
        """Run `job` as soon as possible: its next run time becomes now, or, while it runs,
        right after this run (a job that is not scheduled has nothing to run). `trigger` is
        what the run records: "now" (the user), "change" (the change watcher)."""
        if self._scheduler.get_job(JOB_IDS[job]) is None:
            return
        with self._asked_lock:
            if job in self._running:
                # the user's word wins over the watcher's when both asked
                if self._again.get(job) != "now":
                    self._again[job] = trigger
                return
            if self._asked.get(job) != "now":
                self._asked[job] = trigger
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
