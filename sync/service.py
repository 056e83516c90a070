"""The jobs the scheduler and the command line run: messaging sync (offline sync once built).

Each run is recorded in the store from start to end, even when there is nothing to do yet, so
the dashboard always tells the user what happened and why. A run holds its job's inter-process
lock (`sync.store.lock`): a second process syncing the same data waits or is skipped, with the
holder named, instead of writing the same records twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sync.conflicts import ReverseError, Reverser, conflict_job, reverse_conflict
from sync.messages import N_, Msg
from sync.runs import ProgressListener, RunRecorder
from sync.store.db import Database
from sync.store.lock import Busy, hold, lock_directory

log = logging.getLogger(__name__)

MESSAGING = "messaging"
OFFLINE = "offline"

Job = Callable[[RunRecorder], tuple[str, Msg | str | None]]
"""A job body: does the work, reports progress on the recorder, returns (outcome, message);
a `Msg` message is shown in the reader's language."""


def _messaging_body(recorder: RunRecorder) -> tuple[str, Msg | str | None]:
    return "skipped", N_("Nothing to sync yet: finish the setup wizard to choose what to sync.")


class SyncService:
    """Runs jobs and records them; one run of a job at a time, in this process (a second caller
    waits its turn) and across processes (`wait` seconds, then the run is skipped)."""

    def __init__(
        self,
        database: Database,
        bodies: dict[str, Job] | None = None,
        listener: ProgressListener | None = None,
        wait: float = 0,
    ) -> None:
        self.database = database
        self.listener = listener
        self.wait = wait
        """Seconds a run waits for another process's run of the same job before it is skipped."""
        self.lock_dir = lock_directory(database.url)
        self.bodies: dict[str, Job] = {MESSAGING: _messaging_body}
        # The offline job runs only when given a body (sync/offline/job.py, wired with the
        # messaging one); a body with a `ready()` (offline filters chosen) is run by the
        # scheduler only while ready, so it records no "skipped" run every few minutes.
        self.bodies.update(bodies or {})
        self._locks = {job: threading.Lock() for job in self.bodies}
        self.reverser: Reverser | None = None
        """Set by the messaging wiring once the sides are configured."""

    def reverse_conflict(self, conflict_id: int) -> str:
        """Take the other value of a recorded conflict (between runs, never during one)."""
        if self.reverser is None:
            raise ReverseError("Connect an organization and a mailbox first: nothing to write to.")
        if conflict_job(self.database, conflict_id) == OFFLINE:
            # the offline reverser holds the offline lock itself: a messaging run in progress
            # (one starts right after going online) must not keep the user waiting
            try:
                return reverse_conflict(self.database, conflict_id, self.reverser)
            except Busy as busy:
                raise ReverseError(str(busy)) from None
        with self._locks[MESSAGING]:
            try:
                with self.holding(MESSAGING, "reversing a conflict"):
                    return reverse_conflict(self.database, conflict_id, self.reverser)
            except Busy as busy:
                raise ReverseError(str(busy)) from None

    def holding(self, job: str, what: str, wait: float | None = None) -> Any:
        """The inter-process lock of `job` (a context manager); raises `Busy`."""
        return hold(self.lock_dir, job, self.wait if wait is None else wait, what)

    def has_job(self, job: str) -> bool:
        """Whether `job` has a body here: only such a job is scheduled and run."""
        return job in self.bodies

    # --- offline (issue 12): a job body may say it has nothing to do yet -----------------------
    def is_ready(self, job: str) -> bool:
        """Whether a scheduled run of `job` should happen now (its body's `ready()`, if any)."""
        ready = getattr(self.bodies.get(job), "ready", None)
        return job in self.bodies and (not callable(ready) or bool(ready()))

    # --- end offline ----------------------------------------------------------------------------

    def run(self, job: str, trigger: str = "schedule") -> int:
        """Run `job` once and return the recorded run's id (a skipped run's when another
        process is running the same job)."""
        with self._locks[job]:
            try:
                with self.holding(job, f"{job} sync ({trigger})"):
                    return self._run_held(job, trigger)
            except Busy as busy:
                recorder = RunRecorder(self.database, job, trigger, self.listener)
                recorder.finish("skipped", busy.msg)
                return recorder.run_id

    def _run_held(self, job: str, trigger: str) -> int:
        recorder = RunRecorder(self.database, job, trigger, self.listener)
        try:
            outcome, message = self.bodies[job](recorder)
        except Exception as error:  # the run is recorded as failed, the scheduler goes on
            log.exception("%s sync failed", job)
            recorder.finish(
                "failed", N_("%(error)s: %(detail)s", error=type(error).__name__, detail=str(error))
            )
        else:
            recorder.finish(outcome, message)
        return recorder.run_id
