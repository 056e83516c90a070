"""A pair of memory sides with a link store, for engine tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.engine import EngineSettings, KindResult, sync_kind
from sync.kinds.base import Kind
from sync.kinds.contacts import CONTACTS
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.memory import MemoryCrm, MemoryMailbox

ME = "user-me"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@dataclass
class World:
    crm: MemoryCrm
    mailbox: MemoryMailbox
    store: Any
    kind: Kind = CONTACTS
    now: datetime = NOW

    def settings(self, **kw: Any) -> EngineSettings:
        kw.setdefault("me", ME)
        kw.setdefault("clock", lambda: self.now)
        return EngineSettings(**kw)

    def sync(self, **kw: Any) -> KindResult:
        return sync_kind(self.kind, self.crm, self.mailbox, self.store, self.settings(**kw))

    def crm_rows(self) -> dict[str, dict[str, Any]]:
        return {k: r.fields for k, r in self.crm.records(self.kind.crm_kind).items()}

    def items(self) -> dict[str, dict[str, Any]]:
        return {k: r.fields for k, r in self.mailbox.records(self.kind.mailbox_kind).items()}

    def item_for(self, crm_id: str) -> str:
        [link] = [lk for lk in self.store.load_links(self.kind.name) if lk.crm_id == crm_id]
        assert link.mailbox_id is not None
        return link.mailbox_id

    def tracked_item(self, **fields: Any) -> str:
        fields.setdefault("categories", [TRACKED_CATEGORY])
        return self.mailbox.put(self.kind.mailbox_kind, fields).id
