"""The jobs the scheduler and the command line run: one messaging sync, one offline sync.

Each run is recorded in the store from start to end, even when there is nothing to do yet, so
the dashboard always tells the user what happened and why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sync.conflicts import ReverseError, Reverser, reverse_conflict
from sync.runs import ProgressListener, RunRecorder
from sync.store.db import Database

log = logging.getLogger(__name__)

MESSAGING = "messaging"
OFFLINE = "offline"

Job = Callable[[RunRecorder], tuple[str, str | None]]
"""A job body: does the work, reports progress on the recorder, returns (outcome, message)."""


def _messaging_body(recorder: RunRecorder) -> tuple[str, str | None]:
    return "skipped", "Nothing to sync yet: finish the setup wizard to choose what to sync."


def _offline_body(recorder: RunRecorder) -> tuple[str, str | None]:
    return "skipped", "Offline is off: no offline filters are chosen."


class SyncService:
    """Runs jobs and records them; one run of a job at a time (a second caller waits its turn)."""

    def __init__(
        self,
        database: Database,
        bodies: dict[str, Job] | None = None,
        listener: ProgressListener | None = None,
    ) -> None:
        self.database = database
        self.listener = listener
        self.bodies: dict[str, Job] = {MESSAGING: _messaging_body, OFFLINE: _offline_body}
        self.bodies.update(bodies or {})
        self._locks = {job: threading.Lock() for job in self.bodies}
        self.reverser: Reverser | None = None
        """Set by the messaging wiring once the sides are configured."""

    def reverse_conflict(self, conflict_id: int) -> str:
        """Take the other value of a recorded conflict (between runs, never during one)."""
        if self.reverser is None:
            raise ReverseError("Connect an organization and a mailbox first: nothing to write to.")
        with self._locks[MESSAGING]:
            return reverse_conflict(self.database, conflict_id, self.reverser)

    def run(self, job: str, trigger: str = "schedule") -> int:
        """Run `job` once and return the recorded run's id."""
        with self._locks[job]:
            recorder = RunRecorder(self.database, job, trigger, self.listener)
            try:
                outcome, message = self.bodies[job](recorder)
            except Exception as error:  # the run is recorded as failed, the scheduler goes on
                log.exception("%s sync failed", job)
                recorder.finish("failed", f"{type(error).__name__}: {error}")
            else:
                recorder.finish(outcome, message)
            return recorder.run_id
