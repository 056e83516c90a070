"""The sandbox Dataverse's table definitions say whether each table is change-tracked (and the
collection answers a `$filter`), and its series follow the service: an exception made by
another user belongs to the series' owner, a master's zone is checked on update as on create,
and a series ended by DeleteOpenInstances ends on its latest earlier occurrence."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.dataverse import DataverseServer
from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry, user_by_upn
from sandbox.requestlog import RequestLog

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"
CRM = "Microsoft.Dynamics.CRM"


@pytest.fixture(scope="module")
def server() -> Iterator[DataverseServer]:
    srv = DataverseServer(TokenRegistry(), RequestLog(), FaultProfile(), demo_scale=0)
    srv.start()
    yield srv
    srv.stop()


def _client(server: DataverseServer, upn: str) -> httpx.Client:
    token = server.tokens.static_token(upn)
    return httpx.Client(
        base_url=server.api_url("contoso"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


@pytest.fixture(scope="module")
def alice(server: DataverseServer) -> Iterator[httpx.Client]:
    with _client(server, ALICE) as client:
        yield client


@pytest.fixture(scope="module")
def bob(server: DataverseServer) -> Iterator[httpx.Client]:
    with _client(server, BOB) as client:
        yield client


def _id(upn: str) -> str:
    user = user_by_upn(upn)
    assert user is not None
    return user.systemuser_id("contoso")


# --- definitions ---------------------------------------------------------------------------------


def test_definitions_say_whether_a_table_is_change_tracked(
    server: DataverseServer, alice: httpx.Client
) -> None:
    """EntityMetadata.ChangeTrackingEnabled ("True if change tracking is enabled"), from the
    per-table setting a tracked request meets (use-change-tracking-synchronize-data-external-
    systems.md: "make sure that the change tracking is enabled for that table")."""
    url = "EntityDefinitions(LogicalName='task')"
    assert alice.get(url, params={"$select": "ChangeTrackingEnabled"}).json()[
        "ChangeTrackingEnabled"
    ] is True  # fmt: skip
    server.security.set_change_tracking("contoso", "tasks", False)
    try:
        answer = alice.get(url, params={"$select": "LogicalName,ChangeTrackingEnabled"}).json()
        assert (answer["LogicalName"], answer["ChangeTrackingEnabled"]) == ("task", False)
        assert set(answer) == {"@odata.context", "MetadataId", "LogicalName",
                               "ChangeTrackingEnabled"}  # fmt: skip
        refused = alice.get("tasks", headers={"Prefer": "odata.track-changes"})
        assert refused.json()["error"]["code"] == "0x80072491"  # the same setting
    finally:
        server.security.set_change_tracking("contoso", "tasks", True)
    mailbox = alice.get("EntityDefinitions(LogicalName='mailbox')").json()
    assert mailbox["ChangeTrackingEnabled"] is False  # not among the tracked tables
    server.strict = False
    try:  # lenient: every table is tracked, as its tracked requests are
        assert alice.get("EntityDefinitions(LogicalName='mailbox')").json()[
            "ChangeTrackingEnabled"
        ] is True  # fmt: skip
    finally:
        server.strict = True


def test_the_definitions_collection_takes_select_and_filter(
    server: DataverseServer, alice: httpx.Client
) -> None:
    """query-metadata-web-api.md: "Use the `EntityDefinitions` entity set path", "you can use
    `$filter` on any properties which use primitive or enumeration values", "There is no
    paging. All matching resources will be returned in the first response"."""
    server.security.set_change_tracking("contoso", "contacts", False)
    try:
        answer = alice.get(
            "EntityDefinitions",
            params={
                "$select": "LogicalName,ChangeTrackingEnabled",
                "$filter": "LogicalName eq 'contact' or LogicalName eq 'task' "
                "or LogicalName eq 'nosuchtable'",
            },
        )
    finally:
        server.security.set_change_tracking("contoso", "contacts", True)
    assert answer.status_code == 200
    body = answer.json()
    assert body["@odata.context"].endswith(
        "$metadata#EntityDefinitions(LogicalName,ChangeTrackingEnabled)"
    )
    assert "@odata.nextLink" not in body
    assert [(r["LogicalName"], r["ChangeTrackingEnabled"]) for r in body["value"]] == [
        ("contact", False),
        ("task", True),
    ]
    activities = alice.get("EntityDefinitions", params={"$filter": "IsActivity eq true"}).json()
    assert {r["LogicalName"] for r in activities["value"]} >= {"appointment", "task", "email"}
    assert all(r["IsActivity"] for r in activities["value"])
    unknown = alice.get("EntityDefinitions", params={"$filter": "Nope eq 1"})
    assert unknown.status_code == 400 and "Nope" in unknown.json()["error"]["message"]
    assert alice.get("EntityDefinitions", params={"$top": "1"}).status_code == 400
    assert alice.post("EntityDefinitions", json={}).status_code == 405


# --- series ---------------------------------------------------------------------------------------


def _weekly(owner: str, **changes: Any) -> dict[str, Any]:
    """Mondays 09:00 UTC from 1 March 2027, 4 occurrences, owned by `owner`."""
    return {
        "subject": "Weekly",
        "starttime": "2027-03-01T09:00:00Z",
        "endtime": "2027-03-01T09:30:00Z",
        "duration": 30,
        "recurrencepatterntype": 1,
        "interval": 1,
        "daysofweekmask": 2,
        "firstdayofweek": 1,
        "patternstartdate": "2027-03-01T00:00:00Z",
        "patternendtype": 2,
        "occurrences": 4,
        "utcconversiontimezonecode": 92,
        "ownerid@odata.bind": f"/systemusers({_id(owner)})",
        **changes,
    }


def _rows(server: DataverseServer, master: str) -> dict[str, dict[str, Any]]:
    with server.store.lock:
        return {
            str(r.values["originalstartdate"]): dict(r.values)
            for r in server.table("contoso", "appointments").rows.values()
            if r.values.get("_seriesid_value") == master
        }


def test_an_exception_made_by_another_user_belongs_to_the_series_owner(
    server: DataverseServer, bob: httpx.Client
) -> None:
    """create-recurring-appointment-series-instance-exception.md: an exception is an
    occurrence of the series; like the instances the service expands (owned as the series is),
    it belongs to the series' owner, not to whoever called CreateException."""
    server.api.expansion.limit = 1
    try:
        master = server.insert("contoso", "recurringappointmentmasters", _weekly(ALICE),
                               as_user=ALICE)  # fmt: skip
    finally:
        server.api.expansion.limit = 500
    made = bob.post(
        f"recurringappointmentmasters/{CRM}.CreateException",
        json={
            "Target": {
                "@odata.type": f"{CRM}.appointment",
                "seriesid_recurringappointmentmaster@odata.bind": f"/recurringappointmentmasters({master})",
                "scheduledstart": "2027-03-15T11:00:00Z",
                "scheduledend": "2027-03-15T11:30:00Z",
            },
            "OriginalStartDate": "2027-03-15T09:00:00Z",
            "IsDeleted": False,
        },
    )
    assert made.status_code == 200, made.text
    exception = _rows(server, master)["2027-03-15T09:00:00Z"]
    assert (exception["instancetypecode"], exception["_ownerid_value"]) == (3, _id(ALICE))
    instance = _rows(server, master)["2027-03-01T09:00:00Z"]
    assert instance["_ownerid_value"] == _id(ALICE)


def test_a_masters_zone_is_checked_on_update_as_on_create(
    server: DataverseServer, alice: httpx.Client
) -> None:
    """InvalidTimeZoneCode (0x800608F7) for a zone the organization does not know, on update
    too (UTCConversionTimeZoneCode is valid for update: recurringappointmentmaster.md); the
    refused write changes nothing (the instances stay as they were)."""
    master = server.insert("contoso", "recurringappointmentmasters", _weekly(ALICE), as_user=ALICE)
    before = _rows(server, master)
    refused = alice.patch(
        f"recurringappointmentmasters({master})", json={"utcconversiontimezonecode": 9999}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "0x800608F7"
    assert _rows(server, master) == before
    moved = alice.patch(
        f"recurringappointmentmasters({master})", json={"utcconversiontimezonecode": 35}
    )
    assert moved.status_code == 204
    # expanded again in New York's wall-clock: 09:00 UTC of the first occurrence is 04:00 EST
    assert sorted(_rows(server, master)) == [
        "2027-03-01T09:00:00Z", "2027-03-08T09:00:00Z", "2027-03-15T08:00:00Z",
        "2027-03-22T08:00:00Z"]  # fmt: skip


def test_delete_open_instances_ends_on_the_latest_earlier_occurrence(
    server: DataverseServer, alice: httpx.Client
) -> None:
    """delete-or-end-a-recurring-appointment-series-or-instance.md (DeleteOpenInstances: the
    instances from SeriesEndDate on go, the series ends): an exception of an earlier occurrence
    moved past a later one still ends the series on the day of the latest earlier start."""
    master = server.insert("contoso", "recurringappointmentmasters", _weekly(ALICE), as_user=ALICE)
    rows = _rows(server, master)
    first = rows["2027-03-01T09:00:00Z"]["activityid"]
    moved = alice.patch(
        f"appointments({first})",
        json={"scheduledstart": "2027-03-10T09:00:00Z", "scheduledend": "2027-03-10T09:30:00Z"},
    )
    assert moved.status_code == 204
    ended = alice.post(
        "DeleteOpenInstances",
        json={"Target": {"activityid": master, "@odata.type": f"{CRM}.recurringappointmentmaster"},
              "SeriesEndDate": "2027-03-12T00:00:00Z", "StateOfPastInstances": 1},
    )  # fmt: skip
    assert ended.status_code == 204, ended.text
    row = alice.get(f"recurringappointmentmasters({master})").json()
    assert (row["patternendtype"], row["patternenddate"]) == (3, "2027-03-10T00:00:00Z")
    assert sorted(_rows(server, master)) == ["2027-03-01T09:00:00Z", "2027-03-08T09:00:00Z"]
