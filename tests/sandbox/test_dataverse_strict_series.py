"""Recurring series in the sandbox Dataverse as the service keeps them: a master expanded into
instance rows (in its time zone, across a DST change), an updated instance made an exception,
a deleted one listed on the master, a new pattern expanded again, and the CreateException,
DeleteOpenInstances and AddRecurrence messages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.dataverse import DataverseServer
from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry, user_by_upn
from sandbox.requestlog import RequestLog

ALICE = "alice@contoso.example"
CRM = "Microsoft.Dynamics.CRM"


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


def _paris_weekly(**changes: Any) -> dict[str, Any]:
    """Mondays 09:00 in Paris from 15 March 2027 (summer time starts on 28 March)."""
    return {
        "subject": "Paris weekly",
        "location": "Room 1",
        "starttime": "2027-03-15T08:00:00Z",
        "endtime": "2027-03-15T09:00:00Z",
        "duration": 60,
        "recurrencepatterntype": 1,
        "interval": 1,
        "daysofweekmask": 2,
        "firstdayofweek": 1,
        "patternstartdate": "2027-03-14T23:00:00Z",  # 15 March, midnight in Paris
        "patternendtype": 2,
        "occurrences": 4,
        "utcconversiontimezonecode": 105,  # Romance Standard Time
        **changes,
    }


def _create(client: httpx.Client, body: dict[str, Any]) -> str:
    made = client.post("recurringappointmentmasters", json=body)
    assert made.status_code == 204, made.text
    return made.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def _occurrences(client: httpx.Client, master: str) -> dict[str, dict[str, Any]]:
    rows = client.get(
        f"recurringappointmentmasters({master})/recurringappointmentmaster_appointment",
        params={"$select": "activityid,instancetypecode,originalstartdate,scheduledstart,subject"},
    ).json()["value"]
    return {row["originalstartdate"]: row for row in rows}


def _master(client: httpx.Client, master: str) -> dict[str, Any]:
    return dict(client.get(f"recurringappointmentmasters({master})").json())


def test_a_master_is_expanded_into_instances_in_its_time_zone(alice: httpx.Client) -> None:
    """create-recurring-appointment-series-instance-exception.md: instances are appointment rows
    with InstanceTypeCode 2 and SeriesId the master; the wall-clock time stays 09:00 Paris."""
    master = _create(alice, _paris_weekly())
    rows = _occurrences(alice, master)
    assert sorted(rows) == [
        "2027-03-15T08:00:00Z",
        "2027-03-22T08:00:00Z",
        "2027-03-29T07:00:00Z",
        "2027-04-05T07:00:00Z",
    ]
    assert {r["instancetypecode"] for r in rows.values()} == {2}
    assert {r["subject"] for r in rows.values()} == {"Paris weekly"}


def test_the_creators_time_zone_is_the_series_zone(alice: httpx.Client) -> None:
    """recurringappointmentmaster.md, UTCConversionTimeZoneCode: "Time zone code that was in use
    when the record was created" (the creating user's usersettings.timezonecode)."""
    body = _paris_weekly()
    del body["utcconversiontimezonecode"]
    master = _create(alice, body)
    assert _master(alice, master)["utcconversiontimezonecode"] == 92  # alice: UTC
    assert "2027-03-29T08:00:00Z" in _occurrences(alice, master)  # 08:00 UTC all along


def test_updating_an_instance_makes_an_exception_and_deleting_one_lists_it(
    alice: httpx.Client,
) -> None:
    """update-recurring-appointment.md: "When you update a recurring appointment instance, the
    instance is marked as an exception"; delete-or-end-a-recurring-appointment-series-or-
    instance.md: deleting one creates "an entry … in the RecurringAppointmentMaster.
    DeletedExceptionsList"."""
    master = _create(alice, _paris_weekly())
    rows = _occurrences(alice, master)
    moved = rows["2027-03-29T07:00:00Z"]["activityid"]
    answer = alice.patch(
        f"appointments({moved})",
        json={"scheduledstart": "2027-03-29T12:00:00Z", "scheduledend": "2027-03-29T13:00:00Z"},
    )
    assert answer.status_code == 204, answer.text
    assert (
        alice.delete(f"appointments({rows['2027-03-22T08:00:00Z']['activityid']})").status_code
        == 204
    )
    rows = _occurrences(alice, master)
    assert rows["2027-03-29T07:00:00Z"]["instancetypecode"] == 3
    assert rows["2027-03-29T07:00:00Z"]["scheduledstart"] == "2027-03-29T12:00:00Z"
    assert "2027-03-22T08:00:00Z" not in rows
    assert _master(alice, master)["deletedexceptionslist"] == "2027-03-22T08:00:00Z"


def test_new_recurrence_information_expands_again_and_basic_information_reaches_instances(
    alice: httpx.Client,
) -> None:
    """update-recurring-appointment.md: basic information (subject, location) reaches the
    instances; new recurrence information deletes the instances and expands the new pattern."""
    master = _create(alice, _paris_weekly())
    first = _occurrences(alice, master)
    assert (
        alice.patch(
            f"recurringappointmentmasters({master})", json={"subject": "Renamed"}
        ).status_code
        == 204
    )
    assert {r["subject"] for r in _occurrences(alice, master).values()} == {"Renamed"}
    assert (
        alice.patch(f"recurringappointmentmasters({master})", json={"occurrences": 2}).status_code
        == 204
    )
    again = _occurrences(alice, master)
    assert sorted(again) == ["2027-03-15T08:00:00Z", "2027-03-22T08:00:00Z"]
    assert set(r["activityid"] for r in again.values()) <= {r["activityid"] for r in first.values()}


def test_create_exception_for_occurrences_without_a_row(
    server: DataverseServer, alice: httpx.Client
) -> None:
    """CreateException (bound to the recurringappointmentmaster collection; Target, the
    appointment; OriginalStartDate; IsDeleted) answers CreateExceptionResponse {id}; an original
    start that is no occurrence is InvalidSeriesIdOriginalStart 0x8004E109."""
    server.api.expansion.limit = 2
    try:
        master = _create(alice, _paris_weekly())
    finally:
        server.api.expansion.limit = 500
    assert len(_occurrences(alice, master)) == 2
    action = f"recurringappointmentmasters/{CRM}.CreateException"
    bind = {
        "seriesid_recurringappointmentmaster@odata.bind": f"/recurringappointmentmasters({master})"
    }
    moved = alice.post(
        action,
        json={
            "Target": {"@odata.type": f"{CRM}.appointment", **bind,
                       "scheduledstart": "2027-03-29T15:00:00Z", "scheduledend": "2027-03-29T16:00:00Z"},
            "OriginalStartDate": "2027-03-29T07:00:00Z",
            "IsDeleted": False,
        },
    )  # fmt: skip
    assert moved.status_code == 200, moved.text
    rows = _occurrences(alice, master)
    assert rows["2027-03-29T07:00:00Z"]["activityid"] == moved.json()["id"]
    assert rows["2027-03-29T07:00:00Z"]["instancetypecode"] == 3
    deleted = alice.post(
        action,
        json={"Target": bind, "OriginalStartDate": "2027-04-05T07:00:00Z", "IsDeleted": True},
    )
    assert deleted.status_code == 200, deleted.text
    assert _master(alice, master)["deletedexceptionslist"] == "2027-04-05T07:00:00Z"
    wrong = alice.post(
        action,
        json={"Target": bind, "OriginalStartDate": "2027-03-30T07:00:00Z", "IsDeleted": True},
    )
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (400, "0x8004E109")


def test_delete_open_instances_ends_a_series(alice: httpx.Client) -> None:
    """delete-or-end-a-recurring-appointment-series-or-instance.md: DeleteOpenInstances (an
    unbound action: Target, SeriesEndDate, StateOfPastInstances) deletes the open instances from
    the end date on, sets the state of the earlier ones and cancels the series."""
    master = _create(alice, _paris_weekly())
    answer = alice.post(
        "DeleteOpenInstances",
        json={
            "Target": {"@odata.type": f"{CRM}.recurringappointmentmaster", "activityid": master},
            "SeriesEndDate": "2027-03-25T00:00:00Z",
            "StateOfPastInstances": 1,
        },
    )
    assert answer.status_code == 204, answer.text
    rows = _occurrences(alice, master)
    assert sorted(rows) == ["2027-03-15T08:00:00Z", "2027-03-22T08:00:00Z"]
    ended = _master(alice, master)
    assert (ended["statecode"], ended["statuscode"], ended["patternendtype"]) == (2, 4, 3)
    assert ended["patternenddate"] == "2027-03-21T23:00:00Z"  # 22 March, Paris


def test_add_recurrence_turns_an_appointment_into_a_series(alice: httpx.Client) -> None:
    """create-recurring-appointment-series-instance-exception.md, "Convert an appointment": the
    appointment's data goes to a new master and the appointment is deleted (AddRecurrence is
    bound to the appointment; Target, the master)."""
    user = user_by_upn(ALICE)
    assert user is not None
    made = alice.post(
        "appointments",
        json={"subject": "Becomes weekly", "scheduledstart": "2027-05-03T09:00:00Z",
              "scheduledend": "2027-05-03T09:30:00Z",
              "appointment_activity_parties": [{"participationtypemask": 7,
                  "partyid_systemuser@odata.bind": f"/systemusers({user.systemuser_id('contoso')})"}]},
    )  # fmt: skip
    appointment = made.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    answer = alice.post(
        f"appointments({appointment})/{CRM}.AddRecurrence",
        json={"Target": {"@odata.type": f"{CRM}.recurringappointmentmaster",
                         "recurrencepatterntype": 1, "interval": 1, "daysofweekmask": 2,
                         "patternstartdate": "2027-05-03T00:00:00Z", "patternendtype": 2,
                         "occurrences": 2, "duration": 30}},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    master = answer.json()
    assert (master["subject"], master["starttime"]) == ("Becomes weekly", "2027-05-03T09:00:00Z")
    assert alice.get(f"appointments({appointment})").status_code == 404
    assert sorted(_occurrences(alice, master["activityid"])) == [
        "2027-05-03T09:00:00Z",
        "2027-05-10T09:00:00Z",
    ]
