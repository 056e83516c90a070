"""Benchmark: the EWS adapter against a sandbox EWS server (HTTPS, Basic sign-in).

Prints one JSON object with, for each scenario, the items handled, the EWS requests made, the wall
seconds, the fewest requests the batch limits allow and the ratio requests / fewest:
- create: N contacts written through `EwsSide.write` (CreateItem, `write_batch` items a call);
- read_contacts: the full first read of those contacts (SyncFolderItems ≤ 512 a call + GetItem
  for each page's items);
- read_messages: the full first read of M messages delivered into the Inbox (side door).
Usage: python bench/bench_ews.py [N_CREATE] [N_CONTACTS] [N_MESSAGES]  (defaults 5000 10000 20000)
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.ews import EwsServer  # noqa: E402
from sandbox.faults import FaultProfile  # noqa: E402
from sandbox.identity import USERS, TokenRegistry  # noqa: E402
from sandbox.requestlog import RequestLog  # noqa: E402
from sync.mailbox.ews import MAX_PAGE, BasicAuth, EwsConnection, EwsSide  # noqa: E402
from sync.sides import CreateOp, Written  # noqa: E402

ALICE, BOB = USERS[0], USERS[1]
WRITE_BATCH = 100


def side(server: EwsServer, user: Any) -> EwsSide:
    auth = BasicAuth(user.upn, user.password)
    conn = EwsConnection(server.url, user.upn, auth, ca_file=server.ca_file)
    return EwsSide(conn, page_size=MAX_PAGE, fetch_batch=MAX_PAGE, write_batch=WRITE_BATCH)


def requests(log: RequestLog) -> int:
    return log.count(service="ews")


def result(items: int, made: int, fewest: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "items": items,
        "requests": made,
        "fewest_requests": fewest,
        "ratio": round(made / fewest, 3) if fewest else None,
        "seconds": round(seconds, 2),
        **extra,
    }


def read_everything(s: EwsSide, kind: str) -> tuple[int, int]:
    """Count items read and pages; keep nothing (memory stays flat)."""
    items = pages = 0
    for page in s.read_changes(kind, None):
        items += len(page.changes)
        pages += 1
    return items, pages


def main(n_create: int, n_contacts: int, n_messages: int) -> dict[str, Any]:
    log = RequestLog()
    with tempfile.TemporaryDirectory() as data_dir:
        server = EwsServer(TokenRegistry(), log, FaultProfile(), data_dir, demo=False)
        server.start()
        try:
            out: dict[str, Any] = {}
            writer = side(server, ALICE)

            def create(first: int, last: int) -> int:
                done = 0
                for start in range(first, last, 1000):
                    ops = [
                        CreateOp(f"crm-{i}", {"given_name": f"Given{i}", "surname": f"Sur{i}"})
                        for i in range(start, min(start + 1000, last))
                    ]
                    done += sum(isinstance(r, Written) for r in writer.write("contacts", ops))
                return done

            log.clear()
            started = time.perf_counter()
            written = create(0, n_create)
            seconds = time.perf_counter() - started
            fewest = math.ceil(n_create / WRITE_BATCH) + 2  # + GetFolder root and contacts
            out["create"] = result(written, requests(log), fewest, seconds)
            written += create(n_create, n_contacts)
            assert written == n_contacts, f"only {written} of {n_contacts} contacts created"

            reader = side(server, ALICE)
            log.clear()
            started = time.perf_counter()
            items, pages = read_everything(reader, "contacts")
            seconds = time.perf_counter() - started
            fewest = 2 * math.ceil(n_contacts / MAX_PAGE) + 2  # sync + GetItem a page, 2 GetFolder
            made = requests(log)
            tracemalloc.start()  # a second, traced read: the peak shows memory stays flat
            read_everything(side(server, ALICE), "contacts")
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
            out["read_contacts"] = result(
                items, made, fewest, seconds, pages=pages, traced_peak_mb=round(peak, 1)
            )

            for i in range(n_messages):
                mime = (
                    f"From: sender{i % 97}@outside.example\r\nTo: {BOB.upn}\r\n"
                    f"Subject: Message {i}\r\nMessage-Id: <m{i}@outside.example>\r\n"
                    f"Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n\r\nBody {i}\r\n"
                ).encode()
                server.deliver_mime(BOB.upn, mime)
            mail = side(server, BOB)
            log.clear()
            started = time.perf_counter()
            items, pages = read_everything(mail, "messages")
            seconds = time.perf_counter() - started
            fewest = 2 * math.ceil(n_messages / MAX_PAGE) + 2
            out["read_messages"] = result(items, requests(log), fewest, seconds, pages=pages)
            out["batch_limits"] = {
                "sync_changes_per_call": MAX_PAGE,
                "getitem_ids_per_call": MAX_PAGE,
                "createitem_items_per_call": WRITE_BATCH,
            }
            return out
        finally:
            server.stop()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:4]]
    defaults = [5000, 10000, 20000]
    n_create, n_contacts, n_messages = args + defaults[len(args) :]
    print(json.dumps(main(n_create, max(n_contacts, n_create), n_messages), indent=2))
