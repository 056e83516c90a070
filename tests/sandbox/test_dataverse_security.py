"""The sandbox Dataverse's security roles, per-table change tracking and the refusals the real
service answers when either is missing; strict by default, lenient on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from sandbox.dataverse import DataverseServer
from sandbox.dataverse.security import BUSINESS_UNIT_READER, ORGANIZATION_READER, Role
from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry, user_by_upn
from sandbox.launcher import start_sandbox
from sandbox.requestlog import RequestLog

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"
TRACKED = {"Prefer": "odata.track-changes,odata.maxpagesize=2"}


def user_id(upn: str, org: str = "contoso") -> str:
    user = user_by_upn(upn)
    assert user is not None
    return user.systemuser_id(org)


@pytest.fixture(scope="module")
def server() -> Iterator[DataverseServer]:
    srv = DataverseServer(TokenRegistry(), RequestLog(), FaultProfile(), demo_scale=0.1)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def get(server: DataverseServer) -> Iterator[Callable[..., httpx.Response]]:
    """GET as a user; the policy is put back after each test."""
    clients: dict[str, httpx.Client] = {}

    def call(upn: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        if upn not in clients:
            token = server.tokens.static_token(upn)
            clients[upn] = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        url = path if path.startswith("http") else server.api_url("contoso") + path
        return clients[upn].get(url, headers=headers or {})

    yield call
    for client in clients.values():
        client.close()
    server.strict = True
    server.security.assign("contoso", user_id(BOB), BUSINESS_UNIT_READER)
    server.security.assign("contoso", user_id(ALICE), ORGANIZATION_READER)
    server.security.untracked.clear()
    server.expired_token_status = 400


def test_change_tracking_needs_organization_level_read(
    server: DataverseServer, get: Callable[..., httpx.Response]
) -> None:
    """use-change-tracking-synchronize-data-external-systems.md: "The calling user must have
    organization level read access to the table. If the user has limited read access, the
    system throws a privilege check error" (text as reported in powerapps-docs issue #3883)."""
    assert get(ALICE, "contacts?$select=lastname", TRACKED).status_code == 200
    refused = get(BOB, "contacts?$select=lastname", TRACKED)  # business-unit read (demo role)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "0x80040220"
    assert error["message"].startswith("SecLib::CheckPrivilege failed. User: " + user_id(BOB))
    assert "PrivilegeName: prvReadContact" in error["message"]
    assert "Required Depth: Global" in error["message"]
    # activities share one privilege
    tasks = get(BOB, "tasks?$select=subject", TRACKED).json()["error"]["message"]
    assert "PrivilegeName: prvReadActivity" in tasks
    # a plain query at business-unit depth reads every row (one business unit per org)
    assert len(get(BOB, "contacts?$select=lastname").json()["value"]) == len(
        server.table("contoso", "contacts").rows
    )


def test_change_tracking_needs_tracking_enabled_on_the_table(
    server: DataverseServer, get: Callable[..., httpx.Response]
) -> None:
    """use-change-tracking-synchronize-data-external-systems.md: "make sure that the change
    tracking is enabled for that table"; Web service error codes: 0x80072491
    ChangeTrackingNotEnabledForEntity "Entity {0} isn't enabled for change tracking."."""
    full = get(ALICE, "tasks?$select=subject", {"Prefer": "odata.track-changes"}).json()
    server.security.set_change_tracking("contoso", "tasks", False)
    refused = get(ALICE, "tasks?$select=subject", TRACKED)
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "code": "0x80072491",
        "message": "Entity task isn't enabled for change tracking.",
    }
    # a delta link issued before is refused the same way
    assert get(ALICE, full["@odata.deltaLink"]).json()["error"]["code"] == "0x80072491"
    assert get(ALICE, "contacts?$select=lastname", TRACKED).status_code == 200  # per table
    assert get(ALICE, "tasks?$select=subject").status_code == 200  # plain queries still work


def test_user_level_read_sees_own_rows_and_no_read_is_refused(
    server: DataverseServer, get: Callable[..., httpx.Response]
) -> None:
    """PrivilegeDepth (Microsoft.Crm.Sdk.Messages): Basic "can only … perform actions on
    objects that are owned by, or shared with, the user"; a missing privilege is answered
    "Principal user (Id=…) is missing prvRead… privilege" (0x80040220, KB 2619752)."""
    mine = user_id(BOB)
    owned = sum(
        1
        for row in server.table("contoso", "contacts").rows.values()
        if row.values.get("_ownerid_value") == mine
    )
    assert 0 < owned < len(server.table("contoso", "contacts").rows)
    server.security.assign("contoso", mine, Role("User-level reader", {"*": "Basic"}))
    rows = get(BOB, "contacts?$select=_ownerid_value").json()["value"]
    assert len(rows) == owned and {r["_ownerid_value"] for r in rows} == {mine}
    assert get(BOB, "contacts/$count").text == str(owned)

    server.security.assign("contoso", mine, Role("No contacts", {"*": "Global", "Contact": "None"}))
    refused = get(BOB, "contacts?$select=lastname")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "0x80040220"
    assert "is missing prvReadContact privilege" in refused.json()["error"]["message"]
    assert get(BOB, "tasks?$select=subject").status_code == 200


def test_retrieve_user_privilege_by_privilege_name(
    server: DataverseServer, get: Callable[..., httpx.Response]
) -> None:
    """security-access-coding.md: `systemusers(<id>)/Microsoft.Dynamics.CRM.
    RetrieveUserPrivilegeByPrivilegeName(PrivilegeName='…')` → `RolePrivileges` with Depth,
    PrivilegeId, BusinessUnitId, PrivilegeName; empty when the user lacks the privilege."""

    def ask(upn: str, name: str) -> httpx.Response:
        return get(
            upn,
            f"systemusers({user_id(upn)})/Microsoft.Dynamics.CRM."
            f"RetrieveUserPrivilegeByPrivilegeName(PrivilegeName='{name}')",
        )

    answer = ask(ALICE, "prvReadContact").json()
    assert answer["@odata.context"].endswith(
        "$metadata#Microsoft.Dynamics.CRM.RetrieveUserPrivilegeByPrivilegeNameResponse"
    )
    (granted,) = answer["RolePrivileges"]
    assert granted["Depth"] == "Global" and granted["PrivilegeName"] == "prvReadContact"
    assert set(granted) == {"Depth", "PrivilegeId", "BusinessUnitId", "PrivilegeName"}
    assert ask(BOB, "prvReadActivity").json()["RolePrivileges"][0]["Depth"] == "Local"
    server.security.assign("contoso", user_id(BOB), Role("none", {"*": "None"}))
    assert ask(BOB, "prvReadContact").json()["RolePrivileges"] == []
    assert ask(BOB, "prvNoSuchThing").json()["RolePrivileges"] == []
    missing = get(ALICE, "systemusers(00000000-0000-0000-0000-000000000001)/"
                  "Microsoft.Dynamics.CRM.RetrieveUserPrivilegeByPrivilegeName("
                  "PrivilegeName='prvReadContact')")  # fmt: skip
    assert missing.status_code == 404


def test_lenient_mode_refuses_none_of_it(
    server: DataverseServer, get: Callable[..., httpx.Response]
) -> None:
    """Lenient (`run.py sandbox --lenient`): every user reads at Global depth, every table is
    tracked, and the roles say so."""
    server.security.set_change_tracking("contoso", "contacts", False)
    server.strict = False
    assert get(BOB, "contacts?$select=lastname", TRACKED).status_code == 200
    privileges = get(
        BOB,
        f"systemusers({user_id(BOB)})/Microsoft.Dynamics.CRM."
        "RetrieveUserPrivilegeByPrivilegeName(PrivilegeName='prvReadContact')",
    ).json()["RolePrivileges"]
    assert privileges[0]["Depth"] == "Global"


def test_the_organization_starts_without_a_custom_claims_table(
    get: Callable[..., httpx.Response],
) -> None:
    """A real organization has no `mbs_syncclaims` until someone customizes it: the first
    request is a 404 (the old POP3 claim's failure). Notes (`annotations`) exist everywhere
    (reference/entities/annotation.md)."""
    missing = get(ALICE, "mbs_syncclaims?$select=mbs_name")
    assert missing.status_code == 404
    assert (
        missing.json()["error"]["message"] == "Resource not found for the segment 'mbs_syncclaims'."
    )
    assert get(ALICE, "annotations?$select=subject").status_code == 200


def test_expired_delta_token_answers_the_documented_code_with_either_status(
    server: DataverseServer, get: Callable[..., httpx.Response]
) -> None:
    """Web service error codes: 0x80044352 ExpiredVersionStamp "Version stamp associated with
    the client has expired. Please perform a full sync." The docs give no HTTP status: 400 by
    default, 500 on demand so clients are tested with both."""
    link = get(ALICE, "contacts?$select=lastname", {"Prefer": "odata.track-changes"}).json()[
        "@odata.deltaLink"
    ]
    server.expire_delta_tokens()
    for status in (400, 500):
        server.expired_token_status = status
        answer = get(ALICE, link)
        assert answer.status_code == status
        assert answer.json()["error"] == {
            "code": "0x80044352",
            "message": "Version stamp associated with the client has expired. "
            "Please perform a full sync.",
        }


def test_the_launcher_is_strict_unless_told_lenient(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    with start_sandbox(tmp_path / "strict", demo_scale=0) as strict:
        assert strict.dataverse.strict and strict.describe()["lenient"] is False
    with start_sandbox(tmp_path / "lenient", demo_scale=0, lenient=True) as lenient:
        assert not lenient.dataverse.strict and lenient.describe()["lenient"] is True
