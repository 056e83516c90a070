"""The in-memory sides behave like the servers: versions, deltas, tokens, keys, failures."""

from __future__ import annotations

import pytest

from sync.engine import EngineSettings, MemoryLinkStore, sync_kind
from sync.kinds.contacts import CONTACTS
from sync.memory import Crash, MemoryCrm, MemoryMailbox
from sync.sides import (
    Conflict,
    CreateOp,
    Deleted,
    DeleteOp,
    Duplicate,
    NotFound,
    Throttled,
    TokenExpired,
    UpdateOp,
    Upsert,
    Written,
)


def _drain(side: MemoryCrm | MemoryMailbox, token: str | None) -> tuple[list, str | None]:
    changes, last = [], None
    for page in side.read_changes("contacts", token):
        changes.extend(page.changes)
        last = page.token if page.last else last
    return changes, last


def test_delta_returns_current_state_once_per_record_and_deletions() -> None:
    crm = MemoryCrm(me="me", page_size=2)
    a = crm.put("contacts", {"lastname": "A"})
    b = crm.put("contacts", {"lastname": "B"})
    full, token = _drain(crm, None)
    assert {c.id for c in full} == {a.id, b.id}
    crm.edit("contacts", a.id, {"lastname": "A2"})
    crm.edit("contacts", a.id, {"lastname": "A3"})
    crm.remove("contacts", b.id)
    delta, token2 = _drain(crm, token)
    assert delta == [Upsert(a.id, crm.records("contacts")[a.id].version,
                            {"lastname": "A3", "_ownerid_value": "me", "statecode": 0}),
                     Deleted(b.id)]  # fmt: skip
    assert _drain(crm, token2)[0] == []
    crm.expire_tokens("contacts")
    with pytest.raises(TokenExpired):
        _drain(crm, token2)


def test_writes_check_versions_keys_and_existence() -> None:
    crm, mailbox = MemoryCrm(me="me"), MemoryMailbox()
    [created] = crm.write("contacts", [CreateOp("guid-1", {"lastname": "A"})])
    assert isinstance(created, Written) and created.id == "guid-1"
    results = crm.write(
        "contacts",
        [
            CreateOp("guid-1", {"lastname": "again"}),
            UpdateOp("guid-1", "stale", {"lastname": "B"}),
            UpdateOp("guid-1", created.version, {"lastname": "B"}),
            DeleteOp("missing", None),
        ],
    )
    assert [type(r) for r in results] == [Duplicate, Conflict, Written, NotFound]
    assert list(crm.find_by_key("contacts", ["guid-1", "nope"])) == ["guid-1"]
    [item] = mailbox.write("contacts", [CreateOp("guid-1", {"surname": "A"})])
    assert isinstance(item, Written) and item.id != "guid-1"
    assert mailbox.find_by_key("contacts", ["guid-1"])["guid-1"].id == item.id


def test_failure_hook_answers_or_crashes() -> None:
    mailbox = MemoryMailbox()

    def hook(where: str, kind: str, op: object) -> Throttled | None:
        if where == "after":
            raise Crash("died after the write")
        return Throttled("busy", retry_after=5) if isinstance(op, UpdateOp) else None

    mailbox.hook = hook
    assert mailbox.write("contacts", [UpdateOp("x", None, {})]) == [Throttled("busy")]
    with pytest.raises(Crash):
        mailbox.write("contacts", [CreateOp("k", {"surname": "A"})])
    assert len(mailbox.records("contacts")) == 1  # the write happened before the crash


def test_progress_is_reported_per_batch() -> None:
    crm, mailbox = MemoryCrm(me="me"), MemoryMailbox()
    for i in range(5):
        crm.put("contacts", {"lastname": f"C{i}"})
    seen: list[tuple[int, int, str]] = []
    sync_kind(CONTACTS, crm, mailbox, MemoryLinkStore(), EngineSettings(me="me", batch_size=2),
              progress=lambda done, total, phase: seen.append((done, total, phase)))  # fmt: skip
    assert seen == [(0, 0, "read"), (0, 5, "apply"), (2, 5, "apply"), (4, 5, "apply"),
                    (5, 5, "apply")]  # fmt: skip
