"""EwsSide reads under faults and their cost: dropped connections are retried for reads only,
find_by_key's FindItem chunks, created items' stored fields, one calendar read shared by two
readers. Against the sandbox EWS over HTTPS; request counts come from the server's log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from exchangelib import errors as ews_errors

from sandbox.faults import Fault, FaultProfile
from sync.mailbox.ews import KEY_CHUNK, EwsSide
from sync.mailbox.ews_connection import side_error
from sync.mailbox.ews_readcache import ReadReuse
from sync.sides import (
    CreateOp,
    Deleted,
    DeleteOp,
    Invalid,
    Page,
    Unavailable,
    UpdateOp,
    Upsert,
    Written,
)
from tests.mailbox.ews_helpers import BOB, CAROL, DAVE, connect, read_all

QUICK = (0.01, 0.01)
"""Retry pauses for the tests (three attempts, as the default, without the waiting)."""


@pytest.fixture
def faults(ews: Any) -> Iterator[FaultProfile]:
    """The server's fault profile, cleared after the test."""
    yield ews.faults
    ews.faults.clear()


def side_for(server: Any, upn: str, **options: Any) -> EwsSide:
    return EwsSide(connect(server, upn, read_retry_waits=QUICK), **options)


def ops_logged(server: Any, op: str) -> list[int]:
    """The HTTP statuses of the logged requests of one SOAP operation (0: dropped)."""
    return [e.status for e in server.log if e.target == op]


# --- dropped connections -----------------------------------------------------------------------


def test_a_dropped_connection_is_unavailable_not_invalid() -> None:
    dropped = ews_errors.ErrorTimeoutExpired(
        "Reraised from ConnectionError(('Connection aborted.', RemoteDisconnected()))"
    )
    error = side_error(dropped)
    assert isinstance(error, Unavailable) and error.code == "ErrorTimeoutExpired"
    assert isinstance(side_error(ews_errors.ErrorInvalidPropertySet("bad")), Invalid)


@pytest.mark.parametrize(
    "op", ["GetFolder", "SyncFolderItems", "GetItem", "FindItem"], ids=str.lower
)
def test_a_read_whose_connection_drops_twice_is_sent_again(
    ews: Any, faults: FaultProfile, op: str
) -> None:
    writer = side_for(ews, CAROL)
    [made] = writer.write("tasks", [CreateOp(f"drop-{op}", {"subject": op})])
    assert isinstance(made, Written)
    side = side_for(ews, CAROL)  # a new side: its GetFolder is still to come
    ews.log.clear()
    faults.set(Fault("drop", every=1, times=2, match=op))

    changes, token = read_all(side, "tasks", None)
    found = side.find_by_key("tasks", [f"drop-{op}"])

    assert token and made.id in {c.id for c in changes}
    assert found[f"drop-{op}"].id == made.id
    assert ops_logged(ews, op)[:3] == [0, 0, 200]  # two drops, then the third attempt


def test_a_read_that_keeps_failing_is_unavailable(ews: Any, faults: FaultProfile) -> None:
    side = side_for(ews, CAROL)
    side.folder("tasks")
    ews.log.clear()
    faults.set(Fault("drop", every=1, match="SyncFolderItems"))
    with pytest.raises(Unavailable):
        read_all(side, "tasks", None)
    assert ops_logged(ews, "SyncFolderItems") == [0, 0, 0]  # three attempts, no more


def test_a_create_whose_connection_drops_is_not_sent_again(ews: Any, faults: FaultProfile) -> None:
    side = side_for(ews, CAROL)
    side.folder("tasks")
    ews.log.clear()
    faults.set(Fault("drop", every=1, times=1, match="CreateItem"))
    results = side.write("tasks", [CreateOp("drop-create-1", {"subject": "Once"})])
    assert isinstance(results[0], Unavailable)
    assert ops_logged(ews, "CreateItem") == [0]
    # The engine's retry finds nothing made (the drop came before the server acted) and creates.
    assert side.find_by_key("tasks", ["drop-create-1"]) == {}


# --- find_by_key --------------------------------------------------------------------------------


def test_find_by_key_asks_for_200_keys_a_call(ews: Any) -> None:
    side = side_for(ews, DAVE)
    made = side.write("contacts", [CreateOp(f"chunk-{n}", {"surname": f"S{n}"}) for n in range(5)])
    assert all(isinstance(r, Written) for r in made)
    keys = [f"chunk-{n}" for n in range(450)]
    ews.log.clear()

    found = side.find_by_key("contacts", keys)

    assert KEY_CHUNK == 200
    assert sorted(found) == [f"chunk-{n}" for n in range(5)]
    assert len(ops_logged(ews, "FindItem")) == 3  # 200 + 200 + 50 keys
    assert all(status == 200 for status in ops_logged(ews, "FindItem"))


# --- created items' fields ----------------------------------------------------------------------


def test_created_items_come_back_with_the_fields_exchange_stored(ews: Any) -> None:
    side = side_for(ews, BOB)
    ews.log.clear()
    results = side.write(
        "tasks", [CreateOp(f"stored-{n}", {"subject": f"Bare {n}"}) for n in range(3)]
    )
    assert len(ops_logged(ews, "GetItem")) == 1  # one read-back for the whole batch
    written = [r for r in results if isinstance(r, Written)]
    assert len(written) == 3
    stored = side.read("tasks", [w.id for w in written])
    for w in written:
        assert w.fields == stored[w.id].fields and w.version == stored[w.id].version
        assert w.fields["subject"].startswith("Bare")
        # Exchange's defaults, which the CRM never sent:
        assert (w.fields["importance"], w.fields["percent_complete"]) == ("Normal", 0)


def test_a_failed_read_back_leaves_the_creates_done(ews: Any, faults: FaultProfile) -> None:
    side = side_for(ews, BOB)
    side.folder("tasks")
    faults.set(Fault("drop", every=1, times=3, match="GetItem"))
    [result] = side.write("tasks", [CreateOp("stored-nofields", {"subject": "Made"})])
    assert isinstance(result, Written) and result.fields == {} and result.version
    faults.clear()
    assert side.find_by_key("tasks", ["stored-nofields"])["stored-nofields"].id == result.id


# --- one calendar read for two readers --------------------------------------------------------


def test_a_second_read_from_the_same_state_is_answered_without_a_call(ews: Any) -> None:
    side = side_for(ews, DAVE)
    side.write("appointments", [CreateOp("share-1", APPOINTMENT)])
    _, token = read_all(side, "appointments", None)
    ews.log.clear()

    first = list(side.read_changes("appointments", token))
    second = list(side.read_changes("appointments", token))  # the series' kind, same state
    assert second == first and first[-1].token
    assert len(ops_logged(ews, "SyncFolderItems")) == 1

    list(side.read_changes("appointments", token))  # a third reader: served once only
    assert len(ops_logged(ews, "SyncFolderItems")) == 2


def test_a_write_in_between_makes_the_next_reader_read_again(ews: Any) -> None:
    side = side_for(ews, DAVE)
    [made] = side.write("appointments", [CreateOp("share-2", APPOINTMENT)])
    assert isinstance(made, Written)
    _, token = read_all(side, "appointments", None)
    list(side.read_changes("appointments", token))
    side.write("appointments", [UpdateOp(made.id, None, {"location": "Room 9"})])
    ews.log.clear()

    changes, _ = read_all(side, "appointments", token)

    assert len(ops_logged(ews, "SyncFolderItems")) == 1
    assert [c.fields["location"] for c in changes if c.id == made.id] == ["Room 9"]


def test_a_new_run_never_gets_the_last_runs_read(ews: Any) -> None:
    side = side_for(ews, DAVE)
    side.write("contacts", [CreateOp("run-1", {"surname": "Before"})])
    _, token = read_all(side, "contacts", None)
    list(side.read_changes("contacts", token))  # the last read of a run (kept)
    other = side_for(ews, DAVE)  # the user, in Outlook, between two runs
    other.write("contacts", [CreateOp("run-2", {"surname": "Between"})])
    ews.log.clear()

    side.begin_run()
    changes, _ = read_all(side, "contacts", token)

    assert len(ops_logged(ews, "SyncFolderItems")) == 1
    assert [c.fields["surname"] for c in changes if isinstance(c, Upsert)] == ["Between"]


def test_items_the_caller_holds_at_that_change_key_are_not_fetched(ews: Any) -> None:
    side = side_for(ews, CAROL)
    made = side.write("tasks", [CreateOp(f"held-{i}", {"subject": f"T{i}"}) for i in range(3)])
    ids = [r.id for r in made if isinstance(r, Written)]
    _, token = read_all(side, "tasks", None)
    side.write("tasks", [UpdateOp(ids[0], None, {"subject": "Changed"})])
    side.write("tasks", [DeleteOp(ids[1], None)])
    side.begin_run()
    asked: list[dict[str, str]] = []

    def holds_all(versions: Any) -> set[str]:
        asked.append(dict(versions))
        return set(versions)

    ews.log.clear()
    pages = list(side.read_changes("tasks", token, holds_all))
    assert [c for p in pages for c in p.changes] == [Deleted(ids[1])]  # deletes always come
    assert list(asked[0]) == [ids[0]] and ops_logged(ews, "GetItem") == []

    side.begin_run()
    ews.log.clear()
    changes, _ = read_all(side, "tasks", token)  # nothing known: the update is read in full
    assert [c.fields["subject"] for c in changes if isinstance(c, Upsert)] == ["Changed"]
    assert len(ops_logged(ews, "GetItem")) == 1
    ews.log.clear()
    list(side.read_changes("tasks", None, holds_all))  # a full read: nothing is left out
    assert len(ops_logged(ews, "GetItem")) == 1


def test_full_reads_are_never_shared(ews: Any) -> None:
    side = side_for(ews, DAVE)
    read_all(side, "appointments", None)
    ews.log.clear()
    read_all(side, "appointments", None)
    assert len(ops_logged(ews, "SyncFolderItems")) == 1


APPOINTMENT: dict[str, Any] = {
    "subject": "Shared read",
    "start": "2026-03-02T08:00:00Z",
    "end": "2026-03-02T09:00:00Z",
    "timezone": "UTC",
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def page(n: int, token: str = "s2") -> Page:
    return Page([Upsert(f"id{i}", "v", {}) for i in range(n)], token)


def test_reuse_is_once_fresh_small_and_incremental_only() -> None:
    clock = Clock()
    reuse = ReadReuse(seconds=60, max_changes=3, clock=clock)
    reuse.keep("tasks", "s1", [page(2)])
    assert reuse.take("tasks", "other") is None
    assert reuse.take("tasks", "s1") == (page(2),)
    assert reuse.take("tasks", "s1") is None  # given out once

    reuse.keep("tasks", "s1", [page(2)])
    clock.now = 61
    assert reuse.take("tasks", "s1") is None  # too old

    reuse.keep("tasks", "s1", [page(2), page(2)])  # 4 changes > 3
    reuse.keep("tasks", None, [page(1)])  # a full read
    assert reuse.take("tasks", "s1") is None and reuse.take("tasks", None) is None

    reuse.keep("tasks", "s1", [page(1)])
    reuse.forget()
    assert reuse.take("tasks", "s1") is None
    assert ReadReuse(seconds=0).take("tasks", "s1") is None
