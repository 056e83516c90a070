"""A full engine sync of contacts and tasks between the sandbox Dataverse and the sandbox Graph:
both sides end equal under the mapping, with no duplicates after a re-run, after a fresh
install (a new local database finds the copies by their key) and after changes on both sides."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.identity import user_by_upn
from sync.crm.client import DataverseClient, RetryPolicy
from sync.crm.side import DataverseSide
from sync.engine import EngineSettings
from sync.sides import UpdateOp
from sync.store.db import open_database
from tests.e2e.harness import (
    ALICE,
    FORMATTED,
    ORG,
    Agent,
    differences,
    full_read,
    seed_contacts,
    seed_tasks,
)
from tests.graph.conftest import GraphWorld

KINDS = ("contacts", "tasks")


@dataclass
class Pair:
    """What the harness's seeding needs of a pair (the Dataverse server)."""

    world: GraphWorld
    work: Path
    installs: int = 0

    @property
    def dataverse(self):  # type: ignore[no-untyped-def]
        return self.world.dataverse

    @property
    def me(self) -> str:
        user = user_by_upn(ALICE)
        assert user is not None
        return user.systemuser_id(ORG)

    def agent(self) -> Agent:
        """A new install: its own database, a Dataverse side and a Graph side."""
        assert self.world.dataverse is not None
        self.installs += 1
        token = self.world.token()
        client = DataverseClient(
            self.world.dataverse.api_url(ORG),
            lambda: token,
            retry=RetryPolicy(backoff=0.05, max_backoff=0.5),
            annotations=FORMATTED,
        )
        crm = DataverseSide(client, owner_id=self.me)
        database = open_database(self.work / f"data{self.installs}")
        return Agent(crm, self.world.side(), database, EngineSettings(me=self.me))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("graph-e2e")
    world = GraphWorld(work, with_dataverse=True)
    world.start()
    try:
        yield Pair(world, work)
    finally:
        world.stop()


def _problems(agent: Agent) -> dict[str, list[str]]:
    found = {name: differences(agent, name) for name in KINDS}
    return {name: p[:5] for name, p in found.items() if p}


def test_contacts_and_tasks_sync_both_ways_without_duplicates(pair: Pair) -> None:
    seed_contacts(pair, 12)  # type: ignore[arg-type]
    seed_tasks(pair, 9)  # type: ignore[arg-type]
    agent = pair.agent()
    agent.sync(KINDS)
    assert _problems(agent) == {}
    mailbox = agent.mailbox
    counts = {k: len(full_read(mailbox, k)) for k in KINDS}
    assert counts == {"contacts": 12, "tasks": 9}

    # a re-run changes nothing and creates nothing
    results = agent.sync(KINDS)
    assert _problems(agent) == {}
    assert {k: len(full_read(mailbox, k)) for k in KINDS} == counts
    assert all(r is not None for r in results.values())

    # a change in the mailbox reaches the CRM
    contact = next(iter(full_read(mailbox, "contacts").values()))
    written = mailbox.write(
        "contacts", [UpdateOp(contact.id, contact.version, {"job_title": "Chief Buyer"})]
    )
    assert not isinstance(written[0], Exception), written
    agent.sync(KINDS)
    assert _problems(agent) == {}
    crm_titles = [u.fields.get("jobtitle") for u in full_read(agent.crm, "contacts").values()]
    assert "Chief Buyer" in crm_titles

    # a fresh install (new local database) finds the copies by key: no duplicates
    fresh = pair.agent()
    fresh.sync(KINDS)
    assert _problems(fresh) == {}
    assert {k: len(full_read(fresh.mailbox, k)) for k in KINDS} == counts


def test_expired_delta_link_reads_everything_again(pair: Pair) -> None:
    """410 Gone (syncStateNotFound) on a saved delta link: the engine reads everything again
    and ends in step, with no duplicates (delta-query-overview.md, "Synchronization reset")."""
    agent = pair.agent()
    agent.sync(KINDS)
    before = {k: len(full_read(agent.mailbox, k)) for k in KINDS}
    pair.world.graph.mailbox(ALICE).expire_tokens()
    pair.world.log.clear()
    agent.sync(KINDS)
    assert any(e.service == "graph" and e.status == 410 for e in pair.world.log)
    assert _problems(agent) == {}
    assert {k: len(full_read(agent.mailbox, k)) for k in KINDS} == before
