"""The setup check asks for every synced table's change tracking setting in one request
(EntityMetadata.ChangeTrackingEnabled, served by the strict sandbox from its per-table setting),
asks the service itself only when the roles and the definitions do not tell, and still probes
when the definitions cannot be read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.dataverse.security import BUSINESS_UNIT_READER
from sandbox.faults import Fault
from sandbox.identity import user_by_upn
from sync.crm.capabilities import SYNCED_TABLES, TableAccess, table_access, tracking_settings
from sync.crm.client import DataverseClient
from tests.crm.conftest import ALICE, Sandbox

BOB = "bob@contoso.example"
TABLES = list(SYNCED_TABLES)


def _user(upn: str) -> str:
    user = user_by_upn(upn)
    assert user is not None
    return user.systemuser_id("contoso")


@pytest.fixture
def policy(sandbox: Sandbox) -> Iterator[Any]:
    yield sandbox.server.security
    sandbox.server.security.untracked.clear()
    sandbox.server.security.assign("contoso", _user(BOB), BUSINESS_UNIT_READER)
    sandbox.faults.clear()


def _check(
    sandbox: Sandbox, client: DataverseClient, upn: str
) -> tuple[list[TableAccess], list[Any]]:
    """Every synced table's access, as the setup check and `run.py doctor` ask, and the
    requests it made (the client's connection is settled first: the server logs a request
    after answering it)."""
    client.who_am_i()
    start = len(sandbox.log)
    depths: dict[str, str | None] = {}
    tracking: dict[str, bool] = {}
    found = [table_access(client, _user(upn), name, depths, tracking) for name in TABLES]
    client.who_am_i()
    return found, [e for e in list(sandbox.log)[start:] if e.target != "WhoAmI"]


def test_one_request_tells_every_tables_change_tracking(
    sandbox: Sandbox, client: DataverseClient, policy: Any
) -> None:
    """query-metadata-web-api.md: `EntityDefinitions` with `$select` and a `$filter` on a
    primitive property, no paging; EntityMetadata.ChangeTrackingEnabled "True if change
    tracking is enabled". With organization-level read (the privilege) and the setting known,
    the service is not probed: 2 privilege requests (contacts, activities) + 1 definitions."""
    policy.set_change_tracking("contoso", "tasks", False)
    accesses, requests = _check(sandbox, client, ALICE)
    assert [(r.method, r.target) for r in requests] == [
        ("GET", "systemusers"),
        ("GET", "EntityDefinitions"),
        ("GET", "systemusers"),
    ]
    by_set = {a.entity_set: a for a in accesses}
    assert {name: a.tracked for name, a in by_set.items()} == {
        "contacts": True, "appointments": True, "recurringappointmentmasters": True,
        "tasks": False}  # fmt: skip
    assert [n for n, a in by_set.items() if not a.change_tracking] == ["tasks"]
    assert by_set["tasks"].tracking_disabled and not by_set["tasks"].depth_short
    assert by_set["tasks"].refusal is not None and by_set["tasks"].refusal.reason == "disabled"


def test_a_business_unit_reader_is_told_without_a_probe(sandbox: Sandbox, policy: Any) -> None:
    """Change tracking needs organization-level read (use-change-tracking-synchronize-data-
    external-systems.md): Bob's role reads at business-unit depth, which the privilege answer
    says, so the refusal is known without asking for tracked rows."""
    with sandbox.client(upn=BOB) as bob:
        accesses, requests = _check(sandbox, bob, BOB)
    assert {r.target for r in requests} == {"systemusers", "EntityDefinitions"}
    assert all(a.depth == "Local" and a.depth_short for a in accesses)
    assert all(a.refusal is not None and a.refusal.reason == "privilege" for a in accesses)


def test_without_definitions_each_table_is_probed(
    sandbox: Sandbox, client: DataverseClient, policy: Any
) -> None:
    """The probing fallback: when the definitions cannot be read (here the service fails them),
    one tracked request for one row per table tells what the sync will meet."""
    policy.set_change_tracking("contoso", "contacts", False)
    sandbox.faults.set(Fault.parse("503:match=EntityDefinitions"))
    assert tracking_settings(client, ["contact"]) == {}
    accesses, requests = _check(sandbox, client, ALICE)
    targets = [r.target for r in requests]
    assert [t for t in targets if t in SYNCED_TABLES] == TABLES  # one probe per table
    assert targets.count("EntityDefinitions") == 3  # asked once (the client retries twice)
    by_set = {a.entity_set: a for a in accesses}
    assert by_set["contacts"].tracked is None and by_set["contacts"].tracking_disabled
    assert by_set["contacts"].refusal is not None
    assert all(by_set[n].change_tracking for n in TABLES if n != "contacts")
