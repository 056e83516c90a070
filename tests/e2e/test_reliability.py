"""Reliability over real HTTP (DESIGN.md §5, "No loss, no duplicates"): throttling, 503s and
dropped connections on either server during an initial sync, and a crash in the middle of apply
followed by a re-run. After a clean follow-up sync both sides hold the same records, once each.

Each test gets its own pair of servers (cheap to start), so a fault profile or a crash in one
cannot leak into another.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.faults import Fault
from sync.mailbox.ews import EwsConnection, EwsSide, OAuthToken
from sync.sides import KnownVersions, Page, Result, Side, Upsert, WriteOp
from tests.e2e.harness import (
    Agent,
    SandboxPair,
    counts,
    in_step,
    make_agent,
    seed_contacts,
    snapshots,
    tracked,
    user_create_items,
)

N_CRM, N_TRACKED = 100, 20


def later(agent: Agent, days: int = 1) -> Agent:
    """The same install, run later: parked items' backoff has passed."""
    agent.settings = replace(agent.settings, clock=lambda: datetime.now(UTC) + timedelta(days=days))
    return agent


def assert_settled(agent: Agent, n_crm: int, n_mailbox: int) -> None:
    snaps = snapshots(agent, ("contacts",))
    assert counts(snaps) == {"contacts": (n_crm, n_mailbox)}
    assert in_step(agent, snaps) == {}
    names = Counter(
        (u.fields.get("firstname"), u.fields.get("lastname"))
        for u in snaps["contacts"].crm_all.values()
    )
    assert [n for n, c in names.items() if c > 1] == []  # no CRM duplicates


def seed_both_sides(pair: SandboxPair) -> None:
    seed_contacts(pair, N_CRM)
    user_create_items(
        pair.mailbox_side(),
        "contacts",
        [tracked(given_name=f"Tracked{i}", surname="Outlook") for i in range(N_TRACKED)],
    )


# --- faults during an initial sync ------------------------------------------------------------

FAULTS = {
    "dataverse": [
        # Few requests go to the CRM here (one read, a few batches): strike early.
        Fault("429", every=2, delay=1, times=1, match="dataverse:"),
        Fault("503", every=2, times=1, match="dataverse:"),
        Fault("drop", every=2, times=2, match="dataverse:"),
    ],
    "ews-throttled": [
        Fault("busy", every=3, delay=0.3, times=3, match="/EWS/"),
        Fault("503", every=4, delay=1, times=2, match="/EWS/"),
    ],
    # Dropped writes are parked and retried by a later run (a dropped *read* is sent again at
    # once: see test_a_dropped_ews_connection_on_a_read_is_retried).
    "ews-dropped-writes": [Fault("drop", every=3, times=2, match="CreateItem")],
}


@pytest.mark.parametrize("where", sorted(FAULTS))
def test_faults_during_initial_sync_neither_duplicate_nor_drop(
    fresh_pair: SandboxPair, where: str
) -> None:
    seed_both_sides(fresh_pair)
    agent = make_agent(fresh_pair, batch_size=10)
    faults = [replace(f) for f in FAULTS[where]]
    fresh_pair.faults.set(*faults)
    try:
        first = agent.sync(["contacts"])["contacts"]
    finally:
        fresh_pair.faults.clear()
    assert all(f.hits > 0 for f in faults), [(f.kind, f.hits) for f in faults]
    statuses = Counter(e.status for e in fresh_pair.log)
    assert statuses[0] or statuses[429] or statuses[500] or statuses[503]
    assert first.stopped is None
    # What did not go through is parked (an item error), never lost: the next run retries it.
    assert first.errors == (10 * 2 if where == "ews-dropped-writes" else 0), first

    later(agent).sync(["contacts"])

    assert_settled(agent, N_CRM + N_TRACKED, N_CRM + N_TRACKED)


# --- a crash in the middle of apply -----------------------------------------------------------


class Crash(Exception):
    """The process died (not a side error: nothing in the engine may catch it)."""


class CrashingSide:
    """A side that dies once `limit` write ops went out: after the write that crosses the limit
    reached the server (`after=True`: the answer is lost), or just before it (`after=False`)."""

    def __init__(self, inner: Side, limit: int, after: bool) -> None:
        self.inner, self.limit, self.after = inner, limit, after
        self.name = inner.name
        self.written = 0
        self.crashed = False

    def read_changes(
        self, kind: str, token: str | None, known: KnownVersions | None = None
    ) -> Iterator[Page]:
        return self.inner.read_changes(kind, token, known)

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        return self.inner.read(kind, ids)

    def find_by_key(self, kind: str, keys: Sequence[str]) -> dict[str, Upsert]:
        return self.inner.find_by_key(kind, keys)

    def write(self, kind: str, ops: Sequence[WriteOp]) -> list[Result]:
        if self.written + len(ops) <= self.limit:
            self.written += len(ops)
            return self.inner.write(kind, ops)
        self.crashed = True
        if self.after:
            self.inner.write(kind, ops)
        raise Crash(f"killed after {self.written} ops")


@pytest.mark.parametrize("after", [True, False], ids=["after-write", "before-write"])
@pytest.mark.parametrize("side", ["mailbox", "crm"])
def test_crash_in_apply_then_rerun_makes_no_duplicates(
    fresh_pair: SandboxPair, side: str, after: bool
) -> None:
    seed_both_sides(fresh_pair)
    agent = make_agent(fresh_pair, batch_size=10)
    inner = agent.mailbox if side == "mailbox" else agent.crm
    # Mailbox side: 100 creates from the CRM; CRM side: 20 creates from tracked items.
    crashing = CrashingSide(inner, limit=35 if side == "mailbox" else 12, after=after)
    setattr(agent, side, crashing)

    with pytest.raises(Crash):
        agent.sync(["contacts"])
    assert crashing.crashed

    setattr(agent, side, inner)  # the app starts again on the same local database
    agent.sync(["contacts"])

    assert_settled(agent, N_CRM + N_TRACKED, N_CRM + N_TRACKED)


def test_a_dropped_ews_connection_on_a_read_is_retried(fresh_pair: SandboxPair) -> None:
    side = fresh_pair.mailbox_side()
    fresh_pair.faults.set(Fault("drop", every=1, times=1, match="SyncFolderItems"))
    pages = list(side.read_changes("contacts", None))
    assert pages and pages[-1].token


# --- rejected tokens, a wrong account ---------------------------------------------------------


def test_rejected_tokens_and_a_wrong_account_change_nothing(fresh_pair: SandboxPair) -> None:
    seed_contacts(fresh_pair, 30)
    agent = make_agent(fresh_pair)
    assert agent.sync(["contacts"])["contacts"].mailbox.created == 30

    fresh_pair.dataverse.expire_delta_tokens()  # the CRM's delta link is refused: full read
    assert agent.sync(["contacts"])["contacts"].changed == 0
    agent.store.save_tokens("contacts", {"mailbox": "bm90IGEgc3luYyBzdGF0ZQ=="})  # bad state
    assert agent.sync(["contacts"])["contacts"].changed == 0
    assert_settled(agent, 30, 30)

    # The mailbox of another person (a wrong account): its folder lists none of ours.
    bob = "bob@contoso.example"
    token = fresh_pair.tokens.static_token(bob)
    agent.mailbox = EwsSide(
        EwsConnection(fresh_pair.ews.url, bob, OAuthToken(lambda: token),
                      ca_file=fresh_pair.ews.ca_file)
    )  # fmt: skip
    result = agent.sync(["contacts"])["contacts"]
    assert (result.stopped, result.changed) == ("side-emptied", 0)
    assert {lk.state for lk in agent.links("contacts")} == {"synced"}
