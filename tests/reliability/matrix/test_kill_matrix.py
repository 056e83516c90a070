"""SIGKILL at random points of one large first sync (issue 13, point 3), then clean runs: zero
duplicates and zero lost on both sides, counted from what the sandbox servers hold.

The agent (a child process, tests/e2e/remote_agent.py) syncs CRM contacts, tasks and
appointments into an empty mailbox and tracked mailbox contacts into the CRM. It is killed
again and again: each time after a random number (1 or 2) of its write requests were answered,
plus a random few milliseconds, so the kill lands anywhere between reading an answer and
committing the links. Each restart carries on from the links the last one committed, so the
kills are spread over the whole sync. Then it runs to the end, once more (that run must change
nothing), and every seeded record is checked once on each side and linked one to one
(tests/reliability/test_kill_restart.py's `check_whole`, reused).

CI: 20 kill points over 500 items in batches of 10 (5,000 items do not fit the matrix's 90 s:
20 restarts of a process that needs about a second to start, then two full runs and the
check); `MATRIX_LONG=1`: 100 kill points over 5,000 items in batches of 25.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import seed_appointments, seed_contacts, seed_tasks, start_pair, tracked
from tests.e2e.harness import user_create_items as make_in_mailbox
from tests.e2e.remote_agent import write_address
from tests.reliability.matrix.conftest import LONG
from tests.reliability.test_kill_restart import (
    GUARD,
    POLL,
    World,
    check_whole,
    reap,
    recover_and_check,
    spawn,
)

KILLS = 100 if LONG else 20
CRM_CONTACTS, TASKS, APPOINTMENTS, TRACKED = (4_300, 400, 200, 100) if LONG else (420, 40, 20, 20)
BATCH = 25 if LONG else 10
"""Engine batches (one write request each): small enough for the kill points to spread."""
WRITES = ("CreateItem", "UpdateItem", "DeleteItem", "$batch")
SEED = 13


@pytest.fixture
def big_world(tmp_path: Path) -> Iterator[World]:
    with start_pair(tmp_path) as pair:
        address = write_address(
            pair, tmp_path / "agent", tmp_path / "address.json", batch_size=BATCH
        )
        yield World(pair, tmp_path, address)


def seed(world: World) -> int:
    pair, expected = world.pair, world.expected
    seed_contacts(pair, CRM_CONTACTS)
    expected["contacts"] |= {f"CLast{i}" for i in range(CRM_CONTACTS)}
    seed_tasks(pair, TASKS)
    expected["tasks"] |= {f"Follow up {i}" for i in range(TASKS)}
    seed_appointments(pair, APPOINTMENTS)
    expected["appointments"] |= {f"Meeting {i}" for i in range(APPOINTMENTS)}
    names = [f"Tracked{i}" for i in range(TRACKED)]
    make_in_mailbox(
        pair.mailbox_side(), "contacts", [tracked(given_name="Outlook", surname=s) for s in names]
    )
    expected["contacts"] |= set(names)
    return CRM_CONTACTS + TASKS + APPOINTMENTS + TRACKED


def writes_answered(world: World, since: int) -> int:
    return sum(
        1 for e in world.pair.log.snapshot()[since:] if e.target in WRITES and 200 <= e.status < 300
    )


def kill_at_random(world: World, rng: random.Random) -> bool:
    """One run, killed after 1 or 2 answered writes and 0 to 30 ms; False if it ended first."""
    wanted, extra = rng.randint(1, 2), rng.uniform(0, 0.03)
    start = len(world.pair.log)
    child, _ = spawn(world)
    try:
        give_up = time.monotonic() + GUARD
        while child.poll() is None and time.monotonic() < give_up:
            if writes_answered(world, start) >= wanted:
                time.sleep(extra)
                if child.poll() is None:
                    child.send_signal(signal.SIGKILL)
                break
            time.sleep(POLL)
        child.wait(timeout=GUARD)
    finally:
        reap(child)
    return child.returncode == -signal.SIGKILL


def test_killed_at_random_points_of_a_large_sync_neither_duplicates_nor_loses(
    big_world: World,
) -> None:
    items = seed(big_world)
    rng = random.Random(SEED)
    kills = 0
    for _ in range(KILLS * 2):
        if kills == KILLS:
            break
        if kill_at_random(big_world, rng):
            kills += 1
        else:
            break  # the sync finished before the point: the rest is checked below
    assert kills >= KILLS, f"only {kills} kill points fitted a {items}-item sync"
    recover_and_check(big_world)


def test_check_whole_sees_a_duplicate(big_world: World) -> None:
    """The check itself: a second mailbox copy of one contact is reported (so a green run above
    means no duplicate, not a blind check)."""
    pair = big_world.pair
    seed_contacts(pair, 3)
    big_world.expected["contacts"] |= {f"CLast{i}" for i in range(3)}
    recover_and_check(big_world)
    make_in_mailbox(pair.mailbox_side(), "contacts", [{"given_name": "X", "surname": "CLast1"}])
    with pytest.raises(AssertionError, match="CLast1"):
        check_whole(big_world)
