"""Table definitions and time zones kept per organization in the local database for a day, and
dropped when a write is refused for a column reason; a series' dates in the series' own zone.

Against the strict sandbox Dataverse over HTTP; "a new process" is the module cache forgotten
and a new client, with the same local database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.identity import user_by_upn
from sync.crm import metadata
from sync.crm.client import DataverseClient
from sync.crm.metadata import TTL_SECONDS, Column, Metadata, Table, store_key
from sync.crm.side import DataverseSide
from sync.kinds.appointments import RECURRING_APPOINTMENTS, recurring_kind
from sync.kinds.tasks import TASKS
from sync.sides import CreateOp, Written
from sync.store.cache import SettingsCache
from sync.store.db import open_database
from tests.crm.conftest import ALICE, Sandbox

DEFINITIONS = ("EntityDefinitions", "usersettingscollection", "timezonedefinitions")
"""What a process asks to learn the definitions and the user's zone (request log targets)."""
EASTERN, TOKYO = 35, 235


def _me() -> str:
    user = user_by_upn(ALICE)
    assert user is not None
    return user.systemuser_id("contoso")


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[SettingsCache]:
    database = open_database(tmp_path / "data")
    metadata.forget()
    yield SettingsCache(database)
    metadata.forget()
    database.dispose()


@pytest.fixture
def zone_code(client: DataverseClient) -> Iterator[Any]:
    def set_code(code: int) -> None:
        client.update("usersettingscollection", _me(), {"timezonecode": code}, if_match="*")
        metadata.forget(client.api_url)

    yield set_code
    set_code(92)


def _definition_requests(sandbox: Sandbox, since: int) -> list[str]:
    return [
        e.target for e in list(sandbox.log)[since:] if e.method == "GET" and e.target in DEFINITIONS
    ]


def _mark(sandbox: Sandbox, client: DataverseClient) -> int:
    """The log's length once `client`'s earlier requests are in it: the server logs a request
    after answering it, before it reads the next one on the same connection."""
    client.who_am_i()
    return len(sandbox.log)


def _work(side: DataverseSide) -> None:
    """What a sync's first writes need: a task (its dates: definitions and the user's zone) and
    a series (the master's definitions; the appointment's are read for its exceptions)."""
    task = TASKS.crm_create({"subject": "Call back", "scheduledend": "2027-03-15"})
    series = RECURRING_APPOINTMENTS.crm_create(
        {
            "subject": "Weekly",
            "series_times": {"start": "2027-03-15T09:00:00Z", "end": "2027-03-15T09:30:00Z"},
            "recurrence": {
                "pattern": {"type": "daily", "interval": 1},
                "range": {"type": "numbered", "start": "2027-03-15", "end": None, "count": 2},
                "zone": "UTC",
            },
        }
    )
    assert all(isinstance(r, Written) for r in side.write("tasks", [_create(task)]))
    written = side.write("recurringappointmentmasters", [_create(series)])
    assert all(isinstance(r, Written) for r in written), written
    side.metadata.table("appointment")


def _create(fields: dict[str, Any]) -> CreateOp:
    return CreateOp(str(uuid.uuid4()), fields)


def test_a_second_process_asks_for_no_definitions(
    sandbox: Sandbox, cache: SettingsCache, zone_code: Any
) -> None:
    """query-metadata-web-api.md (EntityDefinitions … /Attributes, the DateTimeAttributeMetadata
    cast) and usersettings.md (timezonecode): read by the first process (two requests a table,
    one for the zone), kept in the local database; the second process makes none of them."""
    zone_code(105)
    with sandbox.client() as client:
        first = _mark(sandbox, client)
        _work(DataverseSide(client, owner_id=_me(), metadata_store=cache))
        _mark(sandbox, client)
    asked = _definition_requests(sandbox, first)
    assert sorted(asked) == ["EntityDefinitions"] * 6 + ["usersettingscollection"]
    assert cache.load(store_key(client.api_url)) is not None

    metadata.forget()  # a new process: nothing in memory
    with sandbox.client() as client:
        second = _mark(sandbox, client)
        side = DataverseSide(client, owner_id=_me(), metadata_store=cache)
        _work(side)
        assert side.metadata.time_zone(_me()).key == "Europe/Paris"
        _mark(sandbox, client)
    assert _definition_requests(sandbox, second) == []
    assert len(sandbox.log) > second  # the writes themselves did go out


def test_definitions_older_than_a_day_are_read_again(
    sandbox: Sandbox, client: DataverseClient, cache: SettingsCache
) -> None:
    now = [1_000_000.0]
    found = Metadata(client, cache, now=lambda: now[0])
    task = found.table("task")
    metadata.forget()
    start = _mark(sandbox, client)
    now[0] += TTL_SECONDS - 60  # a new process the same day: from the database
    assert Metadata(client, cache, now=lambda: now[0]).table("task") == task
    assert _definition_requests(sandbox, start) == []
    metadata.forget()
    now[0] += 120  # the next day: read again (and kept again)
    assert Metadata(client, cache, now=lambda: now[0]).table("task") == task
    _mark(sandbox, client)
    assert _definition_requests(sandbox, start) == ["EntityDefinitions"] * 2


def test_a_write_refused_for_a_column_drops_the_definitions(
    sandbox: Sandbox, client: DataverseClient, cache: SettingsCache
) -> None:
    """appointment.md: StateCode is not valid for create. Definitions kept from before a
    customization (here: made to say it is) let the side send it; the service refuses the
    column (0x80040203), so the side drops what it holds, here and in the database, and the
    next write reads the definitions again and goes through."""
    side = DataverseSide(client, owner_id=_me(), metadata_store=cache)
    real = side.metadata.table("appointment")
    wrong = {**real.columns, "statecode": Column("statecode", True, True)}
    side.metadata.table("appointment")  # kept; now made stale by hand:
    side.metadata._org.tables["appointment"] = (Table("appointment", wrong), side.metadata.now())
    side.metadata._keep()
    fields = {
        "subject": "Review",
        "scheduledstart": "2027-03-15T09:00:00Z",
        "scheduledend": "2027-03-15T10:00:00Z",
        "statecode": 0,
        "statuscode": 1,
    }
    [refused] = side.write("appointments", [_create(fields)])
    assert not isinstance(refused, Written) and refused.code == metadata.INVALID_ARGUMENT
    assert cache.load(store_key(client.api_url)) is None
    start = _mark(sandbox, client)
    [written] = side.write("appointments", [_create(fields)])
    assert isinstance(written, Written), written
    _mark(sandbox, client)
    assert sorted(_definition_requests(sandbox, start)) == [
        "EntityDefinitions",
        "EntityDefinitions",
        "usersettingscollection",
    ]
    assert side.metadata.table("appointment") == real


def test_a_series_days_are_its_own_zones_not_the_users(
    sandbox: Sandbox, client: DataverseClient, zone_code: Any
) -> None:
    """recurringappointmentmaster.md: PatternStartDate is UserLocal, Format DateOnly, and
    UTCConversionTimeZoneCode the zone the series was made in (the one the service expands it
    in). A Tokyo series starting on Monday 15 March holds midnight of 15 March in Tokyo
    (14 March 15:00 UTC); a user in New York (whose day of that moment is 14 March) still reads
    15 March, and a series the side writes in Tokyo's zone for her is stored so."""
    zone_code(EASTERN)
    side = DataverseSide(client, owner_id=_me())
    made = sandbox.server.insert(
        "contoso", "recurringappointmentmasters",
        {"subject": "Tokyo weekly", "starttime": "2027-03-15T00:00:00Z",
         "endtime": "2027-03-15T00:30:00Z", "duration": 30, "utcconversiontimezonecode": TOKYO,
         "patternstartdate": "2027-03-14T15:00:00Z", "recurrencepatterntype": 1, "interval": 1,
         "daysofweekmask": 2, "firstdayofweek": 1, "patternendtype": 2, "occurrences": 3,
         "isnthmonthly": False, "isnthyearly": False, "isweekdaypattern": False},
        as_user=ALICE,
    )  # fmt: skip
    row = side.read("recurringappointmentmasters", [made])[made].fields
    value = RECURRING_APPOINTMENTS.field("recurrence").crm_value(row)
    assert (value["range"]["start"], value["zone"]) == ("2027-03-15", "Tokyo Standard Time")

    kind = recurring_kind(timezone="America/New_York")
    fields = kind.crm_create(
        {"subject": "Tokyo too", "series_times": {"start": "2027-03-15T00:00:00Z",
                                                   "end": "2027-03-15T00:30:00Z"},
         "recurrence": {**value, "zone": "Tokyo Standard Time"}}
    )  # fmt: skip
    [written] = side.write("recurringappointmentmasters", [_create(fields)])
    assert isinstance(written, Written), written
    raw = client.get("recurringappointmentmasters", written.id, ["patternstartdate"])
    assert raw["patternstartdate"] == "2027-03-14T15:00:00Z"
    assert kind.field("recurrence").crm_value(written.fields)["range"]["start"] == "2027-03-15"
