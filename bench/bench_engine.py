"""Engine benchmark: plan + apply over the in-memory sides.

Initial sync of N CRM contacts (default 10,000) into an empty mailbox; then the run that reads
back our own writes ("echo": nothing to do, but the mailbox delta lists every new item); then a
quiet run (one read call per side).
Prints one JSON object: seconds, side operations (calls and ops written) and peak traced
memory per phase. Usage: python bench/bench_engine.py [N] [--sql]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync.engine import EngineSettings, MemoryLinkStore, sync_kind  # noqa: E402
from sync.kinds.contacts import CONTACTS  # noqa: E402
from sync.memory import MemoryCrm, MemoryMailbox  # noqa: E402


class CountingSide:
    """Counts ops written through a side (calls are counted by the side itself)."""

    def __init__(self, side: Any) -> None:
        self.side = side
        self.name = side.name
        self.ops = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.side, name)

    def write(self, kind: str, ops: Any) -> Any:
        self.ops += len(ops)
        return self.side.write(kind, ops)


def _phase(run: Any) -> dict[str, Any]:
    tracemalloc.start()
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": round(seconds, 3), "peak_mb": round(peak / 2**20, 1), "result": result}


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 10_000
    crm_memory, mailbox_memory = MemoryCrm(me="me", page_size=5000), MemoryMailbox(page_size=512)
    for i in range(count):
        crm_memory.put("contacts", {
            "firstname": f"First{i}", "lastname": f"Last{i}", "jobtitle": "Engineer",
            "emailaddress1": f"person{i}@contoso.com", "telephone1": f"+1 555 {i:05d}",
            "address1_city": "Redmond", "description": "Imported for the benchmark.",
        })  # fmt: skip
    crm, mailbox = CountingSide(crm_memory), CountingSide(mailbox_memory)
    if "--sql" in sys.argv:
        from sync.store.db import open_database
        from sync.store.linkstore import SqlLinkStore

        store: Any = SqlLinkStore(open_database(Path(tempfile.mkdtemp())), "bench")
    else:
        store = MemoryLinkStore()
    settings = EngineSettings(me="me", batch_size=500)

    def run() -> dict[str, Any]:
        return sync_kind(CONTACTS, crm, mailbox, store, settings).as_dict()  # type: ignore[arg-type]

    out: dict[str, Any] = {"contacts": count, "store": "sql" if "--sql" in sys.argv else "memory"}
    for phase in ("initial", "echo", "quiet"):
        crm_memory.calls.clear()
        mailbox_memory.calls.clear()
        crm.ops = mailbox.ops = 0
        figures = _phase(run)
        result = figures.pop("result")
        figures["ops"] = {
            "crm_calls": dict(crm_memory.calls), "mailbox_calls": dict(mailbox_memory.calls),
            "crm_writes": crm.ops, "mailbox_writes": mailbox.ops,
        }  # fmt: skip
        figures["mailbox_created"] = result["mailbox"]["created"]
        figures["changed"] = result["mailbox"]["created"] + result["mailbox"]["updated"]
        out[phase] = figures
    print(json.dumps(out))


if __name__ == "__main__":
    main()
