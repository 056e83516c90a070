"""The sandbox Dataverse Web API over real HTTP: queries, paging, change tracking, conditional
writes, $batch, discovery, authentication, throttling, faults and bad input."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from sandbox.dataverse import DataverseServer
from sandbox.faults import Fault, FaultProfile
from sandbox.identity import ORGANIZATIONS, TokenRegistry, user_by_upn
from sandbox.requestlog import RequestLog

ALICE, BOB, DAVE = "alice@contoso.example", "bob@contoso.example", "dave@fabrikam.example"


@pytest.fixture(scope="module")
def server() -> Iterator[DataverseServer]:
    srv = DataverseServer(TokenRegistry(), RequestLog(), FaultProfile(), demo_scale=0.1)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client_for(server: DataverseServer) -> Iterator[Callable[[str], httpx.Client]]:
    clients: dict[str, httpx.Client] = {}

    def make(upn: str) -> httpx.Client:
        if upn not in clients:
            token = server.tokens.static_token(upn)
            clients[upn] = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        return clients[upn]

    yield make
    for client in clients.values():
        client.close()


@pytest.fixture
def alice(client_for: Callable[[str], httpx.Client]) -> httpx.Client:
    return client_for(ALICE)


@pytest.fixture
def api(server: DataverseServer) -> str:
    return server.api_url("contoso")


def snapshot(server: DataverseServer, org: str = "contoso") -> dict[str, dict[str, int]]:
    """Every row id and version of an organization: equal snapshots mean nothing changed."""
    with server.store.lock:
        return {
            name: {row_id: row.version for row_id, row in table.rows.items()}
            for name, table in server.store.orgs[org].items()
        }


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def new_contact(client: httpx.Client, api: str, **values: Any) -> str:
    response = client.post(api + "contacts", json=values)
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


# --- demo data, identity ---------------------------------------------------------------------


def test_demo_data_has_users_mailboxes_and_scaled_rows(server: DataverseServer) -> None:
    for org in ORGANIZATIONS:
        users = server.table(org.unique_name, "systemusers").rows
        mailboxes = server.table(org.unique_name, "mailboxes").rows
        assert len(users) == len(mailboxes) >= 2
        for row in users.values():
            assert row.values["_defaultmailbox_value"] in mailboxes
    contoso_contacts = len(server.table("contoso", "contacts"))
    assert contoso_contacts == 30
    alice_mailbox = next(
        r.values
        for r in server.table("contoso", "mailboxes").rows.values()
        if r.values["emailaddress"] == ALICE
    )
    assert (
        alice_mailbox["incomingemaildeliverymethod"],
        alice_mailbox["outgoingemaildeliverymethod"],
        alice_mailbox["actdeliverymethod"],
    ) == (1, 1, 0)


def test_whoami(alice: httpx.Client, api: str) -> None:
    for path in ("WhoAmI", "WhoAmI()"):
        body = alice.get(api + path).json()
        assert body["UserId"] == user_by_upn(ALICE).systemuser_id("contoso")  # type: ignore[union-attr]
        assert body["OrganizationId"] == ORGANIZATIONS[0].id
        assert body["BusinessUnitId"]
        assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")


def test_discovery_lists_only_the_users_organizations(
    server: DataverseServer, client_for: Callable[[str], httpx.Client]
) -> None:
    alice_orgs = client_for(ALICE).get(server.discovery_url).json()["value"]
    assert {i["UniqueName"] for i in alice_orgs} == {"contoso", "fabrikam"}
    bob_orgs = client_for(BOB).get(server.discovery_url).json()["value"]
    assert [i["UniqueName"] for i in bob_orgs] == ["contoso"]
    instance = bob_orgs[0]
    assert instance["Url"] + "/" == server.org_url("contoso")
    assert instance["State"] == 0 and instance["Version"].startswith("9.2")
    assert instance["Region"] == "SBX" and instance["TrialExpirationDate"] is None
    one = client_for(BOB).get(server.discovery_url + "(UniqueName='contoso')")
    assert one.json()["value"][0]["Id"] == ORGANIZATIONS[0].id
    assert client_for(BOB).get(server.discovery_url + "(UniqueName='fabrikam')").status_code == 404


def test_missing_or_bad_token_gets_401(server: DataverseServer, api: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        for url in (api + "contacts", server.discovery_url):
            response = httpx.get(url, headers=headers)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
            assert "error" in response.json()


def test_organization_the_user_is_not_in_gets_403(
    server: DataverseServer, client_for: Callable[[str], httpx.Client]
) -> None:
    response = client_for(BOB).get(server.api_url("fabrikam") + "contacts")
    assert response.status_code == 403
    assert response.json()["error"]["message"]


# --- queries -----------------------------------------------------------------------------------


def test_paging_with_maxpagesize_returns_every_row_once(
    server: DataverseServer, alice: httpx.Client, api: str
) -> None:
    url: str | None = api + "contacts?$select=fullname"
    seen: list[str] = []
    pages = 0
    while url:
        response = alice.get(url, headers={"Prefer": "odata.maxpagesize=7"})
        assert response.status_code == 200
        assert "odata.maxpagesize=7" in response.headers["Preference-Applied"]
        body = response.json()
        assert len(body["value"]) <= 7
        seen += [row["contactid"] for row in body["value"]]
        url = body.get("@odata.nextLink")
        assert url is None or "$skiptoken=" in url
        pages += 1
    with server.store.lock:
        expected = set(server.table("contoso", "contacts").rows)
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected
    assert pages == -(-len(expected) // 7)


@pytest.fixture(scope="module")
def filter_rows(server: DataverseServer) -> dict[str, str]:
    """Accounts in fabrikam that only the filter tests touch."""
    rows = {
        "a": {"name": "FT Alpha", "numberofemployees": 10, "revenue": 1.5, "telephone1": None},
        "b": {"name": "FT Beta's", "numberofemployees": 20, "revenue": 2.5, "telephone1": "1"},
        "c": {"name": "FT Gamma", "numberofemployees": 30, "revenue": None, "telephone1": "2"},
    }
    ids = {
        key: server.insert("fabrikam", "accounts", values, as_user=DAVE)
        for key, values in rows.items()
    }
    server.insert(
        "fabrikam",
        "contacts",
        {"lastname": "FTContact", "parentcustomerid_account@odata.bind": f"/accounts({ids['b']})"},
        as_user=DAVE,
    )
    return ids


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("numberofemployees eq 20", "b"),
        ("numberofemployees ne 20", "ac"),
        ("numberofemployees gt 20", "c"),
        ("numberofemployees ge 20", "bc"),
        ("numberofemployees lt 20", "a"),
        ("numberofemployees le 20", "ab"),
        ("numberofemployees eq 10 or numberofemployees eq 30", "ac"),
        ("numberofemployees ge 10 and numberofemployees le 20", "ab"),
        ("not (numberofemployees eq 10)", "bc"),
        ("(numberofemployees eq 10 or numberofemployees eq 20) and revenue gt 2", "b"),
        ("name eq 'FT Beta''s'", "b"),
        ("name eq 'ft alpha'", "a"),
        ("contains(name, 'amm')", "c"),
        ("startswith(name, 'FT B')", "b"),
        ("endswith(name, 'pha')", "a"),
        ("not contains(name, 'a''s')", "ac"),
        ("telephone1 eq null", "a"),
        ("telephone1 ne null", "bc"),
        ("revenue eq null", "c"),
        ("revenue ge 1.5", "ab"),
        ("createdon gt 2000-01-01T00:00:00Z", "abc"),
        ("createdon lt 2000-01-01", ""),
    ],
)
def test_filter_operators(
    client_for: Callable[[str], httpx.Client],
    server: DataverseServer,
    filter_rows: dict[str, str],
    expression: str,
    expected: str,
) -> None:
    response = client_for(DAVE).get(
        server.api_url("fabrikam") + "accounts",
        params={"$select": "name", "$filter": f"startswith(name,'FT ') and ({expression})"},
    )
    assert response.status_code == 200, response.text
    got = {row["accountid"] for row in response.json()["value"]}
    assert got == {filter_rows[key] for key in expected}


def test_filter_guid_and_lookup(
    client_for: Callable[[str], httpx.Client], server: DataverseServer, filter_rows: dict[str, str]
) -> None:
    client, api = client_for(DAVE), server.api_url("fabrikam")
    by_id = client.get(api + "accounts", params={"$filter": f"accountid eq {filter_rows['c']}"})
    assert [r["accountid"] for r in by_id.json()["value"]] == [filter_rows["c"]]
    by_lookup = client.get(
        api + "contacts", params={"$filter": f"_parentcustomerid_value eq {filter_rows['b']}"}
    )
    assert [r["lastname"] for r in by_lookup.json()["value"]] == ["FTContact"]


def test_select_orderby_top_count(
    client_for: Callable[[str], httpx.Client], server: DataverseServer, filter_rows: dict[str, str]
) -> None:
    response = client_for(DAVE).get(
        server.api_url("fabrikam") + "accounts",
        params={
            "$select": "name,numberofemployees",
            "$filter": "startswith(name,'FT ')",
            "$orderby": "numberofemployees desc",
            "$top": "2",
            "$count": "true",
        },
    )
    body = response.json()
    assert body["@odata.count"] == 3
    assert [r["name"] for r in body["value"]] == ["FT Gamma", "FT Beta's"]
    assert set(body["value"][0]) == {"@odata.etag", "name", "numberofemployees", "accountid"}
    assert body["@odata.context"].endswith("$metadata#accounts(name,numberofemployees)")
    multi = client_for(DAVE).get(
        server.api_url("fabrikam") + "accounts",
        params={"$filter": "startswith(name,'FT ')", "$orderby": "revenue asc,name desc"},
    )
    assert [r["name"] for r in multi.json()["value"]] == ["FT Gamma", "FT Alpha", "FT Beta's"]


def test_full_row_has_system_columns(alice: httpx.Client, api: str) -> None:
    contact_id = new_contact(alice, api, firstname="Sys", lastname="Columns")
    row = alice.get(api + f"contacts({contact_id})").json()
    assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"'
    assert row["createdon"].endswith("Z") and row["modifiedon"] == row["createdon"]
    assert row["_ownerid_value"] == user_by_upn(ALICE).systemuser_id("contoso")  # type: ignore[union-attr]
    assert (row["statecode"], row["statuscode"]) == (0, 1)
    assert row["fullname"] == "Sys Columns"
    assert row["emailaddress1"] is None


def test_expand_lookups_and_activity_parties(alice: httpx.Client, api: str) -> None:
    account = alice.post(
        api + "accounts", json={"name": "Expand Co"}, headers={"Prefer": "return=representation"}
    )
    assert account.status_code == 201
    account_id = account.json()["accountid"]
    contact_id = new_contact(
        alice,
        api,
        lastname="Expanded",
        emailaddress1="expanded@example.com",
        **{"parentcustomerid_account@odata.bind": f"/accounts({account_id})"},
    )
    row = alice.get(
        api + f"contacts({contact_id})",
        params={
            "$select": "lastname",
            "$expand": "parentcustomerid_account($select=name),ownerid($select=fullname)",
        },
    ).json()
    assert row["parentcustomerid_account"]["name"] == "Expand Co"
    assert row["ownerid"]["fullname"] == "Alice Wong"
    alice_id = user_by_upn(ALICE).systemuser_id("contoso")  # type: ignore[union-attr]
    created = alice.post(
        api + "appointments",
        json={
            "subject": "With parties",
            "scheduledstart": "2026-11-26T09:00:00Z",
            "scheduledend": "2026-11-26T10:00:00+00:00",
            "regardingobjectid_contact_appointment@odata.bind": f"/contacts({contact_id})",
            "appointment_activity_parties": [
                {
                    "participationtypemask": 7,
                    "partyid_systemuser@odata.bind": f"/systemusers({alice_id})",
                },
                {
                    "participationtypemask": 5,
                    "partyid_contact@odata.bind": f"/contacts({contact_id})",
                },
                {"participationtypemask": 6, "addressused": "guest@example.org"},
            ],
        },
    )
    assert created.status_code == 204, created.text
    appointment_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    got = alice.get(
        api + f"appointments({appointment_id})",
        params={
            "$select": "subject,_regardingobjectid_value",
            "$expand": "appointment_activity_parties($select=participationtypemask,addressused,_partyid_value),regardingobjectid_contact_appointment($select=lastname)",
        },
        headers={"Prefer": 'odata.include-annotations="*"'},
    ).json()
    parties = {p["participationtypemask"]: p for p in got["appointment_activity_parties"]}
    assert set(parties) == {5, 6, 7}
    assert parties[5]["_partyid_value"] == contact_id
    assert parties[5]["addressused"] == "expanded@example.com"
    assert parties[5]["_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "contact"
    assert parties[7]["_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "systemuser"
    assert parties[7]["_partyid_value@OData.Community.Display.V1.FormattedValue"] == "Alice Wong"
    assert parties[6]["_partyid_value"] is None and parties[6]["addressused"] == "guest@example.org"
    assert got["regardingobjectid_contact_appointment"]["lastname"] == "Expanded"
    assert got["_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "contact"
    # PATCH with a party list replaces it; DELETE removes the parties too.
    patched = alice.patch(
        api + f"appointments({appointment_id})",
        json={
            "appointment_activity_parties": [
                {"participationtypemask": 5, "addressused": "x@example.org"}
            ]
        },
    )
    assert patched.status_code == 204
    parties_now = alice.get(
        api + "activityparties", params={"$filter": f"_activityid_value eq {appointment_id}"}
    ).json()["value"]
    assert [p["addressused"] for p in parties_now] == ["x@example.org"]
    assert alice.delete(api + f"appointments({appointment_id})").status_code == 204
    assert (
        alice.get(
            api + "activityparties", params={"$filter": f"_activityid_value eq {appointment_id}"}
        ).json()["value"]
        == []
    )


# --- change tracking -------------------------------------------------------------------------


def _follow(client: httpx.Client, url: str, page: int = 4) -> tuple[list[dict[str, Any]], str]:
    rows: list[dict[str, Any]] = []
    while True:
        response = client.get(
            url, headers={"Prefer": f"odata.track-changes,odata.maxpagesize={page}"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body["value"]
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return rows, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


def test_track_changes_delta_returns_exactly_the_changes(
    server: DataverseServer, client_for: Callable[[str], httpx.Client]
) -> None:
    client, api = client_for(ALICE), server.api_url("fabrikam")
    first = client.get(api + "leads?$select=lastname", headers={"Prefer": "odata.track-changes"})
    assert "odata.track-changes" in first.headers["Preference-Applied"]
    rows, delta = _follow(client, api + "leads?$select=lastname")
    assert len(rows) == len(server.table("fabrikam", "leads"))
    assert "$deltatoken=" in delta
    ids = [r["leadid"] for r in rows]
    created = client.post(api + "leads", json={"lastname": "Delta New"})
    new_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert (
        client.patch(api + f"leads({ids[0]})", json={"lastname": "Delta Changed"}).status_code
        == 204
    )
    assert client.delete(api + f"leads({ids[1]})").status_code == 204
    changes, delta2 = _follow(client, delta, page=1)
    changed = {r["leadid"]: r["lastname"] for r in changes if "leadid" in r}
    assert changed == {new_id: "Delta New", ids[0]: "Delta Changed"}
    deleted = [r for r in changes if r.get("reason") == "deleted"]
    assert deleted == [
        {
            "@odata.context": f"{api}$metadata#leads/$deletedEntity",
            "id": ids[1],
            "reason": "deleted",
        }
    ]
    assert changes[-1] == deleted[0]
    assert set(changes[0]) == {"@odata.etag", "lastname", "leadid"}
    empty = client.get(delta2, headers={"Prefer": "odata.track-changes"}).json()
    assert empty["value"] == [] and "$deltatoken=" in empty["@odata.deltaLink"]
    assert empty["@odata.context"].endswith("/$delta")


def test_track_changes_rejects_filter_orderby_expand_top(alice: httpx.Client, api: str) -> None:
    for option, value in (
        ("$filter", "statecode eq 0"),
        ("$orderby", "lastname"),
        ("$expand", "ownerid"),
        ("$top", "1"),
    ):
        response = alice.get(
            api + "contacts", params={option: value}, headers={"Prefer": "odata.track-changes"}
        )
        assert response.status_code == 400
        assert (
            "isn't supported when Change Tracking is enabled" in response.json()["error"]["message"]
        )


def test_expired_delta_token(server: DataverseServer, alice: httpx.Client, api: str) -> None:
    _, delta = _follow(alice, api + "tasks?$select=subject", page=5000)
    assert alice.get(delta).status_code == 200
    server.expire_delta_tokens()
    response = alice.get(delta, headers={"Prefer": "odata.track-changes"})
    assert response.status_code == 400
    assert error_code(response) == "0x80044352"
    assert "Please perform a full sync" in response.json()["error"]["message"]
    _, fresh = _follow(alice, api + "tasks?$select=subject", page=5000)
    assert alice.get(fresh).status_code == 200
    garbled = fresh.split("$deltatoken=")[0] + "$deltatoken=garbage"
    assert error_code(alice.get(garbled)) == "0x80044352"
    server.delta_token_lifetime = 0.01
    try:
        time.sleep(0.05)
        assert error_code(alice.get(fresh)) == "0x80044352"  # older than the lifetime
    finally:
        server.delta_token_lifetime = 7 * 24 * 3600.0


# --- writes ----------------------------------------------------------------------------------


def test_post_representation_and_caller_chosen_key(alice: httpx.Client, api: str) -> None:
    chosen = str(uuid.uuid4())
    response = alice.post(
        api + "contacts?$select=lastname",
        json={"contactid": chosen, "lastname": "Chosen"},
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 201
    assert response.json()["contactid"] == chosen
    assert set(response.json()) == {"@odata.context", "@odata.etag", "lastname", "contactid"}
    duplicate = alice.post(api + "contacts", json={"contactid": chosen, "lastname": "Again"})
    assert duplicate.status_code == 412
    assert error_code(duplicate) == "0x80040237"


def test_patch_upsert_and_conditions(
    server: DataverseServer, alice: httpx.Client, api: str
) -> None:
    row_id = str(uuid.uuid4())
    missing = alice.patch(
        api + f"contacts({row_id})", json={"lastname": "X"}, headers={"If-Match": "*"}
    )
    assert missing.status_code == 404 and error_code(missing) == "0x80040217"
    assert f"contact With Id = {row_id} Does Not Exist" == missing.json()["error"]["message"]
    created = alice.patch(api + f"contacts({row_id})", json={"lastname": "Upserted"})
    assert created.status_code == 204
    assert created.headers["OData-EntityId"].endswith(f"contacts({row_id})")
    row = alice.get(api + f"contacts({row_id})").json()
    etag = row["@odata.etag"]
    assert (
        alice.get(api + f"contacts({row_id})", headers={"If-None-Match": etag}).status_code == 304
    )
    blocked = alice.patch(
        api + f"contacts({row_id})", json={"lastname": "No"}, headers={"If-None-Match": "*"}
    )
    assert blocked.status_code == 412
    assert blocked.json()["error"]["message"] == "A record with matching key values already exists."
    updated = alice.patch(
        api + f"contacts({row_id})", json={"lastname": "Updated"}, headers={"If-Match": etag}
    )
    assert updated.status_code == 204
    new_etag = alice.get(api + f"contacts({row_id})").json()["@odata.etag"]
    assert new_etag != etag
    assert (
        alice.get(api + f"contacts({row_id})", headers={"If-None-Match": etag}).status_code == 200
    )
    stale = alice.patch(
        api + f"contacts({row_id})", json={"lastname": "Stale"}, headers={"If-Match": etag}
    )
    assert stale.status_code == 412 and error_code(stale) == "0x80060882"
    assert "doesn't match the RowVersion property" in stale.json()["error"]["message"]
    stale_delete = alice.delete(api + f"contacts({row_id})", headers={"If-Match": etag})
    assert stale_delete.status_code == 412
    assert (
        alice.delete(api + f"contacts({row_id})", headers={"If-Match": new_etag}).status_code == 204
    )
    assert alice.delete(api + f"contacts({row_id})").status_code == 404
    assert alice.get(api + f"contacts({row_id})").status_code == 404


def test_owner_bind_and_lookup_to_missing_row(alice: httpx.Client, api: str) -> None:
    bob_id = user_by_upn(BOB).systemuser_id("contoso")  # type: ignore[union-attr]
    contact_id = new_contact(
        alice, api, lastname="Owned", **{"ownerid@odata.bind": f"/systemusers({bob_id})"}
    )
    assert alice.get(api + f"contacts({contact_id})").json()["_ownerid_value"] == bob_id
    missing = alice.post(
        api + "contacts",
        json={
            "lastname": "Orphan",
            "parentcustomerid_account@odata.bind": f"/accounts({uuid.uuid4()})",
        },
    )
    assert missing.status_code == 404


# --- $batch ----------------------------------------------------------------------------------


def _part(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    content_id: str | None = None,
    headers: str = "",
) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    if headers:
        lines.append(headers)
    if body is not None:
        import json

        lines += ["Content-Type: application/json; type=entry", "", json.dumps(body)]
    else:
        lines.append("")
    return "\r\n".join(lines) + "\r\n"


def _batch(parts: list[str | list[str]]) -> tuple[str, str]:
    out = []
    for part in parts:
        if isinstance(part, list):
            inner = "--changeset_X\r\n" + "--changeset_X\r\n".join(part) + "--changeset_X--\r\n"
            out.append(f"Content-Type: multipart/mixed; boundary=changeset_X\r\n\r\n{inner}")
        else:
            out.append(part)
    body = "--batch_Y\r\n" + "--batch_Y\r\n".join(out) + "--batch_Y--\r\n"
    return body, 'multipart/mixed; boundary="batch_Y"'


def test_batch_change_set_is_atomic(server: DataverseServer, alice: httpx.Client, api: str) -> None:
    before = snapshot(server)
    path = "/contoso/api/data/v9.2/"
    body, content_type = _batch(
        [
            [
                _part("POST", path + "contacts", {"lastname": "Batch A"}, "1"),
                _part("POST", api + "contacts", {"lastname": "Batch B"}, "2"),
                _part(
                    "PATCH",
                    path + f"contacts({uuid.uuid4()})",
                    {"lastname": "C"},
                    "3",
                    "If-Match: *",
                ),
            ]
        ]
    )
    response = alice.post(api + "$batch", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert "HTTP/1.1 404" in response.text and "0x80040217" in response.text
    assert snapshot(server) == before


def test_batch_references_and_continue_on_error(
    server: DataverseServer, alice: httpx.Client, api: str
) -> None:
    path = "/contoso/api/data/v9.2/"
    body, content_type = _batch(
        [
            [
                _part("POST", path + "accounts", {"name": "Batch Account"}, "1"),
                _part(
                    "POST",
                    path + "contacts",
                    {"lastname": "Batch Person", "parentcustomerid_account@odata.bind": "$1"},
                    "2",
                ),
                _part("PATCH", "$2", {"firstname": "Patched"}, "3"),
            ],
            _part("GET", path + "contacts?$select=fullname&$filter=lastname eq 'Batch Person'"),
            _part("POST", path + "nosuchset", {"x": 1}),
            _part("POST", path + "contacts", {"lastname": "After failure"}),
        ]
    )
    stop = alice.post(api + "$batch", content=body, headers={"Content-Type": content_type})
    assert stop.status_code == 400
    boundary = stop.headers["Content-Type"].split("boundary=")[1]
    assert "changesetresponse_" in stop.text and "Content-ID: 2" in stop.text
    assert '"fullname": "Patched Batch Person"' in stop.text
    assert stop.text.count(f"--{boundary}\r\n") == 3 and stop.text.endswith(f"--{boundary}--\r\n")
    with server.store.lock:
        rows = [r.values for r in server.table("contoso", "contacts").rows.values()]
    person = next(r for r in rows if r.get("lastname") == "Batch Person")
    assert person["_parentcustomerid_value"] in server.table("contoso", "accounts").rows
    assert not any(r.get("lastname") == "After failure" for r in rows)
    go_on = alice.post(
        api + "$batch",
        content=body.replace("Batch Person", "Batch Person 2"),
        headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
    )
    assert go_on.status_code == 200
    with server.store.lock:
        rows = [r.values for r in server.table("contoso", "contacts").rows.values()]
    assert any(r.get("lastname") == "After failure" for r in rows)
    batches = [e for e in server.log if e.target == "$batch" and e.user == ALICE]
    assert [e.detail for e in batches[-2:]] == ["$batch:5", "$batch:6"]


def test_batch_over_1000_operations_is_rejected(
    server: DataverseServer, alice: httpx.Client, api: str
) -> None:
    before = snapshot(server)
    body, content_type = _batch([_part("POST", "contacts", {"lastname": "Too many"})] * 1001)
    response = alice.post(api + "$batch", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400 and "1000" in response.json()["error"]["message"]
    assert snapshot(server) == before


# --- throttling, faults, bad input -----------------------------------------------------------


def test_service_protection_budget(
    server: DataverseServer, client_for: Callable[[str], httpx.Client]
) -> None:
    client, api = client_for(DAVE), server.api_url("fabrikam")
    server.request_budget = 3
    try:
        for left in (2, 1, 0):
            ok = client.get(api + "WhoAmI")
            assert ok.status_code == 200
            assert ok.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == str(left)
        response = client.get(api + "WhoAmI")
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 300
        assert error_code(response) == "0x80072322"
        assert response.json()["error"]["message"] == (
            "Number of requests exceeded the limit of 3 over time window of 300 seconds."
        )
        assert client_for(ALICE).get(api + "WhoAmI").status_code == 200  # per user
    finally:
        server.request_budget = None
    assert server.log.count(user=DAVE, status=429) >= 1


def test_faults_429_503_slow_and_drop(
    server: DataverseServer, alice: httpx.Client, api: str
) -> None:
    try:
        server.faults.set(Fault("429", every=1, delay=2, times=1, match="/contacts"))
        throttled = alice.get(api + "contacts?$top=1")
        assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
        assert error_code(throttled) == "0x80072322"
        server.faults.set(Fault("503", every=1, times=1))
        assert alice.get(api + "WhoAmI").status_code == 503
        server.faults.set(Fault("slow", every=1, delay=0.05, times=1))
        assert alice.get(api + "WhoAmI").status_code == 200
        server.faults.set(Fault("drop", every=1, times=1))
        with httpx.Client(headers=dict(alice.headers)) as fresh:
            with pytest.raises(httpx.TransportError):
                fresh.get(api + "WhoAmI")
            assert fresh.get(api + "WhoAmI").status_code == 200
    finally:
        server.faults.clear()
    assert server.log.count(status=0) >= 1


def test_bad_input_leaves_the_store_unchanged(
    server: DataverseServer, alice: httpx.Client, api: str
) -> None:
    before = snapshot(server)
    bad_filter = alice.get(api + "contacts", params={"$filter": "lastname eq"})
    assert bad_filter.status_code == 400 and error_code(bad_filter) == "0x80060888"
    unknown_column = alice.get(api + "contacts", params={"$select": "nosuch"})
    assert unknown_column.status_code == 400
    assert unknown_column.json()["error"]["message"] == (
        "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'."
    )
    assert alice.get(api + "contacts", params={"$filter": "nosuch eq 1"}).status_code == 400
    unknown_set = alice.get(api + "nosuchthings")
    assert unknown_set.status_code == 404 and "error" in unknown_set.json()
    malformed = alice.post(
        api + "contacts", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and "error" in malformed.json()
    unknown_property = alice.post(api + "contacts", json={"lastname": "X", "nosuch": 1})
    assert unknown_property.status_code == 400
    assert "The property 'nosuch' does not exist" in unknown_property.json()["error"]["message"]
    wrong_type = alice.post(api + "contacts", json={"lastname": 5})
    assert wrong_type.status_code == 400
    bad_party = alice.post(
        api + "appointments",
        json={
            "subject": "Half",
            "appointment_activity_parties": [
                {"partyid_contact@odata.bind": f"/contacts({uuid.uuid4()})"}
            ],
        },
    )
    assert bad_party.status_code == 404
    assert alice.get(api + "contacts(not-a-guid)").status_code == 400
    assert snapshot(server) == before


def test_twenty_thousand_rows_page_completely() -> None:
    srv = DataverseServer(TokenRegistry(), RequestLog(), FaultProfile(), demo_scale=0)
    for i in range(20_000):
        srv.insert("contoso", "contacts", {"lastname": f"Bulk {i}"})
    srv.start()
    try:
        client = httpx.Client(
            headers={"Authorization": f"Bearer {srv.tokens.static_token(ALICE)}"}, timeout=60
        )
        url: str | None = srv.api_url("contoso") + "contacts?$select=lastname"
        total, pages = 0, 0
        while url:
            # Only the first request asks for change tracking: the nextLinks carry it on.
            headers = {"Prefer": "odata.track-changes"} if pages == 0 else {}
            body = client.get(url, headers=headers).json()
            total += len(body["value"])
            pages += 1
            url = body.get("@odata.nextLink")
        assert (total, pages) == (20_000, 4)
        assert "@odata.deltaLink" in body
        client.close()
    finally:
        srv.stop()


def test_email_attachment_size_and_limit(
    server: DataverseServer, alice: httpx.Client, api: str
) -> None:
    import base64

    email = alice.post(
        api + "emails", json={"subject": "With file"}, headers={"Prefer": "return=representation"}
    )
    email_id = email.json()["activityid"]
    attachment = {
        "objectid_activitypointer@odata.bind": f"/activitypointers({email_id})",
        "objecttypecode": "email",
        "filename": "a.txt",
        "mimetype": "text/plain",
        "body": base64.b64encode(b"hello").decode(),
    }
    assert alice.post(api + "activitymimeattachments", json=attachment).status_code == 204
    got = alice.get(
        api + f"emails({email_id})",
        params={
            "$expand": "email_activity_mime_attachment($select=filename,filesize,_objectid_value)"
        },
    ).json()
    assert [(a["filename"], a["filesize"]) for a in got["email_activity_mime_attachment"]] == [
        ("a.txt", 5)
    ]
    before = snapshot(server)
    attachment["body"] = base64.b64encode(b"x" * (5 * 1024 * 1024 + 1)).decode()
    too_large = alice.post(api + "activitymimeattachments", json=attachment)
    # over maxuploadfilesize: unManagedidsattachmentinvalidfilesize (attachment-annotation-files.md)
    assert too_large.status_code == 400
    assert too_large.json()["error"] == {
        "code": "0x80044a02",
        "message": "Attachment file size is too big.",
    }
    assert snapshot(server) == before


def test_concurrent_writers_get_unique_versions(server: DataverseServer, api: str) -> None:
    import threading

    token = server.tokens.static_token(BOB)
    created: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for i in range(20):
                row_id = new_contact(client, api, lastname=f"Concurrent {n}-{i}")
                with lock:
                    created.append(row_id)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with server.store.lock:
        rows = server.table("contoso", "contacts").rows
        versions = [rows[row_id].version for row_id in created]
    assert len(set(created)) == 80
    assert len(set(versions)) == 80


def test_collection_navigation_get(server: DataverseServer, alice: httpx.Client, api: str) -> None:
    with server.store.lock:
        email_id = next(iter(server.table("contoso", "emails").rows))
    response = alice.get(
        api + f"emails({email_id})/email_activity_parties?$select=participationtypemask"
    )
    assert response.status_code == 200
    assert sorted(p["participationtypemask"] for p in response.json()["value"]) == [1, 2]
    assert alice.get(api + f"emails({email_id})/nosuch").status_code == 400
