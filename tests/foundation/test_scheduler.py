"""The scheduler: fixed jobs, never two schedulers, Sync now, every run recorded."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sync.runs import recent_runs
from sync.scheduler import JOB_IDS, AlreadyStarted, SyncScheduler
from sync.service import MESSAGING, OFFLINE, SyncService
from sync.store.db import open_database


def _wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_jobs_have_fixed_ids_and_limits_and_runs_are_recorded(data_dir: Path) -> None:
    database = open_database(data_dir)
    offline = lambda _recorder: ("ok", None)  # noqa: E731 (offline, once it is built)
    service = SyncService(database, {OFFLINE: offline})
    scheduler = SyncScheduler(service, interval=3600, offline_interval=3600)
    scheduler.start()
    try:
        jobs = {job.id: job for job in scheduler._scheduler.get_jobs()}
        assert set(jobs) == set(JOB_IDS.values())
        for job in jobs.values():
            assert job.max_instances == 1 and job.coalesce is True
        # both jobs run at start, and each run is in the store with its end and outcome
        _wait_for(
            lambda: {r.job for r in recent_runs(database) if r.finished_at} >= {MESSAGING, OFFLINE}
        )
        with pytest.raises(AlreadyStarted):
            SyncScheduler(SyncService(database)).start()
    finally:
        scheduler.shutdown()


def test_sync_now_moves_the_next_run_to_now(data_dir: Path) -> None:
    database = open_database(data_dir)
    scheduler = SyncScheduler(SyncService(database), interval=3600, offline_interval=3600)
    scheduler.start()
    try:
        _wait_for(
            lambda: len([r for r in recent_runs(database, job=MESSAGING) if r.finished_at]) == 1
        )
        next_run = scheduler.next_run(MESSAGING)
        assert next_run is not None and next_run > datetime.now(UTC) + timedelta(minutes=30)
        scheduler.sync_now(MESSAGING)
        _wait_for(
            lambda: len([r for r in recent_runs(database, job=MESSAGING) if r.finished_at]) == 2
        )
        # the run the user asked for says so; the one at start was the schedule's
        assert [r.trigger for r in recent_runs(database, job=MESSAGING)] == ["now", "schedule"]
    finally:
        scheduler.shutdown()


def test_a_failing_job_is_recorded_as_failed(data_dir: Path) -> None:
    database = open_database(data_dir)

    def broken(_recorder):  # type: ignore[no-untyped-def]
        raise RuntimeError("the mailbox is on fire")

    service = SyncService(database, {MESSAGING: broken})
    run_id = service.run(MESSAGING, "cli")
    (run,) = [r for r in recent_runs(database) if r.id == run_id]
    assert run.outcome == "failed" and "on fire" in (run.message or "")
    assert run.finished_at is not None


def test_a_run_while_another_process_syncs_the_same_data_is_skipped_naming_it(
    data_dir: Path,
) -> None:
    """Issue 14: the scheduler's run does not write beside a `sync --once` of the same data
    directory; it is recorded as skipped, with who holds the data (and nothing else runs)."""
    import subprocess
    import sys

    database = open_database(data_dir)
    ran: list[str] = []
    service = SyncService(database, {MESSAGING: lambda _r: (ran.append("x"), ("ok", None))[1]})
    script = (
        "import sys, time; from pathlib import Path; from sync.store.lock import hold\n"
        "with hold(Path(sys.argv[1]), 'messaging', what='sync --once'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        run_id = service.run(MESSAGING)
    finally:
        holder.kill()
        holder.wait()
    (run,) = [r for r in recent_runs(database) if r.id == run_id]
    assert run.outcome == "skipped" and ran == []
    assert f"sync --once (process {holder.pid}" in (run.message or "")
    assert service.run(MESSAGING) and ran == ["x"]  # the holder gone, the next run runs


def test_the_offline_job_is_not_scheduled_while_offline_is_not_built(data_dir: Path) -> None:
    """Issue 10: no offline body, no offline job: the history is not filled with "skipped"
    offline runs every few minutes, and asking for one does nothing."""
    database = open_database(data_dir)
    scheduler = SyncScheduler(SyncService(database), interval=3600, offline_interval=0.2)
    scheduler.start()
    try:
        assert [job.id for job in scheduler._scheduler.get_jobs()] == [JOB_IDS[MESSAGING]]
        _wait_for(lambda: any(r.finished_at for r in recent_runs(database, job=MESSAGING)))
        scheduler.sync_now(OFFLINE)
        scheduler.reschedule(OFFLINE, 60)
        assert scheduler.next_run(OFFLINE) is None
        time.sleep(0.5)
        assert recent_runs(database, job=OFFLINE) == []
    finally:
        scheduler.shutdown()


def test_asked_while_running_runs_again_right_after(data_dir: Path) -> None:
    """A change seen (or Sync now pressed) during a run is not lost to max_instances=1: the
    job runs once more as soon as the current run ends, recorded with what asked for it."""
    import threading

    database = open_database(data_dir)
    release = threading.Event()
    calls: list[int] = []

    def slow(_recorder):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            release.wait(10)
        return "ok", None

    scheduler = SyncScheduler(SyncService(database, {MESSAGING: slow}), interval=3600)
    scheduler.start()
    try:
        _wait_for(lambda: len(calls) == 1)
        scheduler.sync_now(MESSAGING, trigger="change")
        scheduler.sync_now(MESSAGING, trigger="change")  # twice: still one more run
        release.set()
        _wait_for(
            lambda: len([r for r in recent_runs(database, job=MESSAGING) if r.finished_at]) == 2
        )
        time.sleep(0.3)
        assert [r.trigger for r in recent_runs(database, job=MESSAGING)] == ["change", "schedule"]
    finally:
        scheduler.shutdown()
