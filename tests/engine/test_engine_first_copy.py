"""The first copy of a kind into an empty mailbox folder is planned and applied one CRM page at
a time (issue 13: 100,000 contacts in bounded memory), and decides what planning the whole read
would: every record the filters take made once, linked, the tokens saved at the end. Anything
else (links, mailbox items, parked records) takes the whole-read path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sync.engine import EngineSettings, MemoryLinkStore, sync_kind
from sync.kinds.contacts import CONTACTS
from sync.memory import MemoryCrm, MemoryMailbox
from sync.sides import Page, TokenExpired


class WatchedCrm(MemoryCrm):
    """Notes, as each page of a read is handed over, how many items the mailbox holds; can
    expire its paging link after `expire_after` pages."""

    def __init__(self, mailbox: MemoryMailbox, **kw: Any) -> None:
        super().__init__(**kw)
        self.mailbox = mailbox
        self.seen: list[int] = []
        self.expire_after: int | None = None

    def read_changes(self, kind: str, token: str | None, known: Any = None) -> Iterator[Page]:
        for number, page in enumerate(super().read_changes(kind, token, known)):
            if self.expire_after is not None and number == self.expire_after:
                raise TokenExpired("the paging link expired", "expired")
            self.seen.append(len(self.mailbox.records("contacts")))
            yield page


def world(n: int) -> tuple[WatchedCrm, MemoryMailbox, MemoryLinkStore, EngineSettings]:
    mailbox = MemoryMailbox()
    crm = WatchedCrm(mailbox, me="me", page_size=10)
    for i in range(n):
        crm.put("contacts", {"firstname": f"F{i}", "lastname": f"L{i}"})
    crm.put("contacts", {"lastname": "Inactive", "statecode": 1})  # the filters leave it out
    return crm, mailbox, MemoryLinkStore(), EngineSettings(me="me", batch_size=4)


def test_the_first_copy_goes_page_by_page_and_makes_each_record_once() -> None:
    crm, mailbox, store, settings = world(35)
    result = sync_kind(CONTACTS, crm, mailbox, store, settings)
    # the mailbox grew between the pages: page 2 was read after page 1's records were made
    assert crm.seen == [0, 10, 20, 30]
    assert (result.mailbox.created, result.errors) == (35, 0)
    items = mailbox.records("contacts")
    assert sorted(i.fields["surname"] for i in items.values()) == sorted(f"L{i}" for i in range(35))  # fmt: skip
    assert len({i.key for i in items.values()}) == 35
    assert store.count_links("contacts") == 35
    assert store.get_token("contacts", "crm") is not None
    assert store.get_token("contacts", "mailbox") is not None
    again = sync_kind(CONTACTS, crm, mailbox, store, settings)
    assert (again.mailbox.created, again.mailbox.updated, again.crm.created) == (0, 0, 0)


def test_a_paging_link_expiring_part_way_leaves_the_rest_to_the_next_run() -> None:
    crm, mailbox, store, settings = world(35)
    crm.expire_after = 2
    first = sync_kind(CONTACTS, crm, mailbox, store, settings)
    assert first.mailbox.created == 20 and store.count_links("contacts") == 20
    assert store.get_token("contacts", "crm") is None  # nothing saved: the next run reads all
    crm.expire_after = None
    second = sync_kind(CONTACTS, crm, mailbox, store, settings)
    assert (second.mailbox.created, second.errors) == (15, 0)
    keys = [i.key for i in mailbox.records("contacts").values()]
    assert len(keys) == len(set(keys)) == 35  # none twice
    assert store.count_links("contacts") == 35


def test_a_mailbox_holding_items_takes_the_whole_read() -> None:
    crm, mailbox, store, settings = world(25)
    mailbox.put("contacts", {"surname": "Mine"})  # not ours, not tracked: left alone
    result = sync_kind(CONTACTS, crm, mailbox, store, settings)
    assert crm.seen == [1, 1, 1]  # every page read before the first write
    assert (result.mailbox.created, result.errors) == (25, 0)
    assert len(mailbox.records("contacts")) == 26


def test_records_the_user_untracked_are_not_copied_by_a_reinstall() -> None:
    """Found by the hypothesis machine: after a reinstall over an emptied folder, the untracked
    marks come back as untracked links; the first run must not take the page-by-page path
    (which plans without links) and bring the untracked record back."""
    crm, mailbox, store, settings = world(5)
    sync_kind(CONTACTS, crm, mailbox, store, settings)
    items = mailbox.records("contacts")
    untracked_key = sorted(i.key for i in items.values())[0]
    for item_id, item in list(items.items()):  # the user untracks one, then empties the folder
        if item.key == untracked_key:
            mailbox.remove("contacts", item_id)
    sync_kind(CONTACTS, crm, mailbox, store, settings)  # the untracked mark goes to the mailbox
    assert untracked_key in store.untracked_ids("contacts")
    for item_id in list(mailbox.records("contacts")):
        mailbox.remove("contacts", item_id)
    fresh = MemoryLinkStore()  # a reinstall
    result = sync_kind(CONTACTS, crm, mailbox, fresh, settings)
    assert untracked_key in fresh.untracked_ids("contacts")
    keys = {i.key for i in mailbox.records("contacts").values()}
    assert untracked_key not in keys and result.errors == 0
