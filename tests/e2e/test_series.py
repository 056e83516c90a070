"""Recurring series end to end (sandbox Dataverse + sandbox EWS, and the same over sandbox
Graph: the `pair` fixture's param): every recurrence pattern
round-trips, a weekly series crossing a DST change keeps its wall-clock time, and moved and
deleted occurrences travel both ways inside the one link of their series."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.crm.entities import KIND_SPECS, EntitySpec
from sync.crm.side import DataverseSide
from sync.engine import EngineSettings, KindResult, sync_kind
from sync.kinds import KINDS, exceptions
from sync.kinds.appointments import recurring_kind
from sync.kinds.base import Kind
from sync.kinds.recurrence import expand, from_columns
from tests.e2e.harness import (
    ALICE,
    FORMATTED,
    ORG,
    PROTOCOLS,
    Agent,
    SandboxPair,
    differences,
    full_read,
    seed_series,
    start_pair,
    tracked,
    user_create_items,
    user_update_items,
)

CALENDAR = ("appointments", "recurringappointments")
SERIES = "recurringappointmentmasters"
# The CRM side must expand a master's exception rows (see sync/kinds/exceptions.py EXPAND).
SERIES_SPEC = EntitySpec(
    SERIES, "activityid", expand=f"{KIND_SPECS[SERIES].expand},{exceptions.EXPAND}"
)


@pytest.fixture(scope="module", params=PROTOCOLS)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxPair]:
    """A Dataverse + mailbox pair per protocol: every test runs over EWS and over Graph."""
    with start_pair(tmp_path_factory.mktemp("series"), protocol=request.param) as running:
        yield running


def _agent(pair: SandboxPair) -> Agent:
    crm = DataverseSide(
        pair.crm_client(annotations=FORMATTED),
        kind_specs={**KIND_SPECS, SERIES: SERIES_SPEC},
        owner_id=pair.me,
    )
    return Agent(crm, pair.mailbox_side(), pair.new_database(), EngineSettings(me=pair.me))


def _sync(agent: Agent, series: Kind | None = None) -> dict[str, KindResult]:
    """Single appointments, then series (with `series` as the series kind, e.g. in a zone)."""
    kinds = [agent.kinds["appointments"], series or agent.kinds["recurringappointments"]]
    return {
        k.name: sync_kind(k, agent.crm, agent.mailbox, agent.store, agent.settings) for k in kinds
    }


def _quiet(results: dict[str, KindResult]) -> bool:
    return all(r.changed == 0 and r.errors == 0 for r in results.values())


def _item_for(agent: Agent, crm_id: str) -> dict[str, Any]:
    [link] = [lk for lk in agent.links("recurringappointments") if lk.crm_id == crm_id]
    assert link.mailbox_id is not None
    return dict(agent.mailbox.read("appointments", [link.mailbox_id])[link.mailbox_id].fields)


def _master(agent: Agent, crm_id: str) -> dict[str, Any]:
    return dict(agent.crm.read(SERIES, [crm_id])[crm_id].fields)


def test_every_pattern_round_trips_crm_to_mailbox_to_crm(pair: SandboxPair) -> None:
    ids = seed_series(pair, 5)  # daily, weekly, monthly absolute/relative, yearly absolute
    agent = _agent(pair)
    pattern = KINDS["recurringappointments"].field("recurrence")
    before = {i: pattern.crm_value(_master(agent, i)) for i in ids}
    # the pattern and range as the columns hold them, in the zone of the series' creator (UTC)
    assert all(
        {**before[i], "zone": None} == {**from_columns(_master(agent, i)), "zone": None}
        and before[i]["zone"] == "UTC"
        for i in ids
    )
    first = _sync(agent)["recurringappointments"]
    assert (first.mailbox.created, first.errors) == (5, 0)
    for crm_id in ids:
        item = _item_for(agent, crm_id)
        assert pattern.mailbox_value(item) == before[crm_id]
    # The mailbox's own series of the two pattern types the seed lacks come back to the CRM.
    start = datetime(2027, 2, 1, 10, tzinfo=UTC)
    made = user_create_items(
        agent.mailbox,
        "appointments",
        [
            tracked(subject="Yearly review", start="2027-04-12T10:00:00Z",
                    end="2027-04-12T11:00:00Z", timezone="UTC",
                    recurrence={"pattern": {"type": "relative_yearly", "interval": 1,
                                            "weekdays": ["Monday"], "week_index": "Second",
                                            "month": 4},
                                "range": {"type": "no_end", "start": "2027-04-12", "end": None,
                                          "count": None}}),
            tracked(subject="Weekdays till March", start=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    end=(start + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    timezone="UTC",
                    recurrence={"pattern": {"type": "weekly", "interval": 1,
                                            "weekdays": ["Monday", "Tuesday", "Wednesday",
                                                         "Thursday", "Friday"],
                                            "first_day_of_week": "Sunday"},
                                "range": {"type": "end_date", "start": "2027-02-01",
                                          "end": "2027-03-31", "count": None}}),
        ],
    )  # fmt: skip
    second = _sync(agent)["recurringappointments"]
    assert (second.crm.created, second.errors) == (2, 0)
    rows = {lk.mailbox_id: lk.crm_id for lk in agent.links("recurringappointments")}
    yearly = _master(agent, rows[made[0]])
    assert (yearly["recurrencepatterntype"], yearly["isnthyearly"], yearly["instance"]) == (
        3, True, 2)  # fmt: skip
    weekdays = _master(agent, rows[made[1]])
    assert (weekdays["daysofweekmask"], weekdays["patternendtype"]) == (0b0111110, 3)
    assert _quiet(_sync(agent))
    assert differences(agent, "recurringappointments") == []
    assert {i: pattern.crm_value(_master(agent, i)) for i in ids} == before


def test_a_weekly_series_across_dst_keeps_its_wall_clock_and_its_exceptions(
    pair: SandboxPair,
) -> None:
    """Paris, 09:00 on Mondays from 15 March 2027: summer time starts on 28 March, so the
    29 March occurrence is at 07:00 UTC, not 08:00. A move and a delete made in the mailbox
    on either side of the change reach the CRM with the right original starts."""
    paris = recurring_kind(timezone="Europe/Paris")
    master = pair.dataverse.insert(
        ORG, SERIES,
        # A Paris series in the CRM too: utcconversiontimezonecode 105 (Romance Standard Time),
        # the zone the service expands it in.
        {"subject": "Paris weekly", "starttime": "2027-03-15T08:00:00Z",
         "utcconversiontimezonecode": 105,
         "endtime": "2027-03-15T09:00:00Z", "duration": 60,
         "recurrencepatterntype": 1, "interval": 1, "daysofweekmask": 2, "firstdayofweek": 1,
         "patternstartdate": "2027-03-15T00:00:00Z", "patternendtype": 2, "occurrences": 5,
         "isnthmonthly": False, "isnthyearly": False, "isweekdaypattern": False,
         "recurringappointmentmaster_activity_parties": [
             {"participationtypemask": 7, "partyid_systemuser@odata.bind": f"/systemusers({pair.me})"}]},
        as_user=ALICE,
    )  # fmt: skip
    agent = _agent(pair)
    assert _sync(agent, paris)["recurringappointments"].mailbox.created == 1
    item = _item_for(agent, master)
    assert (item["timezone"], item["start"]) == ("Europe/Paris", "2027-03-15T08:00:00Z")
    starts = expand(paris.field("recurrence").mailbox_value(item), item["start"], "Europe/Paris")
    assert [s.strftime("%d %H:%M") for s in starts] == [
        "15 08:00", "22 08:00", "29 07:00", "05 07:00", "12 07:00"]  # fmt: skip

    [link] = [lk for lk in agent.links("recurringappointments") if lk.crm_id == master]
    assert link.mailbox_id is not None
    moved = {"original_start": "2027-03-29T07:00:00Z", "start": "2027-03-29T12:00:00Z",
             "end": "2027-03-29T13:00:00Z"}  # fmt: skip
    user_update_items(
        agent.mailbox, "appointments",
        {link.mailbox_id: {"modified_occurrences": [moved],
                           "deleted_occurrences": ["2027-03-22T08:00:00Z"]}},
    )  # fmt: skip
    item = _item_for(agent, master)
    assert (item["modified_occurrences"], item["deleted_occurrences"]) == (
        [moved], ["2027-03-22T08:00:00Z"])  # fmt: skip
    result = _sync(agent, paris)["recurringappointments"]
    assert (result.crm.updated, result.mailbox.updated, result.errors) == (1, 0, 0)
    row = _master(agent, master)
    assert exceptions.parse_deleted_list(row["deletedexceptionslist"]) == ["2027-03-22T08:00:00Z"]
    [child] = [c for c in row[exceptions.NAVIGATION] if c["instancetypecode"] == 3]
    assert (child["instancetypecode"], child["originalstartdate"], child["scheduledstart"]) == (
        3, "2027-03-29T07:00:00Z", "2027-03-29T12:00:00Z")  # fmt: skip
    # The instances the service expanded in Paris time: 08:00 UTC, then 07:00 UTC from 29 March.
    starts = sorted(c["originalstartdate"] for c in row[exceptions.NAVIGATION])
    assert starts == ["2027-03-15T08:00:00Z", "2027-03-29T07:00:00Z", "2027-04-05T07:00:00Z",
                      "2027-04-12T07:00:00Z"]  # fmt: skip
    assert _quiet(_sync(agent, paris))
    assert [lk.crm_id for lk in agent.links("recurringappointments")].count(master) == 1
    calendar = full_read(agent.mailbox, "appointments")
    assert sum(1 for u in calendar.values() if u.key == master) == 1


def test_exceptions_made_in_the_crm_reach_the_mailbox_once(pair: SandboxPair) -> None:
    [master] = seed_series(pair, 1)  # every other day, 8 occurrences
    agent = _agent(pair)
    _sync(agent)
    rec = KINDS["recurringappointments"]
    values = rec.crm_values(_master(agent, master))
    first, second, third = expand(values["recurrence"], values["series_times"]["start"])[:3]

    moved = {"original_start": _iso(third), "start": _iso(third + timedelta(hours=2)),
             "end": _iso(third + timedelta(hours=2, minutes=45))}  # fmt: skip
    # A CRM user moves the third occurrence: an update of its instance, which the service makes
    # an exception (update-recurring-appointment.md); the master does not change …
    client = pair.crm_client()
    instances = _instances(agent, master)
    client.update(
        "appointments", instances[moved["original_start"]],
        {"scheduledstart": moved["start"], "scheduledend": moved["end"]}, if_match="*",
    )  # fmt: skip
    result = _sync(agent)
    assert (result["recurringappointments"].mailbox.updated, result["appointments"].changed) == (
        1,
        0,
    )
    assert _item_for(agent, master)["modified_occurrences"] == [moved]
    # … and deletes the second one (Dataverse lists it on the master).
    client.delete("appointments", instances[_iso(second)])
    assert _sync(agent)["recurringappointments"].mailbox.updated == 1
    item = _item_for(agent, master)
    assert (item["deleted_occurrences"], item["modified_occurrences"]) == ([_iso(second)], [moved])
    assert _iso(first) not in item["deleted_occurrences"]
    assert _quiet(_sync(agent))
    assert differences(agent, "recurringappointments") == []
    calendar = full_read(agent.mailbox, "appointments")
    assert sum(1 for u in calendar.values() if u.key == master) == 1


def test_a_fresh_install_relinks_series_with_exceptions_and_creates_nothing(
    pair: SandboxPair,
) -> None:
    [master] = seed_series(pair, 1)
    first = _agent(pair)
    _sync(first)
    values = KINDS["recurringappointments"].crm_values(_master(first, master))
    fourth = expand(values["recurrence"], values["series_times"]["start"])[3]
    pair.crm_client().update(
        "appointments", _instances(first, master)[_iso(fourth)],
        {"scheduledstart": _iso(fourth + timedelta(hours=1)),
         "scheduledend": _iso(fourth + timedelta(hours=2))}, if_match="*",
    )  # fmt: skip
    _sync(first)
    assert _item_for(first, master)["modified_occurrences"]

    def exception_rows() -> int:
        rows = pair.dataverse.table(ORG, "appointments").rows.values()
        return sum(1 for r in rows if r.values.get("instancetypecode") == 3)

    before, items = exception_rows(), len(full_read(first.mailbox, "appointments"))
    fresh = _agent(pair)  # a new install: an empty local database
    series = _sync(fresh)["recurringappointments"]
    assert (series.mailbox.created, series.crm.created, series.relinked) == (0, 0, items)
    assert (series.mailbox.updated, series.crm.updated, series.errors) == (0, 0, 0)
    assert len(full_read(fresh.mailbox, "appointments")) == items
    assert exception_rows() == before
    assert _quiet(_sync(fresh))


def _instances(agent: Agent, master: str) -> dict[str, str]:
    """The ids of a master's occurrence rows, by original start."""
    rows = _master(agent, master)[exceptions.NAVIGATION]
    return {str(c["originalstartdate"]): str(c["activityid"]) for c in rows}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
