"""The wizard's live count of "My appointments" counts what the sync takes: single appointments,
not the instance and exception rows a series is expanded into (appointment.md InstanceTypeCode:
0 Not Recurring, 2 Recurring Instance, 3 Recurring Exception; the series itself syncs once, by
its master)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.dataverse import DataverseServer
from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry, user_by_upn
from sandbox.requestlog import RequestLog
from sync.crm.client import DataverseClient
from sync.setup import choices
from sync.setup.adapters import DataverseDirectory

ALICE = "alice@contoso.example"


@pytest.fixture
def server() -> Iterator[DataverseServer]:
    srv = DataverseServer(TokenRegistry(), RequestLog(), FaultProfile(), demo_scale=0)
    srv.start()
    yield srv
    srv.stop()


def test_my_appointments_counts_single_appointments_only(server: DataverseServer) -> None:
    user = user_by_upn(ALICE)
    assert user is not None
    me = user.systemuser_id("contoso")
    for i in range(3):
        server.insert(
            "contoso", "appointments",
            {"subject": f"Visit {i}", "scheduledstart": f"2027-03-0{i + 1}T09:00:00Z",
             "scheduledend": f"2027-03-0{i + 1}T10:00:00Z"},
            as_user=ALICE,
        )  # fmt: skip
    master = server.insert(
        "contoso", "recurringappointmentmasters",
        {"subject": "Daily", "starttime": "2027-03-01T08:00:00Z", "endtime": "2027-03-01T08:15:00Z",
         "duration": 15, "recurrencepatterntype": 0, "interval": 1,
         "patternstartdate": "2027-03-01T00:00:00Z", "patternendtype": 2, "occurrences": 5},
        as_user=ALICE,
    )  # fmt: skip
    token = server.tokens.static_token(ALICE)
    with DataverseClient(server.api_url("contoso"), lambda: token) as client:
        rows = client.count("appointments", filter=f"_ownerid_value eq {me}")
        instance = client.iter_pages(
            "appointments", filter=f"_seriesid_value eq {master}", select=["activityid"]
        )
        first = next(iter(instance))[0]["activityid"]
        client.update("appointments", first, {"subject": "Moved one"})  # now an exception
        assert rows == 8  # 3 single + 5 occurrences of the series
        directory = DataverseDirectory(client)
        assert choices.count_for(directory, "my-appointments", me) == 3
        assert choices.count_union(directory, ["my-appointments"], me) == {"appointments": 3}
