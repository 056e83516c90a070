"""Round trips that once changed data they should not (found end to end, then fixed): a task's
due time, a meeting's organizer, and a second sync that must write nothing."""

from __future__ import annotations

from datetime import timedelta

from sandbox.identity import user_by_upn
from sync.kinds import KINDS
from sync.kinds.base import norm_moment
from tests.e2e.harness import (
    ALICE,
    ORG,
    SandboxPair,
    make_agent,
    moment,
    seed_contacts,
    tomorrow_at,
    user_update_items,
)


def test_a_task_due_time_survives_two_syncs(fresh_pair: SandboxPair) -> None:
    due = moment(tomorrow_at(15))
    task = fresh_pair.dataverse.insert(
        ORG, "tasks", {"subject": "Timed", "scheduledend": due, "prioritycode": 1,
                       "percentcomplete": 0, "statecode": 0, "statuscode": 2},
        as_user=ALICE,
    )  # fmt: skip
    agent = make_agent(fresh_pair)
    agent.sync(["tasks"])
    second = agent.sync(["tasks"])["tasks"]
    row = agent.crm.read("tasks", [task])[task].fields
    # The raw column: the kind's canonical value is the date only (what the mailbox keeps).
    assert (second.crm.updated, norm_moment(row.get("scheduledend"))) == (0, due)


def test_a_meeting_organized_by_someone_else_keeps_its_organizer(
    fresh_pair: SandboxPair,
) -> None:
    start = tomorrow_at(10)
    bob = user_by_upn("bob@contoso.example")
    assert bob is not None
    # The organizer is a system user (appointment.md: Organizer, Targets systemuser).
    meeting = fresh_pair.dataverse.insert(
        ORG, "appointments",
        {"subject": "Bob's review", "scheduledstart": moment(start),
         "scheduledend": moment(start + timedelta(hours=1)),
         "appointment_activity_parties": [
             {"participationtypemask": 7,
              "partyid_systemuser@odata.bind": f"/systemusers({bob.systemuser_id(ORG)})"},
             {"participationtypemask": 5, "addressused": ALICE}]},
        as_user=ALICE,
    )  # fmt: skip
    agent = make_agent(fresh_pair)
    agent.sync(["appointments"])
    agent.sync(["appointments"])
    row = agent.crm.read("appointments", [meeting])[meeting].fields
    parties = KINDS["appointments"].crm_values(row)["parties"]
    assert parties["organizer"] == "bob@contoso.example"


def test_the_sync_after_the_initial_one_writes_nothing(fresh_pair: SandboxPair) -> None:
    fresh_pair.dataverse.insert(
        ORG, "tasks", {"subject": "Bare", "statecode": 0, "statuscode": 2}, as_user=ALICE
    )
    agent = make_agent(fresh_pair)
    assert agent.sync(["tasks"])["tasks"].mailbox.created == 1
    second = agent.sync(["tasks"])["tasks"]
    assert second.crm.updated == 0


def test_our_own_writes_coming_back_are_not_read_again(fresh_pair: SandboxPair) -> None:
    """The run after a large one: SyncFolderItems reports every item we made, each at the
    ChangeKey its link holds, so none is fetched again; a user's edit still is."""
    made = seed_contacts(fresh_pair, 40)
    agent = make_agent(fresh_pair)
    assert agent.sync(["contacts"])["contacts"].mailbox.created == 40
    fresh_pair.log.clear()

    echo = agent.sync(["contacts"])["contacts"]

    assert echo.changed == 0
    ews = [e.target for e in fresh_pair.log if e.service == "ews"]
    assert ews == ["SyncFolderItems"], ews  # the 40 creates reported, none read in full

    [edited] = [lk.mailbox_id for lk in agent.links("contacts") if lk.crm_id == made[0]]
    assert edited is not None
    user_update_items(fresh_pair.mailbox_side(), "contacts", {edited: {"job_title": "Edited"}})
    fresh_pair.log.clear()
    result = agent.sync(["contacts"])["contacts"]
    assert result.crm.updated == 1
    assert agent.crm.read("contacts", [made[0]])[made[0]].fields["jobtitle"] == "Edited"
    assert [e.target for e in fresh_pair.log if e.service == "ews"].count("GetItem") == 1
