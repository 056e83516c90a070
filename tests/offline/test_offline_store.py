"""The local store alone (no CRM): each row has one pending change, so going online sends the
net effect of the offline work with the downloaded ETag and base."""

from __future__ import annotations

from sync.offline.store import OfflineStore
from sync.store.db import Database
from sync.store.models import OfflineRow, OfflineTable

ORG = "org-contoso"


def _store(database: Database) -> OfflineStore:
    with database.session() as session:
        session.add(
            OfflineTable(
                org=ORG, entity_set="contacts", logical_name="contact", key="contactid",
                title_column="fullname", columns=[],
            )
        )  # fmt: skip
        session.add(
            OfflineRow(
                org=ORG, entity_set="contacts", row_id="r1", title="ann lee",
                fields={"fullname": "Ann Lee", "jobtitle": "A"},
                base={"fullname": "Ann Lee", "jobtitle": "A"}, etag='W/"1"', state="clean",
            )
        )  # fmt: skip
    return OfflineStore(database, ORG)


def test_edits_of_a_row_are_one_change_and_back_to_base_is_none(database: Database) -> None:
    store = _store(database)
    store.update("contacts", "r1", {"jobtitle": "B"})
    store.update("contacts", "r1", {"fullname": "Ann Lea"})
    [change] = store.pending()
    assert (change.op, change.changes, change.base_etag) == (
        "update", {"jobtitle": "B", "fullname": "Ann Lea"}, 'W/"1"'
    )  # fmt: skip
    store.update("contacts", "r1", {"jobtitle": "A", "fullname": "Ann Lee"})
    assert store.pending() == []
    record = store.get("contacts", "r1")
    assert record is not None and record.state == "clean"


def test_delete_after_edit_is_a_delete_and_created_then_deleted_is_nothing(
    database: Database,
) -> None:
    store = _store(database)
    store.update("contacts", "r1", {"jobtitle": "B"})
    store.delete("contacts", "r1")
    assert [(c.op, c.base_etag) for c in store.pending()] == [("delete", 'W/"1"')]
    made = store.create("contacts", {"fullname": "New One"})
    store.update("contacts", made, {"jobtitle": "X"})
    creates = [c for c in store.pending() if c.op == "create"]
    assert [c.changes for c in creates] == [{"fullname": "New One", "jobtitle": "X"}]
    store.delete("contacts", made)
    assert [c.op for c in store.pending()] == ["delete"]
    assert store.get("contacts", made) is None
    assert store.list("contacts").total == 0


def test_search_sort_and_paging(database: Database) -> None:
    store = _store(database)
    for n in range(12):
        store.create("contacts", {"fullname": f"Zed {n:02d}"})
    page = store.list("contacts", search="zed", sort="title", descending=True, page=2, page_size=5)
    assert page.total == 12 and page.pages == 3
    assert [r.fields["fullname"] for r in page.records] == [f"Zed {n:02d}" for n in (6, 5, 4, 3, 2)]
    assert store.list("contacts", search="100%").total == 0  # LIKE wildcards are literal
