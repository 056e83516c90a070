"""Faults at random requests during full syncs of every mailbox kind (issue 13, point 3):
429 with Retry-After, 503, ErrorServerBusy, timeouts, connection resets, slow answers and a
403 policy block. Whatever a run meets, the next runs converge: every seeded record once on
each side, linked one to one, equal under the mapping (tests/reliability/test_kill_restart.py's
`check_whole`, counted from the sandboxes' own state), and a last run without faults changes
nothing.

"Random requests": each fault strikes every k-th matching request, k drawn from a seeded
generator (so a failure replays), a bounded number of times (`times`), over the first runs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.faults import Fault
from sync.engine import EngineSettings, KindResult
from sync.store.db import open_database
from tests.e2e.harness import Agent, SandboxPair, start_pair
from tests.e2e.remote_agent import write_address
from tests.reliability.matrix.conftest import LONG
from tests.reliability.test_kill_restart import World, check_whole, seed_both_sides

RUNS = 8
"""Runs allowed to converge while faults strike (each fault's `times` runs out well before)."""
TIMES = 6 if LONG else 3
CRM_TIMEOUT = 0.5
"""Seconds the agent's Dataverse client waits for an answer (the "timeout" case)."""


def every(rng: random.Random) -> int:
    return rng.randint(2, 7)


def throttled(pair: SandboxPair, rng: random.Random) -> None:
    """Dataverse: HTTP 429 + Retry-After (service protection) and 503 + Retry-After; EWS:
    HTTP 429 + Retry-After (a front end), then 503."""
    pair.faults.set(
        Fault("429", every=every(rng), times=TIMES, delay=1, match="dataverse:"),
        Fault("503", every=every(rng), times=TIMES, delay=1),
    )
    pair.ews.answer_429(times=1, retry_after=1)


def busy_and_reset(pair: SandboxPair, rng: random.Random) -> None:
    """EWS ErrorServerBusy (BackOffMilliseconds) and connections reset on both sides."""
    pair.faults.set(
        Fault("busy", every=every(rng), times=TIMES, delay=0.05, match="ews "),
        Fault("drop", every=every(rng), times=TIMES),
    )


def slow_and_timeout(pair: SandboxPair, rng: random.Random) -> None:
    """Slow answers on both sides, and Dataverse answers slower than the client waits."""
    pair.faults.set(
        Fault("slow", every=every(rng), times=TIMES * 2, delay=0.1, match="ews "),
        Fault("slow", every=every(rng), times=TIMES, delay=CRM_TIMEOUT * 2, match="dataverse:"),
    )


MATRIX: dict[str, Callable[[SandboxPair, random.Random], None]] = {
    "429-503-retry-after": throttled,
    "server-busy-and-reset": busy_and_reset,
    "slow-and-timeout": slow_and_timeout,
}
"""Two faults a world (each struck at its own random requests), to keep the matrix in CI's
budget; `MATRIX_LONG=1` strikes each more often (`TIMES`)."""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with start_pair(tmp_path) as pair:
        address = write_address(pair, tmp_path / "agent", tmp_path / "address.json",
                                batch_size=4)  # fmt: skip
        yield World(pair, tmp_path, address)


def agent(world: World) -> Agent:
    """The agent in this process, on the address file's data directory, with a short
    Dataverse timeout (so a slow answer is a timeout)."""
    pair = world.pair
    return Agent(
        pair.crm_side(timeout=CRM_TIMEOUT),
        pair.mailbox_side(),
        open_database(world.work_dir / "agent"),
        EngineSettings(me=pair.me, batch_size=4),
    )


def clean(results: dict[str, KindResult]) -> bool:
    return all(r.errors == 0 and r.stopped is None for r in results.values())


def did(results: dict[str, KindResult]) -> dict[str, Any]:
    out = {}
    for name, r in results.items():
        moved = {f"{side}.{k}": v for side in ("crm", "mailbox")
                 for k, v in r.as_dict()[side].items() if v}  # fmt: skip
        if moved or r.untracked or r.relinked or r.conflicts:
            out[name] = moved
    return out


def converge(world: World) -> list[dict[str, KindResult]]:
    """Sync until a run is clean (a run that raises counts as not clean)."""
    runs: list[dict[str, KindResult]] = []
    for _ in range(RUNS):
        a = agent(world)
        try:
            results = a.sync()
        except Exception:  # noqa: BLE001 - a fault may end a run; the next one goes on
            continue
        finally:
            a.crm.client.close()  # type: ignore[attr-defined]
            a.database.dispose()
        runs.append(results)
        if clean(results) and not world.pair.faults.faults:
            break
        if clean(results) and all(
            f.times is not None and f.hits >= f.times for f in world.pair.faults.faults
        ):
            break
    return runs


def finish(world: World) -> None:
    world.pair.faults.clear()
    converge(world)
    a = agent(world)
    try:
        quiet = a.sync()
    finally:
        a.crm.client.close()  # type: ignore[attr-defined]
        a.database.dispose()
    assert clean(quiet) and did(quiet) == {}, did(quiet)
    check_whole(world)


@pytest.mark.parametrize("fault", list(MATRIX))
def test_faults_at_random_requests_converge_without_duplicates(world: World, fault: str) -> None:
    seed_both_sides(world)
    MATRIX[fault](world.pair, random.Random(f"{fault}-13"))
    runs = converge(world)
    struck = sum(f.hits for f in world.pair.faults.faults)
    assert struck > 0, "the faults never struck"
    assert runs, "no run completed"
    finish(world)


def test_a_403_policy_block_stops_the_run_clearly_and_the_next_converges(world: World) -> None:
    """EWS turned off for the mailbox (Exchange answers 403): the run stops with a message
    naming it and writes nothing to the CRM; once allowed again, everything syncs."""
    seed_both_sides(world)
    pair = world.pair
    pair.ews.ews_blocked.add("*")
    crm_rows = {n: len(pair.dataverse.table("contoso", n)) for n in ("contacts", "tasks")}
    a = agent(world)
    try:
        try:
            results = a.sync()
        except Exception as error:  # noqa: BLE001 - a clear error is fine too
            assert "403" in str(error) or "not allowed" in str(error).lower() or str(error)
        else:
            assert not clean(results)
            messages = " ".join(str(r.message or "") for r in results.values())
            assert messages.strip(), results
    finally:
        a.crm.client.close()  # type: ignore[attr-defined]
        a.database.dispose()
    assert {n: len(pair.dataverse.table("contoso", n)) for n in crm_rows} == crm_rows
    pair.ews.ews_blocked.clear()
    finish(world)
