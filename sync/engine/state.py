"""What the engine persists between runs, and the protocol it persists it through.

A link joins one CRM record and one mailbox item and remembers, per side, the version, the
fingerprint and the canonical values agreed at the last sync (`base`), the common ancestor of
a three-way merge. Everything a batch decided (links, parked items, conflicts) is committed in
one local transaction through `LinkStore.commit_batch`; tokens are saved separately, last.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sync.messages import N_, Msg, kind_word

SYNCED = "synced"
PENDING_CRM = "pending-crm"
"""A CRM create was decided (its GUID stored here) but not yet confirmed."""
DELETING = "deleting"
"""We decided to remove the mailbox copy: if it is gone next time, we did it, not the user."""
UNTRACKED = "untracked"
"""The mailbox copy was deleted by the user: the CRM record stays and is not sent back."""
UNSETTLED = (PENDING_CRM, DELETING)
MADE_SIDE = "made-in-mailbox"
"""Token row holding (JSON) the mailbox items linked after the saved mailbox position, which
the next run checks (sync.engine.run: `_check_made`). Added to by each batch's commit."""


@dataclass(frozen=True)
class LinkRow:
    crm_id: str
    mailbox_id: str | None
    crm_version: str | None = None
    mailbox_version: str | None = None
    crm_fingerprint: str | None = None
    mailbox_fingerprint: str | None = None
    base: Mapping[str, Any] | None = None
    """{"crm": canonical values, "mailbox": canonical values} at the last sync."""
    state: str = SYNCED


@dataclass(frozen=True)
class ItemFailure:
    """A failed item, parked: retried (both sides re-read) once `next_attempt_at` is due."""

    crm_id: str
    mailbox_id: str | None
    side: str
    operation: str
    message: str
    retry_after: float = 0.0


@dataclass(frozen=True)
class ParkedItem:
    crm_id: str
    mailbox_id: str | None
    attempts: int
    next_attempt_at: datetime


@dataclass(frozen=True)
class ConflictRow:
    crm_id: str
    mailbox_id: str | None
    field: str
    crm_value: Any
    mailbox_value: Any
    winner: str
    reason: str
    title: str = ""
    id: int | None = None
    reversed: bool = False


@dataclass
class Batch:
    """What one batch of applied actions changes in the store, committed atomically."""

    upserts: list[LinkRow] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)
    """crm ids whose link is gone."""
    failures: list[ItemFailure] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    """crm ids whose parked errors are settled."""
    conflicts: list[ConflictRow] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    """Mailbox items newly linked by this batch (made by us, or the source of a CRM record),
    added to the MADE_SIDE list in the same commit: if the run dies before its tokens are
    saved, the next run reads from the old position, which may not mention them."""

    def __bool__(self) -> bool:
        return bool(
            self.upserts
            or self.removals
            or self.failures
            or self.resolved
            or self.conflicts
            or self.made
        )


class LinkStore(Protocol):
    """Where links, tokens, parked items, conflicts and alerts of one organization live."""

    def load_links(self, kind: str) -> list[LinkRow]: ...

    def find_links(
        self, kind: str, crm_ids: Collection[str], mailbox_ids: Collection[str]
    ) -> list[LinkRow]:
        """Links whose CRM id or mailbox id is among those given."""
        ...

    def mailbox_items_held(self, kind: str, versions: Mapping[str, str]) -> set[str]:
        """Of these mailbox item ids, those a settled link holds at exactly that version."""
        ...

    def unsettled_links(self, kind: str) -> list[LinkRow]:
        """Links waiting for a create or a delete to be confirmed."""
        ...

    def count_links(self, kind: str) -> int:
        """Links still syncing (untracked ones not counted)."""
        ...

    def untracked_ids(self, kind: str) -> set[str]:
        """CRM ids of the untracked links."""
        ...

    def get_token(self, kind: str, side: str) -> str | None: ...

    def save_tokens(self, kind: str, tokens: Mapping[str, str | None]) -> None: ...

    def commit_batch(self, kind: str, batch: Batch, now: datetime) -> None: ...

    def parked_items(self, kind: str) -> list[ParkedItem]: ...

    def conflicts(self, kind: str) -> list[ConflictRow]: ...

    def mark_reversed(self, conflict_id: int) -> None: ...

    def alert(
        self, code: str, title: Msg | str, message: Msg | str = "", subject: str = ""
    ) -> None: ...

    def resolve_alert(self, code: str, subject: str = "") -> None: ...


def add_made(stored: str | None, made: Sequence[str]) -> str:
    """The MADE_SIDE list with `made` added."""
    known: list[str] = json.loads(stored or "[]")
    seen = set(known)
    return json.dumps(known + [m for m in dict.fromkeys(made) if m not in seen])


def backoff(attempts: int, retry_after: float, base: float = 60.0, cap: float = 6 * 3600) -> float:
    """Seconds to wait before retrying an item: doubling from `base`, at least `retry_after`."""
    return max(retry_after, min(cap, base * 2 ** max(0, attempts - 1)))


ALERT_AFTER = 5
"""Failures of one item before the user is alerted."""


class MemoryLinkStore:
    """A LinkStore in memory, for tests and benchmarks (state survives "crashes" of a run)."""

    def __init__(self, alert_after: int = ALERT_AFTER) -> None:
        self.links: dict[str, dict[str, LinkRow]] = {}
        self.tokens: dict[tuple[str, str], str | None] = {}
        self.parked: dict[str, dict[str, ParkedItem]] = {}
        self.conflict_rows: dict[str, list[ConflictRow]] = {}
        self.alerts: list[tuple[str, str, str, str]] = []
        self.alert_after = alert_after
        self._ids = itertools.count(1)
        self.commits = 0

    def load_links(self, kind: str) -> list[LinkRow]:
        return list(self.links.get(kind, {}).values())

    def find_links(
        self, kind: str, crm_ids: Collection[str], mailbox_ids: Collection[str]
    ) -> list[LinkRow]:
        crm_set, mailbox_set = set(crm_ids), set(mailbox_ids)
        return [
            link
            for link in self.links.get(kind, {}).values()
            if link.crm_id in crm_set or (link.mailbox_id and link.mailbox_id in mailbox_set)
        ]

    def mailbox_items_held(self, kind: str, versions: Mapping[str, str]) -> set[str]:
        links = self.links.get(kind, {}).values()
        return {
            item_id
            for lk in links
            if lk.state == SYNCED and (item_id := lk.mailbox_id) is not None
            and item_id in versions and versions[item_id] == lk.mailbox_version
        }  # fmt: skip

    def unsettled_links(self, kind: str) -> list[LinkRow]:
        return [lk for lk in self.links.get(kind, {}).values() if lk.state in UNSETTLED]

    def count_links(self, kind: str) -> int:
        return sum(lk.state != UNTRACKED for lk in self.links.get(kind, {}).values())

    def untracked_ids(self, kind: str) -> set[str]:
        return {lk.crm_id for lk in self.links.get(kind, {}).values() if lk.state == UNTRACKED}

    def get_token(self, kind: str, side: str) -> str | None:
        return self.tokens.get((kind, side))

    def save_tokens(self, kind: str, tokens: Mapping[str, str | None]) -> None:
        for side, token in tokens.items():
            self.tokens[(kind, side)] = token

    def commit_batch(self, kind: str, batch: Batch, now: datetime) -> None:
        links = self.links.setdefault(kind, {})
        parked = self.parked.setdefault(kind, {})
        for crm_id in batch.removals:
            links.pop(crm_id, None)
        for row in batch.upserts:
            links[row.crm_id] = copy.deepcopy(row)
        for crm_id in batch.resolved:
            if crm_id in parked:
                parked.pop(crm_id)
                self.resolve_alert("item-failed", f"{kind}:{crm_id}")
        for failure in batch.failures:
            old = parked.get(failure.crm_id)
            attempts = (old.attempts if old else 0) + 1
            wait = backoff(attempts, failure.retry_after)
            parked[failure.crm_id] = ParkedItem(
                failure.crm_id, failure.mailbox_id, attempts, now + timedelta(seconds=wait)
            )
            if attempts == self.alert_after:
                self.alert("item-failed",
                           N_("An item keeps failing (%(kind)s)", kind=kind_word(kind)),
                           failure.message, subject=f"{kind}:{failure.crm_id}")  # fmt: skip
        rows = self.conflict_rows.setdefault(kind, [])
        for conflict in batch.conflicts:
            rows.append(_with_id(conflict, next(self._ids)))
        if batch.made:
            self.tokens[(kind, MADE_SIDE)] = add_made(
                self.tokens.get((kind, MADE_SIDE)), batch.made
            )
        self.commits += 1

    def parked_items(self, kind: str) -> list[ParkedItem]:
        return list(self.parked.get(kind, {}).values())

    def conflicts(self, kind: str) -> list[ConflictRow]:
        return list(self.conflict_rows.get(kind, []))

    def mark_reversed(self, conflict_id: int) -> None:
        for rows in self.conflict_rows.values():
            for i, row in enumerate(rows):
                if row.id == conflict_id:
                    rows[i] = ConflictRow(**{**row.__dict__, "reversed": True})

    def alert(
        self, code: str, title: Msg | str, message: Msg | str = "", subject: str = ""
    ) -> None:
        self.alerts.append((code, str(title), str(message), subject))

    def resolve_alert(self, code: str, subject: str = "") -> None:
        self.alerts = [a for a in self.alerts if (a[0], a[3]) != (code, subject)]


def _with_id(conflict: ConflictRow, conflict_id: int) -> ConflictRow:
    return ConflictRow(**{**conflict.__dict__, "id": conflict_id})


def active(links: Sequence[LinkRow]) -> list[LinkRow]:
    return [link for link in links if link.state != UNTRACKED]
