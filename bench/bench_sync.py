"""Benchmark: initial sync of N contacts sandbox Dataverse → sandbox EWS, then a quiet sync.

Prints one JSON object (asserts nothing about time):
  items           contacts synced to the mailbox by the initial sync
  seconds         wall seconds of the initial sync
  requests_crm    HTTP requests the sandbox Dataverse answered during it (retries included)
  requests_ews    SOAP requests the sandbox EWS answered during it
  fewest_requests the fewest requests the batch limits allow for it: one change-tracking page per
                  5,000 rows, one SyncFolderItems, one CreateItem per 100 items (the engine's and
                  the EWS side's batch size)
  ratio           (requests_crm + requests_ews) / fewest_requests
  requests_by_operation  where the requests went
  echo_changed, echo_requests    the next sync, which reads our own creates back once
  quiet_seconds, quiet_requests  then a sync with nothing changed
Usage: python bench/bench_sync.py [N]   (default 2000)
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.harness import make_agent, seed_contacts, start_pair  # noqa: E402

CRM_PAGE = 5000
"""Rows per change-tracking page (Dataverse's default maximum page size)."""
WRITE_BATCH = 100
"""Items per CreateItem (EwsSide.write_batch) and actions per engine batch."""


def main(n: int) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-sync-") as folder,
        start_pair(Path(folder)) as pair,
    ):
        seed_contacts(pair, n)
        agent = make_agent(pair, batch_size=WRITE_BATCH)
        pair.log.clear()
        started = time.perf_counter()
        result = agent.sync(["contacts"])["contacts"]
        seconds = time.perf_counter() - started
        entries = pair.log.snapshot()
        crm = sum(e.service == "dataverse" for e in entries)
        ews = sum(e.service == "ews" for e in entries)
        by_operation = Counter(f"{e.service}:{e.method} {e.target}" for e in entries)
        fewest = math.ceil(max(n, 1) / CRM_PAGE) + 1 + math.ceil(n / WRITE_BATCH)

        # The next sync sees our own creates come back (SyncFolderItems reports them since the
        # state read before they were made): it reads them once and changes nothing.
        pair.log.clear()
        echo = agent.sync(["contacts"])["contacts"]
        echo_requests = len(pair.log)

        pair.log.clear()
        started = time.perf_counter()
        quiet = agent.sync(["contacts"])["contacts"]
        quiet_seconds = time.perf_counter() - started
        return {
            "items": result.mailbox.created,
            "errors": result.errors + quiet.errors,
            "seconds": round(seconds, 3),
            "requests_crm": crm,
            "requests_ews": ews,
            "fewest_requests": fewest,
            "ratio": round((crm + ews) / fewest, 2),
            "requests_by_operation": dict(sorted(by_operation.items())),
            "echo_changed": echo.changed,
            "echo_requests": echo_requests,
            "quiet_changed": quiet.changed,
            "quiet_seconds": round(quiet_seconds, 3),
            "quiet_requests": len(pair.log),
        }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)))
