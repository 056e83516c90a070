"""The sync engine: pure decisions (plan, merge) and their application over two sides.

`sync_kind(kind, crm, mailbox, store, settings, progress=None) -> KindResult` syncs one kind
both ways, after `begin_run(crm, mailbox)` once per run; everything else here is its parts,
exposed for tests and the dashboard (conflicts).
"""

from sync.engine.apply import Counts, KindResult, apply_actions
from sync.engine.merge import merge, reverse_conflict
from sync.engine.options import EngineSettings
from sync.engine.plan import ChangeSet, plan
from sync.engine.run import begin_run, sync_kind
from sync.engine.state import (
    Batch,
    ConflictRow,
    LinkRow,
    LinkStore,
    MemoryLinkStore,
)

__all__ = [
    "Batch",
    "ChangeSet",
    "ConflictRow",
    "Counts",
    "EngineSettings",
    "KindResult",
    "LinkRow",
    "LinkStore",
    "MemoryLinkStore",
    "apply_actions",
    "begin_run",
    "merge",
    "plan",
    "reverse_conflict",
    "sync_kind",
]
