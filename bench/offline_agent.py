"""Offline work in a process of its own, against a sandbox Dataverse another process runs (the
offline bench: CPU and peak memory are this process's alone).

    python -m bench.offline_agent ADDRESS_FILE ACTION

ADDRESS_FILE (JSON) names the sandbox API, a bearer token, the user id, the organization row and
the data dir. ACTION is one of:
  go-offline  download the chosen rows (`OfflineService.go_offline`)
  go-online   replay the queue and refresh (`OfflineService.go_online`)
  list        time the Offline list page as the browser asks for it (Flask, htmx partial), for a
              set of page / search / sort queries, each `repeat` times
Prints one JSON line: the action's figures, wall and CPU seconds and the peak RSS (MiB).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sync.crm.client import DataverseClient, RetryPolicy
from sync.offline.service import OfflineConnection, OfflineService
from sync.store.db import open_database
from tests.e2e.remote_agent import peak_rss_mib

LIST_QUERIES = {
    "first page": "",
    "middle page": "?page={middle}",
    "last page": "?page={last}",
    "sorted by last change, newest first": "?sort=updated&dir=desc",
    "middle page, sorted by last change": "?sort=updated&page={middle}",
    "search, one match": "?q={one}",
    "search, many matches": "?q={many}",
    "search, no match": "?q=zzzz-nothing",
}
"""The list page's queries the bench times (placeholders filled from the address)."""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _service(address: dict[str, Any], clients: list[DataverseClient]) -> OfflineService:
    token = str(address["token"])
    database = open_database(Path(address["data_dir"]))

    def connect() -> OfflineConnection:
        client = DataverseClient(
            address["api_url"], lambda: token, retry=RetryPolicy(backoff=0.05, max_backoff=0.5)
        )
        clients.append(client)
        return OfflineConnection(address["org"], address["me"], client, "UTC", client.close)

    return OfflineService(database, connect)


def go_offline(address: dict[str, Any]) -> dict[str, Any]:
    clients: list[DataverseClient] = []
    result = _service(address, clients).go_offline()
    return {"rows": result.rows, "requests": sum(c.request_count for c in clients)}


def go_online(address: dict[str, Any]) -> dict[str, Any]:
    clients: list[DataverseClient] = []
    replayed, refreshed = _service(address, clients).go_online()
    return {
        "replayed": replayed.done,
        "conflicts": replayed.conflicts,
        "failed": replayed.failed,
        "merged": replayed.merged,
        "online": refreshed is not None,
        "requests": sum(c.request_count for c in clients),
    }


def list_pages(address: dict[str, Any]) -> dict[str, Any]:
    """Each query's median and slowest time, from the request to the rendered page."""
    from webapp import create_app

    app = create_app(
        {"DATA_DIR": address["data_dir"], "LOGIN_TOKEN": "bench", "SETUP_REDIRECT": False}
    )
    web = app.test_client()
    assert web.get("/login?token=bench").status_code == 302
    fill = address["list"]
    out: dict[str, Any] = {}
    for name, query in LIST_QUERIES.items():
        url = "/offline/contacts" + query.format(**fill)
        times = []
        for _ in range(int(fill["repeat"])):
            started = time.perf_counter()
            page = web.get(url, headers={"HX-Request": "true"})
            times.append((time.perf_counter() - started) * 1000)
            if page.status_code != 200:
                raise SystemExit(f"{url}: HTTP {page.status_code}")
        out[name] = {
            "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
            "bytes": len(page.data),
        }
    return out


ACTIONS = {"go-offline": go_offline, "go-online": go_online, "list": list_pages}


def main(argv: list[str]) -> int:
    address = json.loads(Path(argv[0]).read_text())
    cpu0, started = _cpu(), time.perf_counter()
    figures = ACTIONS[argv[1]](address)
    figures.update(
        {
            "wall_seconds": round(time.perf_counter() - started, 3),
            "cpu_seconds": round(_cpu() - cpu0, 3),
            "peak_rss_mib": peak_rss_mib(),
        }
    )
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
