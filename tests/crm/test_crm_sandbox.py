"""The Dataverse client and DataverseSide against the sandbox Web API, over real HTTP."""

from __future__ import annotations

import time
import tracemalloc
import uuid

import pytest

from sandbox.faults import Fault
from sandbox.identity import USERS
from sync.crm.batch import BatchOp
from sync.crm.client import DataverseClient
from sync.crm.discovery import discover_instances
from sync.crm.side import DataverseSide
from sync.sides import (
    AuthError,
    Conflict,
    CreateOp,
    Deleted,
    DeleteOp,
    Duplicate,
    NotFound,
    Side,
    TokenExpired,
    Unavailable,
    UpdateOp,
    Upsert,
    Written,
)
from tests.crm.conftest import ALICE, Sandbox


def dataverse_statuses(sandbox: Sandbox, count: int) -> list[int]:
    """The statuses the server logged; it logs after answering, so wait for `count` entries."""
    deadline = time.monotonic() + 2
    while True:
        statuses = [e.status for e in sandbox.log.snapshot() if e.service == "dataverse"]
        if len(statuses) >= count or time.monotonic() > deadline:
            return statuses
        time.sleep(0.01)


def new_id() -> str:
    return str(uuid.uuid4())


def make_contact(client: DataverseClient, **fields: object) -> tuple[str, str | None]:
    body = {"firstname": "Test", "lastname": fields.pop("lastname", "Person"), **fields}
    contact_id, etag, _ = client.create("contacts", body, id=new_id(), return_representation=True)
    return contact_id, etag


def test_reads_three_pages_following_next_links(client: DataverseClient) -> None:
    for n in range(7):
        make_contact(client, lastname=f"Pager{n}")
    total = client.count("contacts")
    size = max(2, total // 3 - 1)
    before = client.request_count
    pages = list(client.iter_pages("contacts", select=["contactid", "lastname"], page_size=size))
    assert len(pages) >= 3 and client.request_count - before == len(pages)
    assert all(len(p) <= size for p in pages)
    ids = [row["contactid"] for page in pages for row in page]
    assert len(ids) == len(set(ids)) == total


def test_filter_select_and_get(client: DataverseClient) -> None:
    contact_id, _ = make_contact(client, lastname="O'Filter")
    rows = [
        r
        for p in client.iter_pages(
            "contacts", select=["lastname"], filter="lastname eq 'O''Filter'"
        )
        for r in p
    ]
    assert [r["contactid"] for r in rows] == [contact_id]
    row = client.get("contacts", contact_id, select=["firstname"])
    assert row["firstname"] == "Test" and row["@odata.etag"].startswith('W/"')
    assert client.count("contacts", filter="lastname eq 'O''Filter'") == 1


def test_delta_returns_exactly_the_changes(client: DataverseClient) -> None:
    keep, _ = client.create("tasks", {"subject": "to update"}, id=new_id())[:2]
    gone = client.create("tasks", {"subject": "to delete"}, id=new_id())[0]
    full = list(client.track_changes("tasks", select=["subject"]))
    link = full[-1].delta_link
    assert link and all(p.delta_link is None for p in full[:-1])
    assert {keep, gone} <= {r["activityid"] for p in full for r in p.rows}

    quiet = list(client.track_changes("tasks", delta_link=link))
    assert [(p.rows, p.deleted) for p in quiet] == [([], [])] and quiet[-1].delta_link

    created = client.create("tasks", {"subject": "new"}, id=new_id())[0]
    client.update("tasks", keep, {"subject": "updated"})
    client.delete("tasks", gone)
    changes = list(client.track_changes("tasks", delta_link=quiet[-1].delta_link))
    rows = {r["activityid"]: r for p in changes for r in p.rows}
    assert set(rows) == {created, keep}
    assert rows[keep]["subject"] == "updated"
    assert [d for p in changes for d in p.deleted] == [gone]
    assert changes[-1].delta_link


def test_expired_delta_token_raises_token_expired(
    sandbox: Sandbox, client: DataverseClient
) -> None:
    link = list(client.track_changes("contacts", select=["lastname"]))[-1].delta_link
    assert link
    sandbox.server.expire_delta_tokens()
    with pytest.raises(TokenExpired):
        list(client.track_changes("contacts", delta_link=link))


def test_stale_etag_is_conflict_and_if_match_star_on_missing_is_not_found(
    client: DataverseClient,
) -> None:
    contact_id, etag1 = make_contact(client)
    assert etag1
    etag2 = client.update(
        "contacts", contact_id, {"jobtitle": "Chef"}, if_match=etag1, return_representation=True
    )
    assert etag2 and etag2 != etag1
    with pytest.raises(Conflict) as caught:
        client.update("contacts", contact_id, {"jobtitle": "Cook"}, if_match=etag1)
    assert "RowVersion" in caught.value.message
    assert client.get("contacts", contact_id)["jobtitle"] == "Chef"
    with pytest.raises(NotFound):
        client.update("contacts", new_id(), {"jobtitle": "x"}, if_match="*")
    with pytest.raises(NotFound):
        client.delete("contacts", new_id())


def test_duplicate_caller_chosen_id(client: DataverseClient) -> None:
    chosen = new_id()
    assert client.create("contacts", {"lastname": "Once"}, id=chosen)[0] == chosen
    with pytest.raises(Duplicate):
        client.create("contacts", {"lastname": "Twice"}, id=chosen)
    assert client.get("contacts", chosen)["lastname"] == "Once"


def test_batch_change_set_failure_rolls_back_only_itself(client: DataverseClient) -> None:
    first, second = new_id(), new_id()
    results = client.batch(
        [
            [BatchOp("POST", "contacts", {"contactid": first, "lastname": "Applied"})],
            [
                BatchOp("POST", "contacts", {"contactid": second, "lastname": "RolledBack"}),
                BatchOp("PATCH", f"contacts({new_id()})", {"lastname": "x"}, {"If-Match": "*"}),
            ],
        ]
    )
    assert len(results) == 3
    assert results[0].ok and results[0].entity_id == first
    assert all(isinstance(r.error, NotFound) for r in results[1:])
    assert client.get("contacts", first)["lastname"] == "Applied"
    with pytest.raises(NotFound):
        client.get("contacts", second)


def test_429_retry_after_is_waited_out(sandbox: Sandbox, client: DataverseClient) -> None:
    sandbox.waits.clear()
    sandbox.log.clear()
    sandbox.faults.set(Fault("429", every=1, times=1, delay=1))
    try:
        assert client.who_am_i()["UserId"]
    finally:
        sandbox.faults.clear()
    assert dataverse_statuses(sandbox, 2) == [429, 200]
    assert sandbox.waits == [pytest.approx(1.0, abs=0.5)]
    assert client.request_count == 2


def test_service_protection_budget_is_waited_out(sandbox: Sandbox) -> None:
    server = sandbox.server
    sandbox.waits.clear()
    server.request_budget, server.request_window = 3, 1.0
    try:
        with sandbox.client("fabrikam", upn="dave@fabrikam.example") as dave:
            for _ in range(5):
                assert dave.who_am_i()["UserId"]
            assert dave.request_count > 5  # the refused ones were sent again
    finally:
        server.request_budget = None
    assert sandbox.waits and all(0 < w <= 1 for w in sandbox.waits)
    throttled = [
        e for e in sandbox.log.snapshot() if e.user == "dave@fabrikam.example" and e.status == 429
    ]
    assert len(throttled) == len(sandbox.waits)


@pytest.mark.parametrize("kind", ["503", "drop"])
def test_503_and_dropped_connections_are_retried(
    sandbox: Sandbox, client: DataverseClient, kind: str
) -> None:
    sandbox.waits.clear()
    sandbox.log.clear()
    sandbox.faults.set(Fault(kind, every=1, times=2, match="WhoAmI"))  # type: ignore[arg-type]
    try:
        assert client.who_am_i()["UserId"]
    finally:
        sandbox.faults.clear()
    assert dataverse_statuses(sandbox, 3) == [503 if kind == "503" else 0] * 2 + [200]
    assert client.request_count == 3 and len(sandbox.waits) == 2


def test_timeouts_are_retried_and_persistent_failure_is_unavailable(sandbox: Sandbox) -> None:
    sandbox.faults.set(Fault("slow", every=1, times=1, delay=0.8, match="WhoAmI"))
    try:
        with sandbox.client(timeout=0.3) as slow:
            assert slow.who_am_i()["UserId"] and slow.request_count == 2
        sandbox.faults.set(Fault("503", every=1, match="WhoAmI"))
        with sandbox.client() as failing, pytest.raises(Unavailable):
            failing.who_am_i()
        assert failing.request_count == 3  # the first try and the two retries of the policy
    finally:
        sandbox.faults.clear()


def test_bad_token_is_auth_error(sandbox: Sandbox) -> None:
    with sandbox.client(token="not-a-token") as bad, pytest.raises(AuthError):
        bad.who_am_i()
    # bob is no member of fabrikam
    with (
        sandbox.client("fabrikam", upn="bob@contoso.example") as stranger,
        pytest.raises(AuthError),
    ):
        stranger.who_am_i()


def test_who_am_i_and_discovery_list_the_users_orgs(
    sandbox: Sandbox, client: DataverseClient
) -> None:
    alice = next(u for u in USERS if u.upn == ALICE)
    assert client.who_am_i()["UserId"].lower() == alice.systemuser_id("contoso")
    token = sandbox.tokens.static_token(ALICE)
    found = discover_instances(sandbox.server.discovery_url, lambda: token)
    assert sorted(i.unique_name for i in found) == ["contoso", "fabrikam"]
    contoso = next(i for i in found if i.unique_name == "contoso")
    assert contoso.api_url == sandbox.server.api_url("contoso")
    bob = sandbox.tokens.static_token("bob@contoso.example")
    assert [
        i.unique_name for i in discover_instances(sandbox.server.discovery_url, lambda: bob)
    ] == ["contoso"]
    with pytest.raises(AuthError):
        discover_instances(sandbox.server.discovery_url, lambda: "nope")


# --- DataverseSide ---------------------------------------------------------------------------


def test_side_create_with_key_twice_makes_one_record(client: DataverseClient) -> None:
    side = DataverseSide(client)
    assert isinstance(side, Side)
    key = new_id()
    op = CreateOp(key, {"firstname": "Idem", "lastname": "Potent"})
    first = side.write("contacts", [op])
    again = side.write("contacts", [op])
    assert isinstance(first[0], Written) and isinstance(again[0], Written)
    assert first[0].id == again[0].id == key and first[0].version
    assert again[0].version == first[0].version
    assert client.count("contacts", filter=f"contactid eq {key}") == 1
    found = side.find_by_key("contacts", [key, new_id()])
    assert list(found) == [key] and found[key].fields["lastname"] == "Potent"


def test_side_write_results_in_order_for_a_mixed_batch(client: DataverseClient) -> None:
    side = DataverseSide(client)
    stale_id, stale_etag = make_contact(client, lastname="Stale")
    client.update("contacts", stale_id, {"jobtitle": "moved on"})
    new_key, missing = new_id(), new_id()
    before = client.request_count
    results = side.write(
        "contacts",
        [
            UpdateOp(stale_id, stale_etag, {"jobtitle": "mine"}),
            DeleteOp(missing, None),
            CreateOp(new_key, {"lastname": "Fresh"}),
        ],
    )
    assert isinstance(results[0], Conflict)
    assert results[1] == Written(missing, None)
    assert isinstance(results[2], Written) and results[2].id == new_key and results[2].version
    assert results[2].fields["lastname"] == "Fresh"
    assert client.request_count - before == 1  # one $batch for the three writes
    assert client.get("contacts", stale_id)["jobtitle"] == "moved on"


def test_side_read_changes_and_updates(client: DataverseClient) -> None:
    side = DataverseSide(client, page_size=50)
    pages = list(side.read_changes("tasks", None))
    assert pages[-1].last and pages[-1].token and all(p.token is None for p in pages[:-1])
    key = new_id()
    [created] = side.write("tasks", [CreateOp(key, {"subject": "side task"})])
    assert isinstance(created, Written)
    [updated] = side.write("tasks", [UpdateOp(key, created.version, {"subject": "side task 2"})])
    assert isinstance(updated, Written) and updated.version != created.version
    [unguarded] = side.write("tasks", [UpdateOp(key, None, {"subject": "side task 3"})])
    assert isinstance(unguarded, Written)
    changes = [c for p in side.read_changes("tasks", pages[-1].token) for c in p.changes]
    assert len(changes) == 1 and isinstance(changes[0], Upsert) and changes[0].id == key
    assert changes[0].fields["subject"] == "side task 3" and changes[0].version == unguarded.version
    assert "@odata.etag" not in changes[0].fields
    token = list(side.read_changes("tasks", pages[-1].token))[-1].token
    assert side.write("tasks", [DeleteOp(key, unguarded.version)]) == [Written(key, None)]
    assert [c for p in side.read_changes("tasks", token) for c in p.changes] == [Deleted(key)]
    assert side.read("tasks", [key]) == {}


def test_side_reads_appointments_with_parties(sandbox: Sandbox, client: DataverseClient) -> None:
    side = DataverseSide(client)
    alice = next(u for u in USERS if u.upn == ALICE)
    contact_id, _ = make_contact(client, lastname="Guest")
    key = new_id()
    fields = {
        "subject": "Party",
        "scheduledstart": "2026-12-01T10:00:00Z",
        "scheduledend": "2026-12-01T11:00:00Z",
        "appointment_activity_parties": [
            {
                "participationtypemask": 7,
                "partyid_systemuser@odata.bind": f"/systemusers({alice.systemuser_id('contoso')})",
            },
            {"participationtypemask": 5, "partyid_contact@odata.bind": f"/contacts({contact_id})"},
            {"participationtypemask": 6, "addressused": "someone@elsewhere.example"},
        ],
    }
    [written] = side.write("appointments", [CreateOp(key, fields)])
    assert isinstance(written, Written)
    other = make_contact(client)[0]
    found = side.read("appointments", [key, new_id()])
    assert list(found) == [key]
    parties = found[key].fields["appointment_activity_parties"]
    assert sorted(p["participationtypemask"] for p in parties) == [5, 6, 7]
    assert {p.get("_partyid_value") for p in parties} >= {contact_id}
    assert other not in {p.get("_partyid_value") for p in parties}


# --- memory -----------------------------------------------------------------------------------

ROWS = 20_000


def test_reading_20000_rows_keeps_memory_flat(sandbox: Sandbox) -> None:
    server = sandbox.server
    for n in range(ROWS):
        server.insert(
            "fabrikam",
            "leads",
            {
                "firstname": f"Lead{n}",
                "lastname": "Bulk",
                "subject": "x" * 40,
                "companyname": f"Company {n}",
                "emailaddress1": f"lead{n}@bulk.example",
            },
        )
    with sandbox.client("fabrikam") as client:
        select = ["firstname", "lastname", "subject", "companyname", "emailaddress1"]
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            seen = 0
            for page in client.iter_pages("leads", select=select, page_size=500):
                seen += len(page)
            streaming_peak = tracemalloc.get_traced_memory()[1] - base

            everything = [
                row
                for page in client.iter_pages("leads", select=select, page_size=500)
                for row in page
            ]
            whole_list = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
    assert seen == len(everything) >= ROWS
    assert streaming_peak < 0.25 * whole_list, (streaming_peak, whole_list)


def test_annotations_tell_lookup_types_when_asked(sandbox: Sandbox) -> None:
    annotation = "_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"
    with sandbox.client(annotations="*") as client:
        first, _ = make_contact(client)
        second, _ = make_contact(client)
        assert client.get("contacts", first)[annotation] == "systemuser"
        page = next(iter(client.track_changes("contacts", select=["lastname", "_ownerid_value"])))
        assert all(row[annotation] == "systemuser" for row in page.rows)
        found = DataverseSide(client).read("contacts", [first, second])
        assert {u.fields[annotation] for u in found.values()} == {"systemuser"}
    with sandbox.client() as plain:
        assert annotation not in plain.get("contacts", first)
