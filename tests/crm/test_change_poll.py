"""CRM changes heard by polling change tracking (issue 9 part 4), against the sandbox Dataverse.

With the delta link a sync saved (use-change-tracking-synchronize-data-external-systems.md),
a quiet poll is one request per kind that answers no row; a change is reported once for that
token (not again on every poll until the sync saves the next one); an expired token is a
change too (the sync reads everything again). Nothing is saved by the poll.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

from sync.crm.change_poll import CrmChangePoll
from sync.crm.side import DataverseSide
from sync.watcher import ChangeBatch
from tests.crm.conftest import Sandbox


def _saved_token(side: DataverseSide, kind: str) -> str:
    token = None
    for page in side.read_changes(kind, None):
        token = page.token or token
    assert token is not None
    return token


def _polls(poll: CrmChangePoll, count: int) -> Iterator[ChangeBatch]:
    """The batches of `count` polls (the poll's pause is made instant)."""
    done = threading.Event()
    seen = 0
    original = threading.Event()

    class Counting:
        def is_set(self) -> bool:
            return done.is_set() or original.is_set()

        def wait(self, _seconds: float) -> bool:
            nonlocal seen
            seen += 1
            if seen >= count:
                done.set()
            return False

        def clear(self) -> None:
            original.clear()

        def set(self) -> None:
            original.set()

    poll._interrupted = Counting()  # type: ignore[assignment]
    yield from poll.changes()


def test_quiet_polls_cost_one_request_per_kind_and_a_change_is_told_once(
    sandbox: Sandbox,
) -> None:
    with sandbox.client() as client:
        side = DataverseSide(client, page_size=1)
        tokens = {"contacts": _saved_token(side, "contacts"), "tasks": _saved_token(side, "tasks")}
        poll = CrmChangePoll(side, ["contacts", "tasks"], tokens.get)
        before = client.request_count
        assert list(_polls(poll, 3)) == []
        assert client.request_count - before == 3 * 2  # 3 polls x 2 kinds, nothing else

        client.create("contacts", {"firstname": "Polly", "lastname": uuid.uuid4().hex[:8]})
        batches = list(_polls(poll, 3))
        assert [b.kinds for b in batches] == [frozenset({"contacts"})]  # once, not 3 times
        assert batches[0].at is not None

        # the sync saves the next token: quiet again
        tokens["contacts"] = _saved_token(side, "contacts")
        assert list(_polls(poll, 2)) == []


def test_an_expired_token_is_a_change_and_kinds_never_synced_are_left_alone(
    sandbox: Sandbox,
) -> None:
    with sandbox.client() as client:
        side = DataverseSide(client, page_size=1)
        good = _saved_token(side, "contacts")
        expired = good.replace("$deltatoken=", "$deltatoken=999999999")
        tokens = {"contacts": expired, "tasks": None}
        poll = CrmChangePoll(side, ["contacts", "tasks"], tokens.get)
        before = client.request_count
        batches = list(_polls(poll, 1))
        assert [b.kinds for b in batches] == [frozenset({"contacts"})]
        assert client.request_count - before == 1  # contacts only: tasks has no token yet
