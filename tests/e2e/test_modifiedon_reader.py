"""A whole sync whose CRM side cannot use change tracking: the user's security role reads at
business-unit depth, so the strict sandbox refuses `Prefer: odata.track-changes` as the service
does (use-change-tracking-synchronize-data-external-systems.md: "The calling user must have
organization level read access to the table"). The CRM side falls back, per table, to the
`modifiedon` reader: changes arrive at the next run, deletions at the next id sweep.
"""

from __future__ import annotations

from sandbox.dataverse.security import BUSINESS_UNIT_READER
from sync.crm.side import DataverseSide
from sync.engine import EngineSettings
from tests.e2e.harness import (
    FORMATTED,
    ORG,
    Agent,
    SandboxPair,
    counts,
    in_step,
    seed_contacts,
    seed_tasks,
    snapshots,
)

KINDS = ("contacts", "tasks")
SWEEP_EVERY = 3


def crm_gets(pair: SandboxPair, target: str) -> list[int]:
    return [
        e.status
        for e in pair.log
        if e.service == "dataverse" and e.target == target and e.method == "GET"
    ]


def test_a_business_unit_reader_syncs_by_modifiedon(fresh_pair: SandboxPair) -> None:
    pair = fresh_pair
    pair.dataverse.security.assign(ORG, pair.me, BUSINESS_UNIT_READER)
    contacts = seed_contacts(pair, 12)
    seed_tasks(pair, 6)
    side = DataverseSide(
        pair.crm_client(annotations=FORMATTED), owner_id=pair.me, sweep_every=SWEEP_EVERY
    )
    agent = Agent(side, pair.mailbox_side(), pair.new_database(), EngineSettings(me=pair.me))

    first = agent.sync(KINDS)
    assert all(r.errors == 0 for r in first.values()), first
    assert side.readers == {"contacts": "modifiedon", "tasks": "modifiedon"}
    assert side.refusals["contacts"].reason == "privilege"
    assert counts(snapshots(agent, KINDS)) == {"contacts": (12, 12), "tasks": (6, 6)}

    # a quiet run: one modifiedon query per table, nothing changes
    pair.log.clear()
    quiet = agent.sync(KINDS)
    assert all(r.changed == 0 for r in quiet.values()), quiet
    assert crm_gets(pair, "contacts") == [200] and crm_gets(pair, "tasks") == [200]

    # an edit reaches the mailbox at the next run; a deletion at the next sweep (the third
    # incremental read)
    client = pair.crm_client()
    client.update("contacts", contacts[0], {"jobtitle": "Chief Buyer"})
    client.delete("contacts", contacts[1])
    edited = agent.sync(KINDS)
    assert edited["contacts"].changed == 1, edited
    snaps = snapshots(agent, ["contacts"])
    assert counts(snaps) == {"contacts": (11, 12)}  # the deleted one is still in the mailbox
    link = next(lk for lk in agent.links("contacts") if lk.crm_id == contacts[0])
    assert link.mailbox_id and snaps["contacts"].mailbox_values(link.mailbox_id)["jobtitle"] == (
        "Chief Buyer"
    )
    pair.log.clear()
    agent.sync(KINDS)
    snaps = snapshots(agent, KINDS)
    assert counts(snaps) == {"contacts": (11, 11), "tasks": (6, 6)}
    assert in_step(agent, snaps) == {}
    # the sweep run: is change tracking allowed now (403), the query, the id listing
    assert crm_gets(pair, "contacts")[:3] == [403, 200, 200]
