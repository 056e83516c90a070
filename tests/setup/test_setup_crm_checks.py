"""The setup's CRM rules against the strict sandbox Dataverse: the POP3 synchronizing-computer
claim kept in a note (the organization has no custom claims table), and the check that says,
per synced table, whether changes are read by change tracking and what is missing if not."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.dataverse import DataverseServer
from sandbox.dataverse.security import BUSINESS_UNIT_READER, Role
from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry, user_by_upn
from sandbox.requestlog import RequestLog
from sync.crm.client import DataverseClient
from sync.runs import open_alerts
from sync.setup.adapters import DataverseDirectory
from sync.setup.instance import CLAIM_NOTE_SUBJECT, NoteClaims
from sync.setup.organizations import READER_ALERT, check_change_readers
from sync.setup.ports import ClaimInfo, ClaimTaken
from sync.setup.profile import Profile
from sync.sides import NotFound
from sync.store.db import open_database

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"


def user_id(upn: str) -> str:
    user = user_by_upn(upn)
    assert user is not None
    return user.systemuser_id("contoso")


@pytest.fixture(scope="module")
def server() -> Iterator[DataverseServer]:
    srv = DataverseServer(TokenRegistry(), RequestLog(), FaultProfile(), demo_scale=0.05)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client_for(server: DataverseServer) -> Iterator[Callable[[str], DataverseClient]]:
    clients: list[DataverseClient] = []

    def make(upn: str) -> DataverseClient:
        token = server.tokens.static_token(upn)
        clients.append(DataverseClient(server.api_url("contoso"), lambda: token))
        return clients[-1]

    yield make
    for client in clients:
        client.close()
    server.security.assign("contoso", user_id(BOB), BUSINESS_UNIT_READER)
    server.security.untracked.clear()


@pytest.fixture
def profile(data_dir: Path) -> Iterator[Profile]:
    database = open_database(data_dir)
    yield Profile(database, data_dir)
    database.dispose()


# --- the POP3 claim ---------------------------------------------------------------------


def test_the_pop3_claim_needs_no_custom_table(
    server: DataverseServer, client_for: Callable[[str], DataverseClient]
) -> None:
    """A real organization has no `mbs_syncclaims` (the sandbox starts without it: 404), so the
    claim is a note (reference/entities/annotation.md: a caller-chosen `annotationid`, create
    and update), one per user; the first of two creates wins (412 0x80040237), a take-over
    needs the row's current ETag."""
    client = client_for(ALICE)
    with pytest.raises(NotFound):
        client.get("mbs_syncclaims", "8b7c8b26-58a3-4c3f-8d3c-2f1a7c0b1e5a")
    desk, laptop = NoteClaims(client, user_id(ALICE)), NoteClaims(client, user_id(ALICE))
    assert desk.read() is None and laptop.read() is None
    desk.take(ClaimInfo("desk-id", "desk-pc", org_id="org-1"), None)
    with pytest.raises(ClaimTaken) as lost:
        laptop.take(ClaimInfo("laptop-id", "laptop"), None)
    assert lost.value.current is not None and lost.value.current.instance_name == "desk-pc"

    with server.store.lock:
        row = server.table("contoso", "annotations").rows[desk.row_id]
    assert row.values["subject"] == CLAIM_NOTE_SUBJECT
    assert row.values["_ownerid_value"] == user_id(ALICE)  # the user's own note
    assert json.loads(row.values["notetext"])["instance_name"] == "desk-pc"

    current = laptop.read()
    assert current is not None and current.org_id == "org-1" and current.claimed_at
    laptop.take(ClaimInfo("laptop-id", "laptop"), current)
    with pytest.raises(ClaimTaken):  # desk-pc's view is stale now
        desk.take(ClaimInfo("desk-id", "desk-pc"), current)
    # another user's claim is another note
    assert NoteClaims(client_for(BOB), user_id(BOB)).read() is None


# --- which reader each table gets ------------------------------------------------------


def test_organization_level_read_needs_no_notice(
    profile: Profile, client_for: Callable[[str], DataverseClient]
) -> None:
    directory = DataverseDirectory(client_for(ALICE))
    assert check_change_readers(profile, lambda: directory) == []
    assert not [a for a in open_alerts(profile.database) if a.code == READER_ALERT]


def test_the_setup_names_each_table_and_privilege_change_tracking_lacks(
    server: DataverseServer, profile: Profile, client_for: Callable[[str], DataverseClient]
) -> None:
    """use-change-tracking-synchronize-data-external-systems.md: change tracking needs
    organization-level read and tracking enabled on the table. Bob's demo role reads at
    business-unit depth; one table has tracking off: each notice says which, and what to ask."""
    notices = [
        str(n) for n in check_change_readers(profile, lambda: DataverseDirectory(client_for(BOB)))
    ]
    assert len(notices) == 4
    assert notices[0].startswith(
        "contact: your security role reads the records of your business unit (prvReadContact)"
    )
    assert all("prvReadActivity" in n for n in notices[1:])
    assert all("every 10 runs" in n and "organization-level Read" in n for n in notices)
    (alert,) = [a for a in open_alerts(profile.database) if a.code == READER_ALERT]
    assert "prvReadContact" in alert.message and alert.severity == "warning"

    server.security.assign("contoso", user_id(BOB), Role("org read", {"*": "Global"}))
    server.security.set_change_tracking("contoso", "tasks", False)
    notices = [
        str(n) for n in check_change_readers(profile, lambda: DataverseDirectory(client_for(BOB)))
    ]
    assert notices == [
        "task: change tracking is not enabled on that table. Mailbox Sync reads its records by "
        "modification time instead and looks for deleted ones every 10 runs. For change "
        "tracking, ask your administrator to turn on Track changes in the table's advanced "
        "options."
    ]
    server.security.untracked.clear()
    assert check_change_readers(profile, lambda: DataverseDirectory(client_for(BOB))) == []
    assert not [a for a in open_alerts(profile.database) if a.code == READER_ALERT]


def test_the_check_never_stops_the_setup(profile: Profile) -> None:
    """A directory without a Web API client (the memory world) or a service that does not
    answer: no notice, no exception."""
    assert check_change_readers(profile, lambda: object()) == []
    offline = DataverseClient("http://127.0.0.1:9/contoso/api/data/v9.2/", lambda: "t")
    offline.retry.max_retries = 0
    try:
        assert check_change_readers(profile, lambda: DataverseDirectory(offline)) == []
    finally:
        offline.close()
