"""A series keeps its own time zone on both sides (strict sandbox Dataverse + sandbox EWS, over
HTTP): a series a New York user made in the CRM, synced by a user whose profile and CRM
settings are Tokyo's, and a New York series made in that user's mailbox. New York's summer time
starts on 14 March 2027, Tokyo has none: expanded in Tokyo's zone, the occurrences from 15 March
would start an hour late, and an exception there names an occurrence the CRM does not have
(0x8004E109 InvalidSeriesIdOriginalStart)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sync.crm import metadata
from sync.crm.client import DataverseClient
from sync.crm.parties import PartyResolver
from sync.crm.side import DataverseSide
from sync.engine import KindResult, sync_kind
from sync.kinds import exceptions
from sync.kinds.appointments import recurring_kind
from tests.e2e.harness import (
    ORG,
    Agent,
    SandboxPair,
    differences,
    make_agent,
    start_pair,
    tracked,
    user_create_items,
    user_update_items,
)

SERIES = "recurringappointmentmasters"
BOB = "bob@contoso.example"
EASTERN, TOKYO = 35, 235  # usersettings / utcconversiontimezonecode (sync/timezones.py)
# Mondays 09:00 in New York from 1 March 2027: 14:00 UTC, then 13:00 UTC from 15 March.
STARTS = [
    "2027-03-01T14:00:00Z",
    "2027-03-08T14:00:00Z",
    "2027-03-15T13:00:00Z",
    "2027-03-22T13:00:00Z",
    "2027-03-29T13:00:00Z",
]
WEEKLY_FIVE = {
    "recurrencepatterntype": 1, "interval": 1, "daysofweekmask": 2, "firstdayofweek": 1,
    "patternendtype": 2, "occurrences": 5,
    "isnthmonthly": False, "isnthyearly": False, "isweekdaypattern": False,
}  # fmt: skip


@pytest.fixture
def pair(tmp_path: Any) -> Iterator[SandboxPair]:
    with start_pair(tmp_path) as running:
        yield running


def _tokyo_agent(pair: SandboxPair) -> Agent:
    """Alice, whose CRM personal options and app profile are Tokyo's (sync/connect.py builds the
    series kind with the profile's zone)."""
    client = pair.crm_client()
    client.update("usersettingscollection", pair.me, {"timezonecode": TOKYO}, if_match="*")
    metadata.forget(client.api_url)
    agent = make_agent(pair, timezone="Asia/Tokyo")
    assert isinstance(agent.crm, DataverseSide)
    agent.kinds["recurringappointments"] = recurring_kind(
        PartyResolver(agent.crm.client), timezone="Asia/Tokyo"
    )
    return agent


def _sync(agent: Agent) -> dict[str, KindResult]:
    return {
        name: sync_kind(agent.kinds[name], agent.crm, agent.mailbox, agent.store, agent.settings)
        for name in ("appointments", "recurringappointments")
    }


def _quiet(results: dict[str, KindResult]) -> bool:
    return all(r.changed == 0 and r.errors == 0 for r in results.values())


def _master(agent: Agent, crm_id: str) -> dict[str, Any]:
    return dict(agent.crm.read(SERIES, [crm_id])[crm_id].fields)


def _occurrences(agent: Agent, crm_id: str) -> dict[str, dict[str, Any]]:
    return {c["originalstartdate"]: c for c in _master(agent, crm_id)[exceptions.NAVIGATION]}


def _item(agent: Agent, crm_id: str) -> tuple[str, dict[str, Any]]:
    [link] = [lk for lk in agent.links("recurringappointments") if lk.crm_id == crm_id]
    assert link.mailbox_id is not None
    found = agent.mailbox.read("appointments", [link.mailbox_id])
    return link.mailbox_id, dict(found[link.mailbox_id].fields)


def test_a_new_york_crm_series_keeps_new_york_time_in_a_tokyo_users_mailbox(
    pair: SandboxPair,
) -> None:
    """recurringappointmentmaster.md: UTCConversionTimeZoneCode is the "Time zone code that was
    in use when the record was created" (here Bob's, Eastern), the zone the service expands the
    series in (create-recurring-appointment-series-instance-exception.md); PatternStartDate is
    UserLocal with Format DateOnly (midnight of 1 March in New York). The mailbox copy is made in
    New York's zone, so its occurrences are the CRM's instances across the DST change, and
    exceptions after it travel both ways (update-recurring-appointment.md: an updated instance
    becomes an exception; delete-or-end-a-recurring-appointment-series-or-instance.md: a
    deleted one is listed on the master)."""
    agent = _tokyo_agent(pair)
    alice = f"/systemusers({pair.me})"
    master = pair.dataverse.insert(
        ORG, SERIES,
        {"subject": "New York standup", "starttime": STARTS[0], "endtime": "2027-03-01T14:30:00Z",
         "duration": 30, "patternstartdate": "2027-03-01T05:00:00Z", **WEEKLY_FIVE,
         "ownerid@odata.bind": alice,
         "recurringappointmentmaster_activity_parties": [
             {"participationtypemask": 7, "partyid_systemuser@odata.bind": alice}]},
        as_user=BOB,
    )  # fmt: skip
    assert pair.crm_client().get(SERIES, master, ["utcconversiontimezonecode"])[
        "utcconversiontimezonecode"
    ] == EASTERN  # fmt: skip
    assert sorted(_occurrences(agent, master)) == STARTS

    first = _sync(agent)["recurringappointments"]
    assert (first.mailbox.created, first.errors) == (1, 0)
    item_id, item = _item(agent, master)
    assert (item["timezone"], item["start"]) == ("America/New_York", STARTS[0])
    assert item["recurrence"]["range"]["start"] == "2027-03-01"

    # In the mailbox: the 22 March occurrence (after the change) moves two hours later, the
    # 15 March one is deleted. The mailbox names them by the starts Exchange expanded.
    moved = {"original_start": STARTS[3], "start": "2027-03-22T15:00:00Z",
             "end": "2027-03-22T15:30:00Z"}  # fmt: skip
    user_update_items(
        agent.mailbox, "appointments",
        {item_id: {"modified_occurrences": [moved], "deleted_occurrences": [STARTS[2]]}},
    )  # fmt: skip
    assert _item(agent, master)[1]["modified_occurrences"] == [moved]
    result = _sync(agent)["recurringappointments"]
    assert (result.crm.updated, result.errors) == (1, 0), result
    rows = _occurrences(agent, master)
    assert sorted(rows) == [STARTS[0], STARTS[1], STARTS[3], STARTS[4]]
    assert (rows[STARTS[3]]["instancetypecode"], rows[STARTS[3]]["scheduledstart"]) == (
        3,
        moved["start"],
    )
    row = _master(agent, master)
    assert exceptions.parse_deleted_list(row["deletedexceptionslist"]) == [STARTS[2]]

    # In the CRM, Bob moves the last occurrence (29 March, 09:00 in New York) an hour later.
    bob_token = pair.tokens.static_token(BOB)
    bob = DataverseClient(pair.dataverse.api_url(ORG), lambda: bob_token)
    bob.update(
        "appointments", rows[STARTS[4]]["activityid"],
        {"scheduledstart": "2027-03-29T14:00:00Z", "scheduledend": "2027-03-29T14:30:00Z"},
        if_match="*",
    )  # fmt: skip
    back = _sync(agent)["recurringappointments"]
    assert (back.mailbox.updated, back.errors) == (1, 0), back
    item = _item(agent, master)[1]
    assert item["modified_occurrences"] == [
        moved,
        {"original_start": STARTS[4], "start": "2027-03-29T14:00:00Z",
         "end": "2027-03-29T14:30:00Z"},
    ]  # fmt: skip
    assert item["deleted_occurrences"] == [STARTS[2]]
    assert _quiet(_sync(agent))
    assert differences(agent, "recurringappointments") == []


def test_a_new_york_mailbox_series_reaches_the_crm_in_new_york_time(pair: SandboxPair) -> None:
    """The CRM series made from a mailbox series carries the mailbox series' zone
    (UTCConversionTimeZoneCode, writable: recurringappointmentmaster.md), and its
    PatternStartDate is that zone's midnight; the service's instances then fall on the
    mailbox's occurrences across New York's DST change, so an exception after it is accepted
    (not 0x8004E109)."""
    agent = _tokyo_agent(pair)
    recurrence = {
        "pattern": {"type": "weekly", "interval": 1, "weekdays": ["Monday"], "first_day_of_week": "Monday"},
        "range": {"type": "numbered", "start": "2027-03-01", "end": None, "count": 5},
    }  # fmt: skip
    [item_id] = user_create_items(
        agent.mailbox, "appointments",
        [tracked(subject="Client call", start=STARTS[0], end="2027-03-01T14:30:00Z",
                 timezone="America/New_York", recurrence=recurrence)],
    )  # fmt: skip
    first = _sync(agent)["recurringappointments"]
    assert (first.crm.created, first.errors) == (1, 0), first
    [crm_id] = [lk.crm_id for lk in agent.links("recurringappointments")]
    raw = pair.crm_client().get(SERIES, crm_id, ["utcconversiontimezonecode", "patternstartdate"])
    assert (raw["utcconversiontimezonecode"], raw["patternstartdate"]) == (
        EASTERN,
        "2027-03-01T05:00:00Z",
    )
    assert sorted(_occurrences(agent, crm_id)) == STARTS

    moved = {"original_start": STARTS[4], "start": "2027-03-29T16:00:00Z",
             "end": "2027-03-29T16:30:00Z"}  # fmt: skip
    user_update_items(agent.mailbox, "appointments", {item_id: {"modified_occurrences": [moved]}})
    result = _sync(agent)["recurringappointments"]
    assert (result.crm.updated, result.errors) == (1, 0), result
    exception = _occurrences(agent, crm_id)[STARTS[4]]
    assert (exception["instancetypecode"], exception["scheduledstart"]) == (3, moved["start"])
    assert _quiet(_sync(agent))
    assert differences(agent, "recurringappointments") == []
