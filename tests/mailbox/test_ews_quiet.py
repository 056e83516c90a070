"""A quiet run in a new process: one SyncFolderItems per folder, no folder lookups (issue 13).

The tokens EwsSide hands the engine carry the folder's id, so a new side (a new process) reads
from it without GetFolder; a saved id that no longer works is looked up again."""

from __future__ import annotations

from typing import Any

from sync.mailbox.ews import FOLDER_MARK, EwsSide
from sync.sides import CreateOp, Written
from tests.mailbox.ews_helpers import BOB, connect, read_all


def targets(ews: Any) -> list[str]:
    return [e.target for e in ews.log.snapshot()]


def test_a_new_side_reads_from_a_saved_token_without_folder_lookups(ews: Any) -> None:
    first = EwsSide(connect(ews, BOB))
    for kind in ("contacts", "tasks"):
        assert isinstance(
            first.write(kind, [CreateOp(f"quiet-{kind}", {"subject": "s"})])[0], Written
        )
    tokens = {
        kind: read_all(first, kind, None)[1] for kind in ("contacts", "tasks", "appointments")
    }
    assert all(t and t.startswith(FOLDER_MARK) for t in tokens.values())

    fresh = EwsSide(connect(ews, BOB))  # what a new process makes
    fresh.begin_run()
    ews.log.clear()
    for kind, token in tokens.items():
        changes, again = read_all(fresh, kind, token)
        assert changes == [] and again == token  # nothing changed: the same state comes back
    assert targets(ews) == ["SyncFolderItems"] * 3


def test_a_stale_folder_id_is_looked_up_again(ews: Any) -> None:
    side = EwsSide(connect(ews, BOB))
    made = side.write("tasks", [CreateOp("stale-folder", {"subject": "kept"})])[0]
    assert isinstance(made, Written)
    _, token = read_all(side, "tasks", None)
    assert token is not None
    state = token.split("\n", 1)[1]
    stale = f"{FOLDER_MARK}AAMkAGI2TG93AAA=\n{state}"  # a folder id that does not exist
    fresh = EwsSide(connect(ews, BOB))
    ews.log.clear()
    changes, again = read_all(fresh, "tasks", stale)
    assert changes == [] and again == token  # read from the real folder at the saved state
    seen = targets(ews)  # refused, the lookup (the root and the folder), the read
    assert seen[0] == seen[-1] == "SyncFolderItems" and set(seen[1:-1]) == {"GetFolder"}
    made2 = fresh.write("tasks", [CreateOp("stale-folder-2", {"subject": "there"})])[0]
    assert isinstance(made2, Written)
    assert "stale-folder-2" in fresh.find_by_key("tasks", ["stale-folder-2"])


def test_a_bare_sync_state_still_works(ews: Any) -> None:
    """Tokens saved before the folder id was kept in them are bare sync states."""
    side = EwsSide(connect(ews, BOB))
    _, token = read_all(side, "contacts", None)
    assert token is not None
    bare = token.split("\n", 1)[1]
    changes, again = read_all(EwsSide(connect(ews, BOB)), "contacts", bare)
    assert changes == [] and again == token


def test_changes_read_from_a_saved_token_need_no_folder_lookup(ews: Any) -> None:
    """The changed items' GetItem (calendar: exchangelib's items) needs no folder either."""
    first = EwsSide(connect(ews, BOB))
    _, token = read_all(first, "appointments", None)
    when = {"start": "2026-04-01T08:00:00Z", "end": "2026-04-01T09:00:00Z"}
    made = first.write("appointments", [CreateOp("quiet-cal", {"subject": "new", **when})])[0]
    assert isinstance(made, Written)
    fresh = EwsSide(connect(ews, BOB))
    ews.log.clear()
    changes, _ = read_all(fresh, "appointments", token)
    assert [c.id for c in changes] == [made.id] and changes[0].fields["subject"] == "new"
    assert targets(ews) == ["SyncFolderItems", "GetItem"]
