"""Offline over real HTTP against the sandbox Dataverse: go offline, work with the sandbox
stopped, change rows on the server meanwhile, go online: merged, conflicts recorded, no
duplicate, nothing lost (DESIGN.md §1.4; issue 12)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from sync.offline.replay import REASON_CHANGED
from sync.offline.service import OfflineService
from sync.offline.store import get_mode, set_mode
from sync.settings import set_setting
from sync.store.db import Database
from sync.store.models import ConflictRecord
from tests.offline.conftest import Sandbox


def _server_row(sandbox: Sandbox, row_id: str) -> dict[str, Any] | None:
    with sandbox.http() as http:
        response = http.get(sandbox.api + f"contacts({row_id})")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


def _patch(sandbox: Sandbox, row_id: str, **values: Any) -> None:
    with sandbox.http() as http:
        response = http.patch(sandbox.api + f"contacts({row_id})", json=values)
    assert response.status_code == 204, response.text


def _conflicts(database: Database) -> list[ConflictRecord]:
    with database.session() as session:
        return list(session.scalars(select(ConflictRecord).order_by(ConflictRecord.id)))


def _count_by_lastname(sandbox: Sandbox, lastname: str) -> int:
    with sandbox.http() as http:
        response = http.get(
            sandbox.api + f"contacts?$select=contactid&$filter=lastname eq '{lastname}'"
        )
    assert response.status_code == 200, response.text
    return len(response.json()["value"])


def test_go_offline_downloads_chosen_rows_with_etag_base_and_metadata(
    service: OfflineService, running: Sandbox, me: str
) -> None:
    steps: list[tuple[str, int, int]] = []
    result = service.go_offline(lambda phase, done, total: steps.append((phase, done, total)))
    assert get_mode(service.database) == "offline"
    store = service.store()
    with running.http() as http:
        expected = http.get(
            running.api + "contacts?$select=contactid"
            f"&$filter=_ownerid_value eq {me} and statecode eq 0"
        ).json()["value"]
    assert result.rows["contacts"] == len(expected) > 0
    assert store.count("contacts") == len(expected)
    page = store.list("contacts", page_size=5)
    assert page.total == len(expected) and len(page.records) == min(5, len(expected))
    record = page.records[0]
    assert record.etag and record.etag.startswith('W/"')
    assert record.fields["_ownerid_value"].lower() == me
    table = store.table("contacts")
    assert table is not None and table.delta_link and table.key == "contactid"
    names = {c["name"]: c for c in table.columns}
    assert names["firstname"]["type"] == "text"
    assert names["_parentcustomerid_value"]["type"] == "lookup"
    assert steps[-1][1] == steps[-1][2] == len(expected)  # progress reached its total


def test_offline_crud_with_sandbox_stopped_then_online_merges(
    service: OfflineService, running: Sandbox, database: Database
) -> None:
    service.go_offline()
    store = service.store()
    records = store.list("contacts", page_size=3).records
    edited, both, gone = records[0].id, records[1].id, records[2].id
    running.server.stop()  # offline: any CRM call would now fail
    try:
        new_id = store.create("contacts", {"firstname": "Offline", "lastname": "Created-12"})
        store.update("contacts", edited, {"jobtitle": "Offline title"})
        store.update("contacts", both, {"jobtitle": "Mine", "telephone1": "555-0100"})
        store.delete("contacts", gone)
        assert store.get("contacts", gone) is None
        assert store.get("contacts", new_id) is not None
        assert [c.op for c in store.pending()] == ["create", "update", "update", "delete"]
        assert store.list("contacts", search="created-12").total == 1
        assert service.refresh() is None  # the scheduled job makes no call while offline
    finally:
        running.server.start()
    # meanwhile on the server: a non-overlapping change and an overlapping one
    _patch(running, edited, department="Server dept")
    _patch(running, both, jobtitle="Theirs")
    replayed, refreshed = service.go_online()
    assert refreshed is not None and get_mode(database) == "online"
    assert replayed.done == 3 and replayed.conflicts == 1 and replayed.failed == 0
    assert replayed.merged == 2  # both edited rows met a newer server row (412), merged
    server_edited = _server_row(running, edited)
    assert server_edited is not None
    assert server_edited["jobtitle"] == "Offline title"  # mine, not overwritten ...
    assert server_edited["department"] == "Server dept"  # ... and theirs kept: merged
    server_both = _server_row(running, both)
    assert server_both is not None
    assert server_both["jobtitle"] == "Theirs"  # policy "server" (the default)
    assert server_both["telephone1"] == "555-0100"  # my other field still went
    assert _server_row(running, gone) is None
    created = _server_row(running, new_id)
    assert created is not None and created["lastname"] == "Created-12"
    assert _count_by_lastname(running, "Created-12") == 1
    [conflict] = _conflicts(database)
    assert (conflict.kind, conflict.crm_id, conflict.field) == (
        "offline:contacts",
        both,
        "jobtitle",
    )
    assert (conflict.crm_value, conflict.mailbox_value, conflict.winner) == (
        "Theirs",
        "Mine",
        "crm",
    )
    assert store.pending() == []
    local = store.get("contacts", both)
    assert local is not None and local.fields["jobtitle"] == "Theirs" and local.state == "clean"


def test_policy_mine_keeps_my_value(
    service: OfflineService, running: Sandbox, database: Database
) -> None:
    set_setting(database, "offline_conflict_policy", "mine")
    service.go_offline()
    store = service.store()
    row_id = store.list("contacts", page_size=1).records[0].id
    store.update("contacts", row_id, {"jobtitle": "Mine wins"})
    _patch(running, row_id, jobtitle="Theirs loses")
    replayed, _ = service.go_online()
    assert replayed.conflicts == 1
    server = _server_row(running, row_id)
    assert server is not None and server["jobtitle"] == "Mine wins"
    assert _conflicts(database)[0].winner == "mailbox"


def test_edit_of_row_deleted_on_server_keeps_local_copy(
    service: OfflineService, running: Sandbox, database: Database
) -> None:
    service.go_offline()
    store = service.store()
    row_id = store.list("contacts", page_size=1).records[0].id
    store.update("contacts", row_id, {"jobtitle": "Edited while deleted"})
    with running.http() as http:
        assert http.delete(running.api + f"contacts({row_id})").status_code == 204
    replayed, _ = service.go_online()
    assert replayed.conflicts == 1
    local = store.get("contacts", row_id)
    assert local is not None and local.fields["jobtitle"] == "Edited while deleted"
    [conflict] = _conflicts(database)
    assert conflict.crm_id == row_id and conflict.mailbox_value == {
        "jobtitle": "Edited while deleted"
    }
    assert _server_row(running, row_id) is None  # not silently recreated


def test_delete_of_row_changed_on_server_is_not_made(
    service: OfflineService, running: Sandbox, database: Database
) -> None:
    service.go_offline()
    store = service.store()
    row_id = store.list("contacts", page_size=1).records[0].id
    store.delete("contacts", row_id)
    _patch(running, row_id, jobtitle="Changed by someone")
    replayed, _ = service.go_online()
    assert replayed.conflicts == 1
    assert _server_row(running, row_id) is not None
    local = store.get("contacts", row_id)
    assert local is not None and local.fields["jobtitle"] == "Changed by someone"
    assert _conflicts(database)[0].reason == REASON_CHANGED.text


def test_refresh_by_change_tracking_brings_server_changes(
    service: OfflineService, running: Sandbox, database: Database
) -> None:
    service.go_offline()
    set_mode(database, "online")
    store = service.store()
    row_id = store.list("contacts", page_size=1).records[0].id
    _patch(running, row_id, jobtitle="Refreshed")
    result = service.refresh()
    assert result is not None and result.requests <= 2  # one delta read (no full download)
    local = store.get("contacts", row_id)
    assert local is not None and local.fields["jobtitle"] == "Refreshed"


def test_sandbox_refuses_stale_if_match_with_412(running: Sandbox) -> None:
    """Dataverse answers a stale `If-Match` with 412 (powerapps-docs webapi/
    perform-conditional-operations-using-web-api.md, "Apply optimistic concurrency")."""
    with running.http() as http:
        first = http.get(running.api + "contacts?$select=contactid&$top=1").json()["value"][0]
        row_id = first["contactid"]
        etag = first["@odata.etag"]
        assert (
            http.patch(running.api + f"contacts({row_id})", json={"jobtitle": "a"}).status_code
            == 204
        )
        stale = http.patch(
            running.api + f"contacts({row_id})", json={"jobtitle": "b"}, headers={"If-Match": etag}
        )
        assert stale.status_code == 412
        assert (
            http.delete(running.api + f"contacts({row_id})", headers={"If-Match": etag}).status_code
            == 412
        )


def _offline_conflict(
    service: OfflineService, running: Sandbox, database: Database, mine: str, theirs: str
) -> tuple[str, ConflictRecord]:
    """Go offline, change a contact's job title to `mine`, the server's to `theirs`, go online:
    the one conflict that makes (the values must differ from the row's current ones)."""
    service.go_offline()
    store = service.store()
    row_id = store.list("contacts", page_size=1).records[0].id
    store.update("contacts", row_id, {"jobtitle": mine})
    _patch(running, row_id, jobtitle=theirs)
    service.go_online()
    [conflict] = _conflicts(database)
    return row_id, conflict


def test_reversing_an_offline_conflict_writes_the_other_value(
    service: OfflineService, running: Sandbox, database: Database
) -> None:
    """The Conflicts page's "Use the other value" on an offline conflict: my value goes to
    the server (checked there) and to the local copy."""
    from sync.conflicts import reverse_conflict
    from sync.offline.resolve import reverse_offline

    row_id, conflict = _offline_conflict(service, running, database, "Mine", "Theirs")
    assert conflict.winner == "crm"
    winner = reverse_conflict(database, conflict.id, lambda r: reverse_offline(service, r))
    assert winner == "mailbox"
    server = _server_row(running, row_id)
    assert server is not None and server["jobtitle"] == "Mine"
    local = service.store().get("contacts", row_id)
    assert local is not None and local.fields["jobtitle"] == "Mine"


def test_an_offline_conflict_is_reversed_while_a_messaging_run_is_going(
    service: OfflineService, running: Sandbox, database: Database
) -> None:
    """Going online starts a messaging run; "Use the other value" on an offline conflict must
    not wait for it: it holds the offline lock, not the messaging one."""
    import threading

    from sync.offline.resolve import reverse_offline
    from sync.service import MESSAGING, SyncService
    from sync.store.lock import hold, lock_directory

    mine, theirs = "Mine, while a run goes", "Theirs, while a run goes"
    row_id, conflict = _offline_conflict(service, running, database, mine, theirs)
    jobs = SyncService(database)
    jobs.reverser = lambda record: reverse_offline(service, record)

    with jobs._locks[MESSAGING], hold(lock_directory(database.url), MESSAGING):  # a run goes on
        answer: list[str] = []
        worker = threading.Thread(target=lambda: answer.append(jobs.reverse_conflict(conflict.id)))
        worker.start()
        worker.join(timeout=10)
        assert answer == ["mailbox"], "the reversal waited for the messaging run"
    server = _server_row(running, row_id)
    assert server is not None and server["jobtitle"] == mine
