"""Benchmark: read N contacts through the Dataverse client from a sandbox organization.

Prints one JSON object: rows read, requests made, seconds, peak traced memory while paging (MB),
the fewest requests the 5,000-row page limit allows, and the ratio requests / fewest.
Usage: python bench/bench_crm_read.py [N]   (default 20000)
"""

from __future__ import annotations

import json
import math
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.dataverse import DataverseServer  # noqa: E402
from sandbox.faults import FaultProfile  # noqa: E402
from sandbox.identity import TokenRegistry  # noqa: E402
from sandbox.requestlog import RequestLog  # noqa: E402
from sync.crm.client import DEFAULT_PAGE_SIZE, DataverseClient  # noqa: E402

ORG, UPN = "contoso", "alice@contoso.example"
SELECT = ["firstname", "lastname", "emailaddress1", "telephone1", "jobtitle", "address1_city"]


def main(n: int) -> dict[str, object]:
    tokens = TokenRegistry()
    server = DataverseServer(tokens, RequestLog(), FaultProfile(), port=0, demo_scale=0)
    server.start()
    try:
        for i in range(n):
            server.insert(
                ORG,
                "contacts",
                {
                    "firstname": f"First{i}",
                    "lastname": f"Last{i}",
                    "emailaddress1": f"person{i}@bench.example",
                    "telephone1": f"+1 555 {i:07d}",
                    "jobtitle": "Buyer",
                    "address1_city": "Springfield",
                },
            )
        token = tokens.static_token(UPN)
        with DataverseClient(server.api_url(ORG), lambda: token) as client:
            started = time.perf_counter()
            rows = sum(len(page) for page in client.iter_pages("contacts", select=SELECT))
            seconds = time.perf_counter() - started
            requests = client.request_count
            # Memory in a second pass: tracing slows Python down, so it is not timed.
            tracemalloc.start()
            try:
                for _page in client.iter_pages("contacts", select=SELECT):
                    pass
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    finally:
        server.stop()
    fewest = max(1, math.ceil(rows / DEFAULT_PAGE_SIZE))
    return {
        "rows": rows,
        "requests": requests,
        "seconds": round(seconds, 3),
        "peak_mb": round(peak / 1e6, 2),
        "fewest_requests": fewest,
        "ratio": round(requests / fewest, 3),
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)))
