"""Untracked marks in the mailbox (the hidden folder's property), against the sandbox EWS."""

from __future__ import annotations

from typing import Any

import pytest

from sync.mailbox import ews_marks
from sync.mailbox.claims import hidden_folder
from sync.mailbox.ews import EwsSide
from tests.mailbox.ews_helpers import CAROL, connect

IDS = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(2_000)]


def side(ews: Any, scope: str) -> EwsSide:
    made = EwsSide(connect(ews, CAROL))
    made.marks_scope = scope
    return made


def test_marks_are_kept_per_kind_and_organization(ews: Any) -> None:
    contoso, fabrikam = side(ews, "org-contoso"), side(ews, "org-fabrikam")
    contoso.save_untracked("contacts", IDS)  # 2,000 ids in one property
    contoso.save_untracked("tasks", IDS[:1])

    again = side(ews, "org-contoso")  # another install of the same user
    assert again.load_untracked("contacts") == set(IDS)
    assert again.load_untracked("tasks") == set(IDS[:1])
    assert again.load_untracked("appointments") == set()
    assert fabrikam.load_untracked("contacts") == set()  # another organization's marks

    contoso.save_untracked("contacts", [])
    again.begin_run()  # the marks are read once a run, for every kind
    assert again.load_untracked("contacts") == set()
    assert again.load_untracked("tasks") == set(IDS[:1])


def test_a_save_that_loses_the_changekey_race_reads_again_and_keeps_both(
    ews: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two kinds saving at once: the second save is stale, is redone, and loses nothing."""
    one, two = side(ews, "org-race"), side(ews, "org-race")
    one.save_untracked("tasks", ["t1"])
    real = hidden_folder
    calls = 0

    def stale_then_real(conn: Any, create: bool = True) -> Any:
        nonlocal calls
        calls += 1
        folder = real(conn, create)
        if calls == 1:  # between this read and its save, another kind saves
            two.save_untracked("contacts", ["c1"])
        return folder

    monkeypatch.setattr(ews_marks, "hidden_folder", stale_then_real)
    one.save_untracked("appointments", ["a1"])

    assert calls == 3  # one's read, two's read, and one's read again after its stale save
    fresh = side(ews, "org-race")
    assert fresh.load_untracked("tasks") == {"t1"}
    assert fresh.load_untracked("contacts") == {"c1"}
    assert fresh.load_untracked("appointments") == {"a1"}


def test_a_damaged_value_reads_as_no_marks() -> None:
    assert ews_marks.decode("not base64 at all!", "org") == {}
    assert ews_marks.decode(ews_marks.encode("org", {"contacts": ["x"]}), "org") == {
        "contacts": ["x"]
    }


def test_the_marks_of_every_kind_take_one_look_a_run(ews: Any) -> None:
    """An install's first run imports the marks of four kinds: one look at the hidden folder,
    the requests of a single kind's; the next run looks again."""
    side(ews, "org-once").save_untracked("tasks", ["t9"])
    reader = side(ews, "org-once")
    reader.begin_run()
    ews.log.clear()
    assert reader.load_untracked("tasks") == {"t9"}
    one_kind = len(ews.log.snapshot())
    reader.begin_run()
    ews.log.clear()
    found = {k: reader.load_untracked(k) for k in ("contacts", "tasks", "appointments", "x")}
    assert found["tasks"] == {"t9"} and found["contacts"] == set()
    assert one_kind >= 1  # the first look searches for the folder
    assert [e.target for e in ews.log.snapshot()] == ["GetFolder"]  # then by its id, once
