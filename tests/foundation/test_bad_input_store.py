"""A data directory or database that cannot be used (issue 14, points 4 and 5): a one-line
message and exit code 3 from `status` and `sync --once`, the file left as it was; `status`
on a read-only data directory; the database private (0600); runs killed mid-way ended as
"interrupted" at start-up instead of "running" for ever."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync.runs import RunRecorder, close_interrupted_runs, process_start, recent_runs
from sync.store.db import DB_FILE, Database, DataDirError, open_database, upgrade
from sync.store.models import Run
from tests.helpers import ROOT, stop_process

DAMAGED = "is damaged or not a Mailbox Sync database"


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
"""As root every directory is writable: a read-only one is tried as `nobody` instead."""


def _cli(*args: str, data_dir: Path, nobody: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(NOBODY if nobody else []), sys.executable, str(ROOT / "run.py"), *args]
        + ["--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _database_with_runs(data_dir: Path, runs: int = 1) -> Path:
    database = open_database(data_dir)
    for _ in range(runs):
        RunRecorder(database, "messaging", "cli").finish("ok", "x" * 200)
    database.dispose()  # the last connection checkpoints the WAL into the file
    return data_dir / DB_FILE


def _refused(done: subprocess.CompletedProcess[str], text: str) -> None:
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert text in lines[0]


# --- damaged databases ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["sync", "--once"]])
def test_a_file_of_garbage_is_refused_and_left_alone(command: list[str], data_dir: Path) -> None:
    path = data_dir / DB_FILE
    path.write_bytes(os.urandom(8192))
    before = _digest(path)
    done = _cli(*command, data_dir=data_dir)
    _refused(done, f"The database at {path} {DAMAGED}: the file is not an SQLite database")
    assert "move it aside to start over, or restore a backup" in done.stderr
    assert _digest(path) == before
    assert sorted(p.name for p in data_dir.iterdir()) == [DB_FILE]


@pytest.mark.parametrize("command", [["status"], ["sync", "--once"]])
def test_a_truncated_database_is_refused_and_left_alone(command: list[str], data_dir: Path) -> None:
    path = _database_with_runs(data_dir, runs=50)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    before = _digest(path)
    done = _cli(*command, data_dir=data_dir)
    _refused(done, f"{DAMAGED}: the file is truncated")
    assert _digest(path) == before


def test_damage_found_while_reading_is_a_message_not_a_traceback(data_dir: Path) -> None:
    """A page in the middle gone bad passes the checks at opening; the query that meets it
    ends the command with the same message."""
    path = _database_with_runs(data_dir, runs=200)
    size = path.stat().st_size
    with path.open("r+b") as handle:  # the newest runs' pages: garbage, the size kept
        handle.seek(size - 4 * 4096)
        handle.write(b"\xff" * 4 * 4096)
    before = _digest(path)
    done = _cli("status", data_dir=data_dir)
    _refused(done, f"The database at {path} {DAMAGED}: database disk image is malformed")
    assert "Traceback" not in done.stderr
    assert _digest(path) == before


def test_another_programs_database_gets_no_tables_of_ours(data_dir: Path) -> None:
    path = data_dir / DB_FILE
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
    before = _digest(path)
    with pytest.raises(DataDirError, match=r"it holds other tables \(notes\)"):
        open_database(data_dir)
    assert _digest(path) == before


def test_a_newer_versions_database_is_refused(data_dir: Path) -> None:
    path = _database_with_runs(data_dir)
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    done = _cli("sync", "--once", data_dir=data_dir)
    _refused(done, "was made by a newer version of Mailbox Sync (schema 9999)")


# --- a read-only data directory -----------------------------------------------------------------


@pytest.fixture
def read_only_dir() -> Iterator[tuple[Path, bool]]:
    """A data directory with a database its user may read but not write, and whether that
    user is `nobody` (the tests run as root, who writes anywhere) or this one (mode 0500)."""
    base = Path(tempfile.mkdtemp(prefix="mbx-ro-"))
    data_dir = base / "data"
    try:
        path = _database_with_runs(data_dir)
        nobody = os.geteuid() == 0
        if nobody:
            base.chmod(0o755)
            data_dir.chmod(0o755)
            path.chmod(0o644)
            usable = shutil.which("setpriv") is not None and (
                subprocess.run([*NOBODY, sys.executable, "-c", "pass"]).returncode == 0
            )
            if not usable:
                pytest.skip("no way to run the tests' Python as another user than root")
        else:
            data_dir.chmod(0o500)
        yield data_dir, nobody
    finally:
        if data_dir.exists():
            data_dir.chmod(0o700)
        shutil.rmtree(base)


def test_status_reads_a_read_only_data_directory(read_only_dir: tuple[Path, bool]) -> None:
    data_dir, nobody = read_only_dir
    before = {p.name: _digest(p) for p in data_dir.iterdir()}
    done = _cli("status", "--json", data_dir=data_dir, nobody=nobody)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["outcome"] == "ok"
    assert {p.name: _digest(p) for p in data_dir.iterdir()} == before


@pytest.mark.parametrize(
    "command", [["sync", "--once"], ["serve", "--port", "0", "--no-sandbox"], ["sandbox"]]
)
def test_writing_commands_say_the_data_directory_is_not_writable(
    command: list[str], read_only_dir: tuple[Path, bool]
) -> None:
    data_dir, nobody = read_only_dir
    done = _cli(*command, data_dir=data_dir, nobody=nobody)
    _refused(done, f"The data directory {data_dir} is not writable")


# --- the database is private ----------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_wal_files_are_mode_0600(data_dir: Path) -> None:
    old = os.umask(0)
    try:
        database = open_database(data_dir)
        with database.engine.connect() as connection:  # WAL and shared memory exist now
            connection.exec_driver_sql("SELECT count(*) FROM runs").scalar()
            files = [data_dir / (DB_FILE + suffix) for suffix in ("", "-wal", "-shm")]
            assert all(f.exists() for f in files)
            assert [_mode(f) for f in files] == [0o600, 0o600, 0o600]
        database.dispose()
    finally:
        os.umask(old)


def test_an_older_database_readable_by_others_is_made_private(data_dir: Path) -> None:
    path = _database_with_runs(data_dir)
    path.chmod(0o644)
    open_database(data_dir).dispose()
    assert _mode(path) == 0o600


# --- runs whose process is gone ---------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _running(database: Database, **columns: object) -> int:
    with database.session() as session:
        run = Run(job="messaging", trigger="schedule", outcome="running", counts={}, **columns)
        session.add(run)
        session.flush()
        return run.id


def test_a_run_records_the_process_that_runs_it(data_dir: Path) -> None:
    database = open_database(data_dir)
    try:
        recorder = RunRecorder(database, "messaging", "now")
        run = recent_runs(database, limit=1)[0]
        assert (run.id, run.pid, run.host) == (recorder.run_id, os.getpid(), socket.gethostname())
        assert run.process_start == process_start(os.getpid())
    finally:
        database.dispose()


def test_start_up_ends_the_runs_of_processes_that_are_gone(data_dir: Path) -> None:
    database = open_database(data_dir)
    me, host = os.getpid(), socket.gethostname()
    try:
        dead = _running(database, pid=_dead_pid(), host=host)
        older = _running(database)  # recorded before runs named their process
        alive = _running(database, pid=me, host=host, process_start=process_start(me))
        reused = _running(database, pid=me, host=host, process_start="another-boot/1")
        elsewhere = _running(database, pid=_dead_pid(), host=host + ".elsewhere")
        finished = RunRecorder(database, "messaging", "now")
        finished.finish("ok")

        assert sorted(close_interrupted_runs(database)) == sorted([dead, older, reused])
        outcomes = {run.id: run for run in recent_runs(database)}
        for run_id in (dead, older, reused):
            assert outcomes[run_id].outcome == "interrupted"
            assert outcomes[run_id].finished_at is not None
            assert outcomes[run_id].message.startswith("Interrupted: its process")
        assert outcomes[alive].outcome == outcomes[elsewhere].outcome == "running"
        assert outcomes[finished.run_id].outcome == "ok"
        assert close_interrupted_runs(database) == []
    finally:
        database.dispose()


def test_runs_left_running_before_the_upgrade_are_ended_after_it(data_dir: Path) -> None:
    """Existing installs carry such runs (21 after a kill loop), recorded without a pid."""
    url = f"sqlite:///{data_dir / DB_FILE}"
    old = Database(url)
    upgrade(old.engine, "0002")
    with old.engine.begin() as connection:
        for _ in range(3):
            connection.exec_driver_sql(
                'INSERT INTO runs (job, "trigger", started_at, outcome, counts, progress_done, '
                "progress_total) VALUES ('messaging', 'now', '2026-01-01', 'running', '{}', 3, 9)"
            )
    old.dispose()
    database = open_database(data_dir)
    try:
        assert len(close_interrupted_runs(database)) == 3
        with database.engine.connect() as connection:
            outcomes = connection.execute(sa.select(Run.outcome).distinct()).scalars().all()
        assert outcomes == ["interrupted"]
    finally:
        database.dispose()


def _insert_dead_run(data_dir: Path) -> int:
    database = open_database(data_dir)
    try:
        return _running(database, pid=_dead_pid(), host=socket.gethostname(), phase="contacts")
    finally:
        database.dispose()


def _outcome(path: Path, run_id: int) -> str:
    with closing(sqlite3.connect(path)) as connection:
        row = connection.execute("SELECT outcome FROM runs WHERE id = ?", (run_id,)).fetchone()
    return str(row[0])


def test_sync_once_ends_interrupted_runs_and_status_shows_them_without_writing(
    data_dir: Path,
) -> None:
    run_id = _insert_dead_run(data_dir)
    shown = json.loads(_cli("status", "--json", data_dir=data_dir).stdout)
    assert shown["runs"][0]["outcome"] == "interrupted"
    assert _outcome(data_dir / DB_FILE, run_id) == "running"  # status leaves runs alone

    done = _cli("sync", "--once", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    assert _outcome(data_dir / DB_FILE, run_id) == "interrupted"
    assert f"#{run_id}" in done.stderr


def test_serve_ends_interrupted_runs_at_start_up(data_dir: Path) -> None:
    run_id = _insert_dead_run(data_dir)
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "serve", "--port", "0", "--no-sandbox"]
        + ["--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert server.stdout is not None
        seen = []
        for line in server.stdout:  # the scheduler starts after the link is printed
            seen.append(line)
            if "Open http://" in line:
                break
        assert any(f"#{run_id}" in line and "interrupted" in line for line in seen), seen
        assert _outcome(data_dir / DB_FILE, run_id) == "interrupted"
    finally:
        stop_process(server)
