"""A crash during replay (the process dies between the call and the journal's mark, or just
before the call) never duplicates and never drops a queued change: the next go-online finishes
the queue, and the server ends as if nothing had happened (DESIGN.md §5, issue 12)."""

from __future__ import annotations

import pytest

from sync.offline.service import OfflineService
from sync.store.models import OfflineChange
from tests.offline.conftest import Sandbox


class Crash(BaseException):
    """The process dying: not an Exception, so nothing on the way catches it."""


def _count(sandbox: Sandbox, lastname: str) -> int:
    with sandbox.http() as http:
        response = http.get(
            sandbox.api + f"contacts?$select=contactid&$filter=lastname eq '{lastname}'"
        )
    return len(response.json()["value"])


@pytest.mark.parametrize(
    ("at", "point"),
    [(0, "after-call"), (1, "before-call"), (1, "after-call"), (2, "after-call")],
)
def test_crash_at_any_item_then_resume(
    service: OfflineService, running: Sandbox, point: str, at: int
) -> None:
    service.go_offline()
    store = service.store()
    first, second = (r.id for r in store.list("contacts", page_size=2).records)
    marker = f"Crash-{point}-{at}"
    created = store.create("contacts", {"firstname": "New", "lastname": marker})
    store.update("contacts", created, {"jobtitle": "after create"})
    store.update("contacts", first, {"jobtitle": marker})
    store.delete("contacts", second)
    seen: list[int] = []

    def fault(where: str, item: OfflineChange) -> None:
        if where == point:
            seen.append(item.id)
            if len(seen) == at + 1:
                raise Crash

    with pytest.raises(Crash):
        service.go_online(fault=fault)
    assert store.pending()  # the crashed item (at least) is still queued or sending
    replayed, refreshed = service.go_online()
    assert refreshed is not None and store.pending() == []
    assert replayed.failed == 0 and replayed.conflicts == 0
    assert _count(running, marker) == 1  # no duplicate of the create
    with running.http() as http:
        made = http.get(running.api + f"contacts({created})").json()
        assert made["jobtitle"] == "after create"  # nothing dropped
        assert http.get(running.api + f"contacts({first})").json()["jobtitle"] == marker
        assert http.get(running.api + f"contacts({second})").status_code == 404
