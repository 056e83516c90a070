"""Sandbox EWS SyncFolderItems through exchangelib: big syncs in pages, resumption, change kinds,
bad states, moves."""

from __future__ import annotations

import pytest
from exchangelib.errors import ErrorInvalidSyncStateData
from exchangelib.items import Contact, Message, Task
from exchangelib.services import SyncFolderItems

from sandbox.ews.testing import account
from tests.sandbox.ews_helpers import ALICE


def _page(account, folder, state, max_changes=512, shape="IdOnly"):
    """One SyncFolderItems call: (changes, new state, includes last)."""
    service = SyncFolderItems(account=account)
    changes = list(
        service.call(
            folder=folder,
            shape=shape,
            additional_fields=None,
            sync_state=state,
            ignore=None,
            max_changes_returned=max_changes,
            sync_scope=None,
        )
    )
    return changes, service.sync_state, service.includes_last_item_in_range


def test_sync_1200_changes_in_pages_resuming_from_state(alice, server):
    folder = alice.contacts
    contacts = [
        Contact(display_name=f"C{i}", given_name=f"C{i}", crmid=f"k{i}") for i in range(1200)
    ]
    for start in range(0, 1200, 400):
        alice.bulk_create(folder=folder, items=contacts[start : start + 400])
    seen: list[str] = []
    state = None
    pages = []
    while True:
        # A "restart" between pages: a fresh account object, only the state carries over.
        fresh = account(server, ALICE)
        changes, state, last = _page(fresh, fresh.contacts, state, max_changes=512)
        pages.append(len(changes))
        seen += [item.id for kind, item in changes if kind == "create"]
        if last:
            break
    assert pages == [512, 512, 176]
    assert len(set(seen)) == 1200
    # Nothing changed: an empty page, still the last one.
    changes, state2, last = _page(alice, folder, state)
    assert changes == [] and last
    # exchangelib's own generator gives the same result from scratch.
    assert (
        sum(
            1
            for kind, _ in folder.sync_items(only_fields=["given_name"], max_changes_returned=512)
            if kind == "create"
        )
        == 1200
    )
    ids = [i for i in seen[:3]]
    alice.bulk_delete([(i, None) for i in ids])
    changes, _, _ = _page(alice, folder, state2)
    assert sorted(kind for kind, _ in changes) == ["delete"] * 3
    server.reset_mailbox(ALICE)


def test_change_kinds_update_read_flag_delete(alice):
    inbox = alice.inbox
    _, state, _ = _page(alice, inbox, None)
    msg = Message(account=alice, folder=inbox, subject="kinds", body="b", is_read=False)
    msg.save()
    gone = Message(account=alice, folder=inbox, subject="born and gone", body="b")
    gone.save()
    gone.delete()
    changes, state, last = _page(alice, inbox, state, shape="AllProperties")
    assert [(k, i.subject) for k, i in changes] == [("create", "kinds")]
    msg.is_read = True
    msg.save(update_fields=["is_read"])
    changes, state, _ = _page(alice, inbox, state)
    assert [k for k, _ in changes] == ["read_flag_change"]
    msg.subject = "kinds 2"
    msg.save(update_fields=["subject"])
    changes, state, _ = _page(alice, inbox, state, shape="AllProperties")
    assert [(k, i.subject) for k, i in changes] == [("update", "kinds 2")]
    old_id = msg.id
    msg.move(alice.junk)
    changes, state, _ = _page(alice, inbox, state)
    assert [(k, i.id) for k, i in changes] == [("delete", old_id)]
    junk_changes, _, _ = _page(alice, alice.junk, None)
    assert [(k, i.id) for k, i in junk_changes] == [("create", msg.id)]


def test_extended_property_in_sync_shape(alice):
    folder = alice.tasks
    _, state, _ = _page(alice, folder, None)
    Task(folder=folder, subject="with key", crmid="task-key").save()
    changes = list(folder.sync_items(sync_state=state, only_fields=["subject", "crmid"]))
    assert [(k, i.subject, i.crmid) for k, i in changes] == [("create", "with key", "task-key")]


def test_bad_sync_state(alice):
    with pytest.raises(ErrorInvalidSyncStateData):
        _page(alice, alice.inbox, "bm90IGEgc3RhdGU=")
    # A state of another folder is not valid here either.
    _, other, _ = _page(alice, alice.tasks, None)
    with pytest.raises(ErrorInvalidSyncStateData):
        _page(alice, alice.inbox, other)


def test_ignore_list_and_small_pages(alice):
    folder = alice.drafts
    _, state, _ = _page(alice, folder, None)
    made = alice.bulk_create(folder=folder, items=[Message(subject=f"m{i}") for i in range(5)])
    service = SyncFolderItems(account=alice)
    changes = list(
        service.call(
            folder=folder,
            shape="IdOnly",
            additional_fields=None,
            sync_state=state,
            ignore=[made[0]],
            max_changes_returned=2,
            sync_scope=None,
        )
    )
    assert len(changes) == 2 and not service.includes_last_item_in_range
    assert made[0].id not in {i.id for _, i in changes}
    rest, _, last = _page(alice, folder, service.sync_state, max_changes=10)
    assert last and len(rest) == 2
