"""The sandbox Dataverse refuses what the table references refuse, over real HTTP: columns not
valid for create or update, an organizer who is not a system user, statecode on an appointment
create, date-time literals of the wrong kind; and it serves the definitions a client reads
(`EntityDefinitions(LogicalName=…)/Attributes`) and the users' time zones (usersettings)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.dataverse import DataverseServer
from sandbox.dataverse.operations import coerce
from sandbox.dataverse.schema import TIME_ZONE_INDEPENDENT, EntityDef, Rules
from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry, user_by_upn
from sandbox.requestlog import RequestLog

ALICE = "alice@contoso.example"


@pytest.fixture(scope="module")
def server() -> Iterator[DataverseServer]:
    srv = DataverseServer(TokenRegistry(), RequestLog(), FaultProfile(), demo_scale=0)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(server: DataverseServer) -> Iterator[httpx.Client]:
    token = server.tokens.static_token(ALICE)
    with httpx.Client(
        base_url=server.api_url("contoso"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as client:
        yield client


def _me() -> str:
    user = user_by_upn(ALICE)
    assert user is not None
    return user.systemuser_id("contoso")


def _error(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


ORGANIZER = {"participationtypemask": 7, "partyid_systemuser@odata.bind": f"/systemusers({_me()})"}
SERIES = {
    "subject": "Weekly",
    "starttime": "2027-01-04T09:00:00Z",
    "endtime": "2027-01-04T09:30:00Z",
    "duration": 30,
    "recurrencepatterntype": 1,
    "interval": 1,
    "daysofweekmask": 2,
    "firstdayofweek": 1,
    "patternstartdate": "2027-01-04T00:00:00Z",
    "patternendtype": 2,
    "occurrences": 3,
}


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("instancetypecode", 3),
        ("originalstartdate", "2027-01-04T09:00:00Z"),
        ("statecode", 3),
        ("createdon", "2027-01-04T09:00:00Z"),
    ],
)
def test_an_appointment_create_refuses_columns_not_valid_for_create(
    alice: httpx.Client, column: str, value: Any
) -> None:
    """appointment.md: InstanceTypeCode, OriginalStartDate and CreatedOn are in its "Read-only
    columns/attributes" list; StateCode says "IsValidForCreate False"."""
    body = {"subject": "Meeting", "scheduledstart": "2027-01-04T09:00:00Z", column: value}
    assert _error(alice.post("appointments", json=body)) == (400, "0x80040203")


def test_the_series_of_an_appointment_is_not_set_by_a_write(alice: httpx.Client) -> None:
    """appointment.md lists SeriesId as read-only: an exception is not made by binding it."""
    master = alice.post("recurringappointmentmasters", json=SERIES)
    master_id = master.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    bind = {
        "seriesid_recurringappointmentmaster@odata.bind": f"/recurringappointmentmasters({master_id})"
    }
    answer = alice.post("appointments", json={"subject": "Exception?", **bind})
    assert _error(answer) == (400, "0x80040203")


def test_state_is_set_after_an_appointment_is_created(alice: httpx.Client) -> None:
    """appointment.md Messages: SetState is a PATCH of statecode and statuscode; the state and
    its status reason must agree (StatusCode options: 1 Free belongs to state 0 Open)."""
    made = alice.post(
        "appointments",
        json={"subject": "Free slot", "scheduledstart": "2027-01-05T09:00:00Z"},
        headers={"Prefer": "return=representation"},
    )
    assert made.status_code == 201, made.text
    assert (made.json()["statecode"], made.json()["statuscode"]) == (3, 5)  # Scheduled, Busy
    url = f"appointments({made.json()['activityid']})"
    assert _error(alice.patch(url, json={"statecode": 3, "statuscode": 1})) == (400, "0x80048408")
    assert alice.patch(url, json={"statecode": 0, "statuscode": 1}).status_code == 204
    assert alice.patch(url, json={"statecode": 2}).status_code == 204  # default status: 4
    assert alice.get(url, params={"$select": "statecode,statuscode"}).json()["statuscode"] == 4


def test_a_master_refuses_read_only_columns_and_firstdayofweek_on_update(
    alice: httpx.Client,
) -> None:
    """recurringappointmentmaster.md: DeletedExceptionsList is read-only; FirstDayOfWeek is
    "IsValidForUpdate False" (valid when the series is created)."""
    made = alice.post("recurringappointmentmasters", json=SERIES)
    assert made.status_code == 204, made.text
    url = made.headers["OData-EntityId"]
    listed = alice.patch(url, json={"deletedexceptionslist": "2027-01-11T09:00:00Z"})
    assert _error(listed) == (400, "0x80040203")
    assert _error(alice.patch(url, json={"firstdayofweek": 0})) == (400, "0x80040203")
    assert alice.patch(url, json={"patternendtype": 2, "occurrences": 4}).status_code == 204


def test_the_organizer_must_be_a_system_user(alice: httpx.Client) -> None:
    """appointment.md and recurringappointmentmaster.md: Organizer has Targets systemuser only
    (the attendees may be contacts or unresolved addresses)."""
    base = {"subject": "Meeting", "scheduledstart": "2027-01-06T09:00:00Z"}
    outside = {"participationtypemask": 7, "addressused": "boss@elsewhere.example"}
    attendee = {"participationtypemask": 5, "addressused": "guest@elsewhere.example"}
    refused = alice.post("appointments", json={**base, "appointment_activity_parties": [outside]})
    assert _error(refused) == (400, "0x80043506")
    parties = [ORGANIZER, attendee]
    made = alice.post("appointments", json={**base, "appointment_activity_parties": parties})
    assert made.status_code == 204, made.text
    series = {**SERIES, "recurringappointmentmaster_activity_parties": [outside]}
    assert _error(alice.post("recurringappointmentmasters", json=series)) == (400, "0x80043506")


@pytest.mark.parametrize(
    ("entity_set", "body"),
    [
        # UserLocal columns are Edm.DateTimeOffset: a date alone is no such value.
        ("tasks", {"subject": "Due", "scheduledend": "2027-01-07"}),
        ("recurringappointmentmasters", {**SERIES, "patternstartdate": "2027-01-04"}),
        # DateOnly columns are Edm.Date: a date and time is no such value.
        ("contacts", {"lastname": "Born", "birthdate": "1980-02-29T00:00:00Z"}),
    ],
)
def test_date_literals_must_fit_the_column_behaviour(
    alice: httpx.Client, entity_set: str, body: dict[str, Any]
) -> None:
    """behavior-format-date-time-attribute.md: UserLocal "For the Web API, the column is exposed
    as DateTimeOffset"; DateOnly "For the Web API, the column is exposed as Date"."""
    status, code = _error(alice.post(entity_set, json=body))
    assert (status, code) == (400, "0x80060888")


def test_user_local_values_are_stored_in_utc(alice: httpx.Client) -> None:
    """behavior-format-date-time-attribute.md, "Submitting through the API": a value with an
    offset is stored as its UTC equivalent; one without is stored as given, as UTC."""
    made = alice.post(
        "tasks",
        json={"subject": "Offsets", "scheduledstart": "2027-01-07T00:00:00+01:00",
              "scheduledend": "2027-01-07T12:00:00"},
        headers={"Prefer": "return=representation"},
    )  # fmt: skip
    assert (made.json()["scheduledstart"], made.json()["scheduledend"]) == (
        "2027-01-06T23:00:00Z",
        "2027-01-07T12:00:00Z",
    )


def test_time_zone_independent_values_keep_their_wall_clock() -> None:
    """behavior-format-date-time-attribute.md: TimeZoneIndependent, "no time zone conversion is
    performed" (none of the sandbox's tables has such a column; the rule is the same)."""
    entity = EntityDef(
        "checkins",
        "checkin",
        "checkinid",
        {"arrival": "dt"},
        rules=Rules(dates={"arrival": (TIME_ZONE_INDEPENDENT, "DateAndTime")}),
    )
    assert coerce(entity, "arrival", "2027-01-07T15:00:00+09:00") == "2027-01-07T15:00:00Z"


def test_usersettings_hold_the_time_zone_and_refuse_unknown_codes(
    alice: httpx.Client,
) -> None:
    """usersettings.md: Retrieve, RetrieveMultiple and Update only (keyed by systemuserid);
    TimeZoneCode; an unknown code is InvalidTimeZoneCode 0x800608F7 (Web service error codes)."""
    url = f"usersettingscollection({_me()})"
    assert alice.get(url, params={"$select": "timezonecode"}).json()["timezonecode"] == 92
    assert _error(alice.patch(url, json={"timezonecode": 9999})) == (400, "0x800608F7")
    assert alice.patch(url, json={"timezonecode": 105}).status_code == 204
    assert alice.patch(url, json={"timezonecode": 92}).status_code == 204
    refused = alice.post("usersettingscollection", json={"systemuserid": str(_me())})
    assert refused.status_code == 405


def test_table_definitions_give_validity_behaviour_and_format(alice: httpx.Client) -> None:
    """query-metadata-web-api.md: `EntityDefinitions(LogicalName='…')/Attributes` with
    `$select`, and the `Microsoft.Dynamics.CRM.DateTimeAttributeMetadata` cast for DateTimeBehavior
    (a complex type: Value) and Format. The values are the table references' (task.md,
    recurringappointmentmaster.md, appointment.md)."""
    base = "EntityDefinitions(LogicalName='{}')/Attributes"
    dates = alice.get(
        base.format("task") + "/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata",
        params={"$select": "LogicalName,DateTimeBehavior,Format"},
    ).json()["value"]
    by_name = {a["LogicalName"]: (a["DateTimeBehavior"]["Value"], a["Format"]) for a in dates}
    assert by_name["scheduledend"] == ("UserLocal", "DateAndTime")
    assert by_name["actualend"] == ("UserLocal", "DateOnly")
    assert set(dates[0]) == {
        "@odata.type",
        "MetadataId",
        "LogicalName",
        "DateTimeBehavior",
        "Format",
    }
    series = alice.get(
        base.format("recurringappointmentmaster")
        + "/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata"
    ).json()["value"]
    start = next(a for a in series if a["LogicalName"] == "patternstartdate")
    assert (start["DateTimeBehavior"]["Value"], start["Format"]) == ("UserLocal", "DateOnly")
    flags = {
        a["LogicalName"]: (a["IsValidForCreate"], a["IsValidForUpdate"])
        for name in ("appointment", "recurringappointmentmaster")
        for a in alice.get(
            base.format(name),
            params={"$select": "LogicalName,IsValidForCreate,IsValidForUpdate"},
        ).json()["value"]
        if a["LogicalName"] in ("statecode", "instancetypecode", "firstdayofweek")
        and (name == "appointment") == (a["LogicalName"] != "firstdayofweek")
    }
    assert flags == {
        "statecode": (False, True),
        "instancetypecode": (False, False),
        "firstdayofweek": (True, False),
    }
    missing = alice.get("EntityDefinitions(LogicalName='nosuchtable')/Attributes")
    assert missing.status_code == 404
