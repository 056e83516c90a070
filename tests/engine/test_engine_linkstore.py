"""The SQL link store: one transaction per batch, tokens, parked items, conflicts, alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sync.engine import EngineSettings, sync_kind
from sync.engine.state import Batch, ConflictRow, ItemFailure, LinkRow
from sync.kinds.contacts import CONTACTS
from sync.memory import MemoryCrm, MemoryMailbox
from sync.runs import open_alerts
from sync.sides import Unavailable
from sync.store.db import Database, open_database
from sync.store.linkstore import SqlLinkStore

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture
def database(data_dir: Path) -> Database:
    database = open_database(data_dir)  # migrated to head, 0002 included
    yield database  # type: ignore[misc]
    database.dispose()


def test_links_tokens_and_moves(database: Database) -> None:
    store = SqlLinkStore(database, "org-1")
    other = SqlLinkStore(database, "org-2")
    a = LinkRow("c1", "m1", "v1", "k1", "f" * 64, "g" * 64, {"crm": {"x": 1}, "mailbox": {}})
    b = LinkRow("c2", "m2")
    store.commit_batch("contacts", Batch(upserts=[a, b]), NOW)
    assert sorted(store.load_links("contacts"), key=lambda r: r.crm_id) == [a, b]
    assert other.load_links("contacts") == []
    # A move hands m2's id to c1 while c2 moves on: no unique clash inside the batch.
    store.commit_batch(
        "contacts",
        Batch(upserts=[LinkRow("c1", "m2"), LinkRow("c2", "m3")], removals=[]),
        NOW,
    )
    assert {r.crm_id: r.mailbox_id for r in store.load_links("contacts")} == {
        "c1": "m2",
        "c2": "m3",
    }
    store.commit_batch("contacts", Batch(removals=["c1"]), NOW)
    assert [r.crm_id for r in store.load_links("contacts")] == ["c2"]
    store.save_tokens("contacts", {"crm": "t1", "mailbox": None})
    store.save_tokens("contacts", {"crm": "t2"})
    assert (store.get_token("contacts", "crm"), store.get_token("contacts", "mailbox")) == (
        "t2",
        None,
    )
    assert other.get_token("contacts", "crm") is None


def test_parked_items_back_off_and_alert_after_repeats(database: Database) -> None:
    store = SqlLinkStore(database, "org-1", alert_after=3)
    failure = ItemFailure("c1", "m1", "mailbox", "update", "Unavailable: down")
    for attempt in range(1, 4):
        store.commit_batch("contacts", Batch(failures=[failure]), NOW)
        [parked] = store.parked_items("contacts")
        assert parked.attempts == attempt
        assert parked.next_attempt_at == NOW + timedelta(seconds=60 * 2 ** (attempt - 1))
    assert [(a.code, a.subject) for a in open_alerts(database)] == [("item-failed", "contacts:c1")]
    store.commit_batch("contacts", Batch(resolved=["c1"]), NOW)
    assert store.parked_items("contacts") == []
    assert open_alerts(database) == []  # the item went through: its alert is settled


def test_conflicts_recorded_and_reversed(database: Database) -> None:
    store = SqlLinkStore(database, "org-1")
    row = ConflictRow("c1", "m1", "jobtitle", "A", "B", "crm", "policy", "Lee")
    store.commit_batch("contacts", Batch(conflicts=[row]), NOW)
    [stored] = store.conflicts("contacts")
    assert (stored.crm_value, stored.mailbox_value, stored.reversed) == ("A", "B", False)
    assert stored.id is not None
    store.mark_reversed(stored.id)
    assert store.conflicts("contacts")[0].reversed


def test_sync_over_sql_store_survives_a_restart(database: Database) -> None:
    crm, mailbox = MemoryCrm(me="me"), MemoryMailbox()
    settings = EngineSettings(me="me", clock=lambda: NOW, batch_size=3)
    for i in range(7):
        crm.put("contacts", {"lastname": f"C{i}"})
    failing = iter([Unavailable("down")] + [None] * 20)
    mailbox.hook = lambda where, kind, op: next(failing) if where == "before" else None
    result = sync_kind(CONTACTS, crm, mailbox, SqlLinkStore(database, "org-1"), settings)
    assert result.mailbox.created == 6 and result.errors == 1
    mailbox.hook = None
    later = EngineSettings(me="me", clock=lambda: NOW + timedelta(hours=1))
    reopened = SqlLinkStore(database, "org-1")  # a new process, same database
    assert sync_kind(CONTACTS, crm, mailbox, reopened, later).mailbox.created == 1
    assert len(mailbox.records("contacts")) == 7
    assert sync_kind(CONTACTS, crm, mailbox, reopened, later).changed == 0


def test_emptied_side_alert_is_stored(database: Database) -> None:
    crm, mailbox = MemoryCrm(me="me"), MemoryMailbox()
    store = SqlLinkStore(database, "org-1")
    settings = EngineSettings(me="me", clock=lambda: NOW, emptied_threshold=2)
    for i in range(3):
        crm.put("contacts", {"lastname": f"C{i}"})
    sync_kind(CONTACTS, crm, mailbox, store, settings)
    for item_id in list(mailbox.records("contacts")):
        mailbox.remove("contacts", item_id)
    mailbox.expire_tokens("contacts")
    assert sync_kind(CONTACTS, crm, mailbox, store, settings).stopped == "side-emptied"
    assert [a.code for a in open_alerts(database)] == ["side-emptied"]
    confirmed = EngineSettings(me="me", clock=lambda: NOW, emptied_threshold=2,
                               confirm_emptied=True)  # fmt: skip
    assert sync_kind(CONTACTS, crm, mailbox, store, confirmed).untracked == 3
    assert open_alerts(database) == []
