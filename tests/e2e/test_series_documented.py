"""End to end against the strict sandbox (Dataverse + EWS): what the mailbox makes reaches the CRM
the documented way. A series' exceptions by updating and deleting its instances (or with
CreateException past the expansion window); UserLocal dates as the user's days in a zone east of
UTC; a meeting's organizer only when a system user, its state after the create."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from sync.crm import metadata
from sync.crm.parties import PartyResolver
from sync.crm.side import DataverseSide
from sync.kinds import exceptions
from sync.kinds.appointments import recurring_kind
from sync.kinds.recurrence import expand
from tests.e2e.harness import (
    ALICE,
    Agent,
    SandboxPair,
    differences,
    full_read,
    make_agent,
    moment,
    seed_series,
    start_pair,
    tomorrow_at,
    tracked,
    user_create_items,
    user_update_items,
)

SERIES = "recurringappointmentmasters"
TOKYO = 235  # usersettings.timezonecode of Tokyo Standard Time (sync/crm/metadata.py)


@pytest.fixture
def pair(tmp_path: Any) -> Iterator[SandboxPair]:
    with start_pair(tmp_path) as running:
        yield running


def _set_zone(pair: SandboxPair, code: int) -> None:
    """Alice's usersettings.timezonecode (what a user picks in the app's personal options)."""
    client = pair.crm_client()
    client.update("usersettingscollection", pair.me, {"timezonecode": code}, if_match="*")
    metadata.forget(client.api_url)


def _master(agent: Agent, crm_id: str) -> dict[str, Any]:
    return dict(agent.crm.read(SERIES, [crm_id])[crm_id].fields)


def _series_link(agent: Agent, crm_id: str) -> str:
    [link] = [lk for lk in agent.links("recurringappointments") if lk.crm_id == crm_id]
    assert link.mailbox_id is not None
    return link.mailbox_id


def test_a_tokyo_users_mailbox_series_and_its_exceptions_reach_the_crm(pair: SandboxPair) -> None:
    """recurringappointmentmaster.md: PatternStartDate is UserLocal with Format DateOnly, so the
    series made in the mailbox from 15 March is stored as midnight of 15 March in Tokyo
    (14 March 15:00 UTC); the service expands it into instances, and the mailbox's moved and
    deleted occurrences become an updated instance (an exception) and a deleted one
    (deletedexceptionslist): update-recurring-appointment.md, delete-or-end-a-recurring-
    appointment-series-or-instance.md."""
    _set_zone(pair, TOKYO)
    agent = make_agent(pair)
    assert isinstance(agent.crm, DataverseSide)
    agent.kinds["recurringappointments"] = recurring_kind(
        PartyResolver(agent.crm.client), timezone="Asia/Tokyo"
    )
    recurrence = {
        "pattern": {"type": "weekly", "interval": 1, "weekdays": ["Monday"], "first_day_of_week": "Monday"},
        "range": {"type": "numbered", "start": "2027-03-15", "end": None, "count": 4},
    }  # fmt: skip
    [item_id] = user_create_items(
        agent.mailbox,
        "appointments",
        [tracked(subject="Tokyo standup", start="2027-03-15T00:00:00Z", end="2027-03-15T00:30:00Z",
                 timezone="Asia/Tokyo", recurrence=recurrence)],
    )  # fmt: skip
    first = agent.sync(["appointments", "recurringappointments"])["recurringappointments"]
    assert (first.crm.created, first.errors) == (1, 0)
    [crm_id] = [lk.crm_id for lk in agent.links("recurringappointments")]
    raw = pair.crm_client().get(SERIES, crm_id, ["patternstartdate", "utcconversiontimezonecode"])
    assert (raw["patternstartdate"], raw["utcconversiontimezonecode"]) == (
        "2027-03-14T15:00:00Z",
        TOKYO,
    )
    occurrences = {
        c["originalstartdate"]: c["activityid"]
        for c in _master(agent, crm_id)[exceptions.NAVIGATION]
    }
    assert sorted(occurrences) == [
        "2027-03-15T00:00:00Z", "2027-03-22T00:00:00Z", "2027-03-29T00:00:00Z", "2027-04-05T00:00:00Z"]  # fmt: skip

    moved = {"original_start": "2027-03-22T00:00:00Z", "start": "2027-03-22T03:00:00Z",
             "end": "2027-03-22T03:30:00Z"}  # fmt: skip
    user_update_items(
        agent.mailbox, "appointments",
        {item_id: {"modified_occurrences": [moved], "deleted_occurrences": ["2027-03-29T00:00:00Z"]}},
    )  # fmt: skip
    result = agent.sync(["appointments", "recurringappointments"])["recurringappointments"]
    assert (result.crm.updated, result.errors) == (1, 0)
    row = _master(agent, crm_id)
    children = {c["originalstartdate"]: c for c in row[exceptions.NAVIGATION]}
    exception = children["2027-03-22T00:00:00Z"]
    assert (exception["activityid"], exception["instancetypecode"]) == (
        occurrences[moved["original_start"]],
        3,
    )
    assert exception["scheduledstart"] == moved["start"]
    assert "2027-03-29T00:00:00Z" not in children
    assert exceptions.parse_deleted_list(row["deletedexceptionslist"]) == ["2027-03-29T00:00:00Z"]
    quiet = agent.sync(["appointments", "recurringappointments"])
    assert all(r.changed == 0 and r.errors == 0 for r in quiet.values()), quiet


def test_an_occurrence_past_the_expansion_window_goes_through_create_exception(
    pair: SandboxPair,
) -> None:
    """recurring-appointment-partial-expansion-model.md: only part of a series may be expanded;
    CreateException (Target, OriginalStartDate, IsDeleted) makes an exception of an occurrence
    that has no row."""
    pair.dataverse.api.expansion.limit = 2
    [master] = seed_series(pair, 1)  # every other day, 8 occurrences: 2 expanded
    agent = make_agent(pair)
    agent.sync(["appointments", "recurringappointments"])
    item_id = _series_link(agent, master)
    values = agent.kinds["recurringappointments"].crm_values(_master(agent, master))

    starts = expand(values["recurrence"], values["series_times"]["start"])
    fifth, sixth = starts[4], starts[5]
    expanded = {c["originalstartdate"] for c in _master(agent, master)[exceptions.NAVIGATION]}
    assert expanded == {moment(starts[0]), moment(starts[1])}  # no row for the fifth, sixth
    moved = {"original_start": moment(fifth), "start": moment(fifth + timedelta(hours=3)),
             "end": moment(fifth + timedelta(hours=3, minutes=45))}  # fmt: skip
    user_update_items(
        agent.mailbox, "appointments",
        {item_id: {"modified_occurrences": [moved], "deleted_occurrences": [moment(sixth)]}},
    )  # fmt: skip
    result = agent.sync(["appointments", "recurringappointments"])["recurringappointments"]
    assert (result.crm.updated, result.errors) == (1, 0)
    row = _master(agent, master)
    made = [
        c for c in row[exceptions.NAVIGATION] if c["originalstartdate"] == moved["original_start"]
    ]
    assert [(c["instancetypecode"], c["scheduledstart"]) for c in made] == [(3, moved["start"])]
    assert exceptions.parse_deleted_list(row["deletedexceptionslist"]) == [moment(sixth)]
    quiet = agent.sync(["appointments", "recurringappointments"])
    assert all(r.changed == 0 and r.errors == 0 for r in quiet.values()), quiet
    assert differences(agent, "recurringappointments") == []


def test_a_tokyo_users_mailbox_task_is_due_on_its_day(pair: SandboxPair) -> None:
    """task.md: ScheduledEnd is UserLocal. The task due on 20 March in the mailbox is due on 20
    March for the Tokyo user in the CRM: midnight Tokyo, 19 March 15:00 UTC (midnight UTC was 09:00
    in Tokyo, and read back as a UTC date gave the day before for dates written in the app)."""
    _set_zone(pair, TOKYO)
    agent = make_agent(pair)
    user_create_items(
        agent.mailbox, "tasks",
        [tracked(subject="Pay invoice", due_date="2027-03-20T00:00:00Z", status="NotStarted")],
    )  # fmt: skip
    assert agent.sync(["tasks"])["tasks"].crm.created == 1
    [crm_id] = [lk.crm_id for lk in agent.links("tasks")]
    assert pair.crm_client().get("tasks", crm_id, ["scheduledend"])["scheduledend"] == (
        "2027-03-19T15:00:00Z"
    )
    # A CRM user moves it to 21 March (midnight in Tokyo): the mailbox gets 21 March.
    pair.crm_client().update(
        "tasks", crm_id, {"scheduledend": "2027-03-20T15:00:00Z"}, if_match="*"
    )
    assert agent.sync(["tasks"])["tasks"].mailbox.updated == 1
    [item] = full_read(agent.mailbox, "tasks").values()
    assert str(item.fields["due_date"])[:10] == "2027-03-21"
    assert agent.sync(["tasks"])["tasks"].changed == 0


def test_a_mailbox_meeting_is_created_with_a_user_organizer_then_its_state(
    pair: SandboxPair,
) -> None:
    """appointment.md: Organizer Targets systemuser (the mailbox's organizer, the user, is bound
    to her system user; one who is not a user stays in the mailbox:
    tests/engine/test_engine_kinds.py) and StateCode IsValidForCreate False (show-as Free is
    state Open, status Free, set by an update right after the create)."""
    agent = make_agent(pair)
    start = tomorrow_at(14)
    user_create_items(
        agent.mailbox, "appointments",
        [tracked(subject="Vendor call", start=moment(start), end=moment(start + timedelta(hours=1)),
                 show_as="Free", required_attendees=[ALICE, "vendor@outside.example"])],
    )  # fmt: skip
    result = agent.sync(["appointments"])["appointments"]
    assert (result.crm.created, result.errors) == (1, 0), result
    [crm_id] = [lk.crm_id for lk in agent.links("appointments")]
    row = agent.crm.read("appointments", [crm_id])[crm_id].fields
    assert (row["statecode"], row["statuscode"]) == (0, 1)
    [organizer] = [
        p for p in row["appointment_activity_parties"] if p["participationtypemask"] == 7
    ]
    assert (organizer["_partyid_value"], organizer["addressused"]) == (pair.me, ALICE)
    assert agent.sync(["appointments"])["appointments"].changed == 0
