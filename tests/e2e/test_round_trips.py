"""Round trips that once changed data they should not (found end to end, then fixed): a task's
due time, a meeting's organizer, and a second sync that must write nothing."""

from __future__ import annotations

from datetime import timedelta

from sync.kinds import KINDS
from sync.kinds.base import norm_moment
from tests.e2e.harness import (
    ALICE,
    ORG,
    SandboxPair,
    make_agent,
    moment,
    tomorrow_at,
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
    meeting = fresh_pair.dataverse.insert(
        ORG, "appointments",
        {"subject": "Bob's review", "scheduledstart": moment(start),
         "scheduledend": moment(start + timedelta(hours=1)),
         "appointment_activity_parties": [
             {"participationtypemask": 7, "addressused": "bob@contoso.example"},
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
