"""Demo data: deterministic, scaled, and shaped like the real tables."""

from __future__ import annotations

from sandbox.dataverse import DataverseServer
from sandbox.faults import FaultProfile
from sandbox.identity import USERS, TokenRegistry
from sandbox.requestlog import RequestLog


def _server(scale: float) -> DataverseServer:
    return DataverseServer(TokenRegistry(), RequestLog(), FaultProfile(), demo_scale=scale)


def _content(server: DataverseServer) -> dict[str, dict[str, dict[str, object]]]:
    moments = ("createdon", "modifiedon")
    return {
        f"{org}/{name}": {
            row_id: {k: v for k, v in row.values.items() if k not in moments}
            for row_id, row in table.rows.items()
        }
        for org, tables in server.store.orgs.items()
        for name, table in tables.items()
    }


def test_same_data_on_every_start() -> None:
    assert _content(_server(0.2)) == _content(_server(0.2))


def test_scale_zero_has_only_users_and_mailboxes() -> None:
    """Each user has a systemusers row, a mailbox and a usersettings row (the time zone); the
    organization has its one `organizations` row (organization.md)."""
    server = _server(0)
    for org, tables in server.store.orgs.items():
        members = [u for u in USERS if org in u.organizations]
        assert len(tables["systemusers"]) == len(tables["mailboxes"]) == len(members)
        assert len(tables["usersettingscollection"]) == len(members)
        assert len(tables["organizations"]) == 1
        assert sum(len(t) for t in tables.values()) == 3 * len(members) + 1


def test_full_scale_counts_and_shapes() -> None:
    server = _server(1.0)
    tables = server.store.orgs["contoso"]
    counts = {
        name: sum(1 for row in tables[name].rows.values() if not row.values.get("_seriesid_value"))
        for name in (
            "accounts",
            "contacts",
            "leads",
            "appointments",
            "recurringappointmentmasters",
            "tasks",
            "emails",
        )
    }
    assert counts == {
        "accounts": 100,
        "contacts": 300,
        "leads": 30,
        "appointments": 60,
        "recurringappointmentmasters": 6,
        "tasks": 80,
        "emails": 50,
    }
    owners = {row.values["_ownerid_value"] for row in tables["contacts"].rows.values()}
    assert owners == {u.systemuser_id("contoso") for u in USERS if "contoso" in u.organizations}
    patterns = {
        row.values["recurrencepatterntype"]
        for row in tables["recurringappointmentmasters"].rows.values()
    }
    assert patterns == {0, 1, 2, 3}
    for row in tables["recurringappointmentmasters"].rows.values():
        assert row.values["patternstartdate"] and row.values["duration"] in (30, 60)
        assert row.values["patternendtype"] in (1, 2, 3)
    masks = {row.values["participationtypemask"] for row in tables["activityparties"].rows.values()}
    assert {1, 2, 5, 7} <= masks
