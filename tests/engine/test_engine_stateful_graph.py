"""The engine's promises over a mailbox that reads like Microsoft Graph's delta (issue 9).

The whole hypothesis machine of test_engine_stateful.py — user edits on both sides, syncs with
crashes, throttling and another writer, reinstalls, expired tokens — runs again with the
mailbox side of `sync.memory.GraphDeltaMailbox`: deletions reported for items made and deleted
between two syncs, the same item again on a later page, and a `410 Gone` (TokenExpired) that
may come in the middle of the paging, after which the engine must read everything again and
still make no duplicate and lose nothing.
"""

from __future__ import annotations

from hypothesis import settings as hsettings
from hypothesis.stateful import rule

from sync.memory import GraphDeltaMailbox
from tests.engine.test_engine_stateful import SyncMachine


class GraphDeltaSyncMachine(SyncMachine):
    def make_mailbox(self) -> GraphDeltaMailbox:
        return GraphDeltaMailbox(page_size=3)

    @rule()
    def delta_link_expires_while_paging(self) -> None:
        """The next delta read of the mailbox answers 410 after its first page."""
        assert isinstance(self.mailbox, GraphDeltaMailbox)
        self.mailbox.expire_while_paging = True


GraphDeltaSyncMachine.TestCase.settings = hsettings(
    max_examples=300, stateful_step_count=20, deadline=None
)
TestGraphDeltaSync = GraphDeltaSyncMachine.TestCase


def test_the_graph_memory_mailbox_reads_like_a_delta() -> None:
    """What the machine relies on, checked once: a made-and-deleted item comes as a deletion,
    a page's last item comes again on the next page, and a 410 while paging expires the
    token so that reading from it again is refused too."""
    from sync.sides import Deleted, TokenExpired, Upsert

    box = GraphDeltaMailbox(page_size=2)
    [start] = [p.token for p in box.read_changes("contacts", None)]
    assert start is not None
    made = [box.put("contacts", {"given_name": n}).id for n in ("a", "b", "c")]
    gone = box.put("contacts", {"given_name": "short-lived"}).id
    box.remove("contacts", gone)
    pages = list(box.read_changes("contacts", start))
    seen = [c.id for p in pages for c in p.changes]
    assert seen == [made[0], made[1], made[1], made[2], gone]
    assert isinstance(pages[-1].changes[-1], Deleted)
    assert all(isinstance(c, Upsert) for c in pages[0].changes)
    assert [p.token is not None for p in pages] == [False, True]

    box.expire_while_paging = True
    reader = box.read_changes("contacts", start)
    next(reader)
    try:
        next(reader)
    except TokenExpired:
        pass
    else:
        raise AssertionError("a 410 was expected while paging")
    try:
        list(box.read_changes("contacts", start))
    except TokenExpired:
        return
    raise AssertionError("the expired token was accepted again")
