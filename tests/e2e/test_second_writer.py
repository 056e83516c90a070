"""Issue 14, points 1 and 2, over real HTTP (sandbox Dataverse + sandbox EWS): another writer's
copies are found before a create and settled after one; a fresh install that finds the two
sides different records a conflict instead of overwriting the mailbox silently."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sync.conflicts import list_conflicts, reverse_conflict
from sync.engine import reverse_conflict as engine_reverse
from sync.kinds import KINDS
from sync.mailbox.ews import EwsSide
from sync.runs import open_alerts
from sync.sides import CreateOp, Upsert
from sync.store.linkstore import conflict_row
from sync.store.models import ConflictRecord
from tests.e2e.harness import (
    Agent,
    SandboxPair,
    full_read,
    make_agent,
    seed_contacts,
    user_update_items,
)

CONTACTS = KINDS["contacts"]


def copies_by_key(pair: SandboxPair) -> dict[str, list[Upsert]]:
    """The mailbox's contacts grouped by the CRM id they carry."""
    grouped: dict[str, list[Upsert]] = {}
    for item in full_read(pair.mailbox_side(), "contacts").values():
        if item.key:
            grouped.setdefault(item.key, []).append(item)
    return grouped


def another_writer_copies(pair: SandboxPair, agent: Agent, crm_ids: Sequence[str]) -> list[str]:
    """What a second writer of the same data does: a mailbox copy of each record, made from
    the CRM row and carrying its id (the idempotency key), as the engine makes them."""
    rows = agent.crm.read("contacts", list(crm_ids))
    ops = [
        CreateOp(crm_id, CONTACTS.mailbox_create(CONTACTS.crm_values(rows[crm_id].fields), None))
        for crm_id in crm_ids
    ]
    made = pair.mailbox_side().write("contacts", ops)
    return [getattr(result, "id") for result in made]  # noqa: B009 (asserted Written below)


def linked_item(agent: Agent, crm_id: str) -> str:
    link = next(lk for lk in agent.links("contacts") if lk.crm_id == crm_id)
    assert link.mailbox_id
    return link.mailbox_id


def test_a_create_finds_the_copy_another_writer_made_after_the_read(
    fresh_pair: SandboxPair,
) -> None:
    """The lookup before a mailbox create is made even after a full read: the other writer's
    copy, made between this run's read and its writes, is linked, not duplicated."""
    crm_ids = seed_contacts(fresh_pair, 6)
    agent = make_agent(fresh_pair)
    mailbox = agent.mailbox
    assert isinstance(mailbox, EwsSide)
    other_made: list[str] = []

    class RacedMailbox:
        """The agent's mailbox, with the other writer finishing right before the lookup."""

        def __getattr__(self, name: str) -> Any:
            return getattr(mailbox, name)

        def find_by_key(self, kind: str, keys: Sequence[str]) -> dict[str, Upsert]:
            if not other_made:
                other_made.extend(another_writer_copies(fresh_pair, agent, crm_ids[:2]))
            return mailbox.find_by_key(kind, keys)

    agent.mailbox = RacedMailbox()  # type: ignore[assignment]
    result = agent.sync(["contacts"])["contacts"]

    assert (result.mailbox.created, result.relinked, result.conflicts) == (4, 2, 0)
    grouped = copies_by_key(fresh_pair)
    assert {key: len(items) for key, items in grouped.items()} == {c: 1 for c in crm_ids}
    assert {linked_item(agent, c) for c in crm_ids[:2]} == set(other_made)


def test_second_copies_are_removed_and_an_edited_one_takes_the_link(
    fresh_pair: SandboxPair,
) -> None:
    """Two writers both created copies (the race the lookup cannot close on EWS): the next
    run keeps one link per record; a copy equal to the linked one is removed; a copy the user
    edited takes the link and its edit reaches the CRM; two edited copies are both kept and
    reported."""
    crm_ids = seed_contacts(fresh_pair, 3)
    agent = make_agent(fresh_pair)
    agent.sync(["contacts"])
    old_plain = linked_item(agent, crm_ids[0])
    plain, edited, both = another_writer_copies(fresh_pair, agent, crm_ids)
    user = fresh_pair.mailbox_side()
    user_update_items(user, "contacts", {edited: {"job_title": "Edited in the second copy"}})
    user_update_items(
        user,
        "contacts",
        {both: {"job_title": "Edit one"}, linked_item(agent, crm_ids[2]): {"department": "Two"}},
    )
    old_link = linked_item(agent, crm_ids[1])

    result = agent.sync(["contacts"])["contacts"]

    assert (result.copies_removed, result.copies_reported) == (2, 1), result
    grouped = copies_by_key(fresh_pair)
    # equal copies: one stays (the lowest id, whichever writer decides) and is the linked one
    assert [item.id for item in grouped[crm_ids[0]]] == [linked_item(agent, crm_ids[0])]
    assert min(plain, old_plain) == linked_item(agent, crm_ids[0])
    assert [item.id for item in grouped[crm_ids[1]]] == [edited] == [linked_item(agent, crm_ids[1])]
    assert old_link != edited
    row = agent.crm.read("contacts", [crm_ids[1]])[crm_ids[1]].fields
    assert row["jobtitle"] == "Edited in the second copy"
    assert len(grouped[crm_ids[2]]) == 2  # both edited: kept, and the user is told
    reported = [a for a in open_alerts(agent.database) if a.code == "second-copy"]
    assert [a.subject for a in reported] == [crm_ids[2]]
    again = agent.sync(["contacts"])["contacts"]
    assert again.changed == 0 and again.errors == 0


def test_a_fresh_install_that_finds_an_unsynced_mailbox_edit_records_a_conflict(
    fresh_pair: SandboxPair,
) -> None:
    """A mailbox edit made while no install ran (or before a reinstall) is not overwritten
    silently: the re-link records a conflict, says the mailbox copy changed last, and the
    user can take the mailbox's value."""
    [crm_id] = seed_contacts(fresh_pair, 1)
    first = make_agent(fresh_pair)
    first.sync(["contacts"])
    item_id = linked_item(first, crm_id)
    time.sleep(1.1)  # the edit is later than the CRM row's modifiedon, to the second
    user_update_items(fresh_pair.mailbox_side(), "contacts", {item_id: {"job_title": "Offline"}})

    fresh = make_agent(fresh_pair)  # a reinstall: an empty local database
    result = fresh.sync(["contacts"])["contacts"]

    assert (result.relinked, result.conflicts, result.mailbox.created) == (1, 1, 0)
    [conflict] = list_conflicts(fresh.database)
    assert (conflict.field, conflict.mailbox_value, conflict.winner) == (
        "jobtitle",
        "Offline",
        "crm",
    )
    assert "re-linked with no earlier sync state" in conflict.reason
    assert "the mailbox copy changed after the CRM record" in conflict.reason

    def writer(record: ConflictRecord) -> None:
        error = engine_reverse(
            CONTACTS, conflict_row(record), fresh.crm, fresh.mailbox, fresh.store
        )
        assert error is None

    assert reverse_conflict(fresh.database, conflict.id, writer) == "mailbox"
    fresh.sync(["contacts"])
    row = fresh.crm.read("contacts", [crm_id])[crm_id].fields
    item = fresh.mailbox.read("contacts", [item_id])[item_id].fields
    assert row["jobtitle"] == "Offline" == CONTACTS.mailbox_values(item)["jobtitle"]
