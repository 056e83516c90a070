"""The scheduled offline job: "update local data" while online, as its own runs (job
"offline"), separate from messaging sync. While offline it makes no CRM call."""

from __future__ import annotations

from sync.messages import N_, Msg
from sync.offline.service import OfflineService, counts_of
from sync.offline.store import get_mode
from sync.runs import RunRecorder


class OfflineJob:
    """A `sync.service.Job`: refresh the local copy by change tracking."""

    def __init__(self, service: OfflineService) -> None:
        self.service = service

    def ready(self) -> bool:
        """Scheduled only when at least one offline filter is chosen."""
        return self.service.is_set_up()

    def __call__(self, recorder: RunRecorder) -> tuple[str, Msg | str | None]:
        if not self.service.is_set_up():
            return "skipped", N_("No offline filters are chosen.")
        if get_mode(self.service.database) == "offline":
            return "skipped", N_("Working offline: local data is updated when you go online.")

        def progress(phase: str, done: int, total: int) -> None:
            # the run progress model's phases (sync/progress.py): sending is its "apply"
            recorder.progress(done, total, "apply" if phase == "replay" else "read", "offline")

        result = self.service.refresh(progress)
        recorder.counts({"offline": dict(counts_of(result, None))})
        changed = sum(result.rows.values()) if result is not None else 0
        return "ok", N_("Local data updated: %(count)s rows changed.", count=changed)
