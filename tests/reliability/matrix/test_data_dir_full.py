"""A data directory whose disk fills up in the middle of a sync (issue 13, point 3; the
read-only directory, the corrupted database and two `sync --once` at once are in
tests/foundation/test_bad_input_store.py and tests/reliability/test_concurrent_syncs.py).

The data directory lives on a small tmpfs (skipped where mounting is not allowed). After a
first complete sync the disk is filled; the next sync (new CRM contacts to copy) must end with
the clear "cannot be used: database or disk is full" error `run.py` prints (its
`database_problem`), leave the database whole (integrity check, the links it had), and, once
space is free again, the following run converges with no duplicate and nothing lost.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from sync.store.db import DataDirError, database_problem
from tests.e2e.harness import seed_contacts, start_pair
from tests.e2e.remote_agent import agent_at, write_address
from tests.reliability.test_kill_restart import World, check_whole

SIZE = "3m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, room: int) -> Path:
    """Fill the disk but `room` bytes; the filler file (delete it to free the space)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    if room:
        with filler.open("r+b") as out:
            out.truncate(max(0, filler.stat().st_size - room))
    return filler


def links_and_integrity(world: World) -> tuple[int, str]:
    agent = agent_at(json.loads(world.address.read_text()))
    try:
        with agent.database.engine.connect() as connection:
            check = connection.exec_driver_sql("PRAGMA integrity_check").scalar()
            links = connection.execute(sa.text("SELECT count(*) FROM links")).scalar()
        return int(links or 0), str(check)
    finally:
        agent.database.dispose()


@pytest.mark.parametrize("room", [0, 96 * 1024], ids=["full-at-start", "fills-during-sync"])
def test_a_full_disk_is_a_clear_error_and_the_state_stays_whole(
    tmp_path: Path, small_disk: Path, room: int
) -> None:
    """Full before the run: opening the database already says it cannot be used. Room for a
    few batches: the run stops when the disk fills, whatever it had committed stays."""
    with start_pair(tmp_path / "pair") as pair:
        address = write_address(pair, small_disk / "data", tmp_path / "address.json")
        world = World(pair, tmp_path, address)
        seed_contacts(pair, 40)
        world.expected["contacts"] |= {f"CLast{i}" for i in range(40)}
        agent = agent_at(json.loads(address.read_text()))
        agent.sync()
        agent.database.dispose()
        before = links_and_integrity(world)
        assert before == (40, "ok")

        seed_contacts(pair, 300, prefix="N")
        world.expected["contacts"] |= {f"NLast{i}" for i in range(300)}
        filler = fill(small_disk, room)
        problem: DataDirError | None = None
        try:
            agent = agent_at(json.loads(address.read_text()))
        except DataDirError as error:  # what run.py prints, exit 3
            problem = error
        else:
            try:
                agent.sync()
            except DBAPIError as error:
                problem = database_problem(agent.database.url, error)
            finally:
                agent.database.dispose()
        assert problem is not None, "a sync on a full disk did not fail"
        assert "cannot be used" in str(problem), problem
        if room:
            assert "database or disk is full" in str(problem)

        filler.unlink()
        links, check = links_and_integrity(world)
        assert check == "ok" and links >= before[0]

        agent = agent_at(json.loads(address.read_text()))
        agent.sync()
        quiet = agent.sync()
        agent.database.dispose()
        assert all(r.errors == 0 for r in quiet.values())
        check_whole(world)
