"""Offline at the size issue 12 names: go offline with 50,000 rows, the list page over them, and
go online with 1,000 queued changes.

Method: the sandbox Dataverse runs in this process (its request log is read here, so requests
are counted as the server saw them); each timed step runs in a child process of its own
(bench/offline_agent.py), so CPU seconds and peak RSS are the agent's alone.
1. `rows` contacts of alice are seeded; the offline filter is "my active contacts".
2. go-offline: the download's wall, CPU and peak RSS, and its requests by kind against the
   fewest possible: the table's definition (six requests, `METADATA_FEWEST`) and one page per
   5,000 rows (Dataverse's largest page, `odata.maxpagesize`).
3. list: the Offline list page (the htmx partial the browser swaps in) at first, middle and last
   page, sorted by last change, and searched (one match, many, none); each `repeat` times, the
   median and slowest.
4. `changes` queued changes are made offline (60 % edits, 5 % edits of rows someone else changes
   on the server meanwhile in another column, 25 % creates, 10 % deletes); then go-online: wall,
   CPU, peak RSS and requests against the fewest (`fewest_replay`), and the seconds the
   sandbox spent answering (the rest of the wall is the agent's). The server's state is checked
   afterwards: every create once, every edit and every merge there, every delete gone.

Usage: python bench/bench_offline.py [--small] [--rows N] [--changes N] [--no-results]
       (prints one JSON object; appends a table to bench/RESULTS.md unless --no-results)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sync.crm.client import DEFAULT_PAGE_SIZE  # noqa: E402
from sync.offline.store import OfflineStore, title_of  # noqa: E402
from sync.store.db import open_database  # noqa: E402
from tests.e2e.harness import ORG, SandboxPair, seed_contacts, start_pair  # noqa: E402
from tests.offline.conftest import seed as seed_offline  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
FULL = {"rows": 50_000, "changes": 1_000, "repeat": 20}
SMALL = {"rows": 1_000, "changes": 40, "repeat": 3}
ORG_ROW = "org-contoso"
"""The organization row `tests.offline.conftest.seed` writes."""
EDITED = "Offline edit"
MARKER = "OfflineMade"


def log(message: str) -> None:
    print(f"[bench_offline] {message}", file=sys.stderr, flush=True)


def child(address: Path, action: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.offline_agent", str(address), action],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"offline_agent {action} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def requests_seen(pair: SandboxPair, since: int) -> tuple[dict[str, int], float]:
    """The Dataverse requests after entry `since` of the log, by method and target, and the
    seconds the sandbox spent answering them (the part of the wall that is not the agent's)."""
    entries = [e for e in pair.log.snapshot()[since:] if e.service == "dataverse"]
    kinds = Counter(f"{e.method} {e.target}" for e in entries)
    return dict(kinds.most_common()), round(sum(e.duration for e in entries), 3)


METADATA_FEWEST = 6
"""The table definition the editor needs, in the fewest requests query-metadata-web-api.md
allows: the entity with its attributes (`$expand=Attributes`), then one cast each for the
options of Picklist, State, Status and Boolean columns and the targets of Lookup columns."""


def fewest_download(rows: int) -> int:
    """The definition, and one page of change tracking per 5,000 rows (the delta link comes
    with the last page)."""
    return METADATA_FEWEST + max(1, -(-rows // DEFAULT_PAGE_SIZE))


def fewest_replay(changes: int, merges: int) -> int:
    """One write per change; a change whose row someone else changed meanwhile also meets the
    412, reads the row and writes the merge (two more); one change-tracking read to refresh."""
    return changes + 2 * merges + 1


def queue_changes(store: OfflineStore, count: int) -> dict[str, list[str]]:
    """Edits, edits of rows the server will change too, creates and deletes, in that mix."""
    ids = [r.id for r in store.list("contacts", sort="title", page_size=500).records]
    page = 2
    while len(ids) < count:
        ids += [r.id for r in store.list("contacts", page=page, page_size=500).records]
        page += 1
    merges, creates, deletes = count * 5 // 100, count * 25 // 100, count * 10 // 100
    edits = count - merges - creates - deletes
    plan = {
        "edits": ids[:edits],
        "merges": ids[edits : edits + merges],
        "deletes": ids[edits + merges : edits + merges + deletes],
    }
    for row_id in plan["edits"] + plan["merges"]:
        store.update("contacts", row_id, {"jobtitle": EDITED})
    for row_id in plan["deletes"]:
        store.delete("contacts", row_id)
    plan["creates"] = [
        store.create("contacts", {"firstname": f"N{n}", "lastname": MARKER}) for n in range(creates)
    ]
    return plan


def check_server(pair: SandboxPair, plan: dict[str, list[str]], rows: int) -> dict[str, bool]:
    """The server's own state after go-online (read from the sandbox's store, not through the
    API the agent used), change by change kind."""
    table = pair.dataverse.store.table(ORG, "contacts").rows
    values = {str(key).lower(): row.values for key, row in table.items()}
    made = [v for v in values.values() if v.get("lastname") == MARKER]
    return {
        "creates once each": sorted(str(v["contactid"]).lower() for v in made)
        == sorted(plan["creates"]),
        "edits there": all(values[i]["jobtitle"] == EDITED for i in plan["edits"]),
        "merges keep both sides": all(
            values[i]["jobtitle"] == EDITED and values[i]["department"] == "Server side"
            for i in plan["merges"]
        ),
        "deletes gone": not any(i in values for i in plan["deletes"]),
        "total rows": len(values) == rows + len(plan["creates"]) - len(plan["deletes"]),
    }


def run(size: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": dict(size)}
    with tempfile.TemporaryDirectory(prefix="bench-offline-") as work:
        work_dir = Path(work)
        data_dir = work_dir / "data"
        data_dir.mkdir()
        with start_pair(work_dir) as pair:
            log(f"seeding {size['rows']} contacts")
            seed_contacts(pair, size["rows"])
            database = open_database(data_dir)
            seed_offline(database)
            address = work_dir / "address.json"
            fill = {"repeat": size["repeat"]}
            address.write_text(
                json.dumps(
                    {
                        "api_url": pair.dataverse.api_url(ORG),
                        "token": pair.token,
                        "me": pair.me,
                        "org": ORG_ROW,
                        "data_dir": str(data_dir),
                        "list": fill,
                    }
                )
            )
            log("go offline")
            since = len(pair.log.snapshot())
            down = child(address, "go-offline")
            down["requests_seen"], down["sandbox_seconds"] = requests_seen(pair, since)
            down["fewest_requests"] = fewest_download(size["rows"])
            down["ratio"] = round(down["requests"] / down["fewest_requests"], 2)
            out["go_offline"] = down

            store = OfflineStore(database, ORG_ROW)
            pages = -(-store.count("contacts") // 50)
            titles = store.list("contacts", page=pages // 2).records
            table_row = store.table("contacts")
            title_column = table_row.title_column if table_row else None
            fill.update(
                {
                    "middle": pages // 2,
                    "last": pages,
                    "one": title_of(titles[0].fields, title_column),
                    "many": "Last1",
                }
            )
            address.write_text(json.dumps({**json.loads(address.read_text()), "list": fill}))
            log("list pages")
            listing = child(address, "list")
            listing["rows"] = store.count("contacts")
            out["list_page"] = listing

            log(f"queue {size['changes']} changes")
            plan = queue_changes(store, size["changes"])
            queued = len(store.pending())
            api = pair.dataverse.api_url(ORG)
            with httpx.Client(headers={"Authorization": f"Bearer {pair.token}"}) as http:
                for row_id in plan["merges"]:  # someone else, another column, meanwhile
                    answer = http.patch(
                        api + f"contacts({row_id})", json={"department": "Server side"}
                    )
                    answer.raise_for_status()
            database.dispose()
            log("go online")
            since = len(pair.log.snapshot())
            up = child(address, "go-online")
            up["queued"] = queued
            up["requests_seen"], up["sandbox_seconds"] = requests_seen(pair, since)
            up["fewest_requests"] = fewest_replay(queued, len(plan["merges"]))
            up["ratio"] = round(up["requests"] / up["fewest_requests"], 2)
            up["ms_per_change"] = round(up["wall_seconds"] * 1000 / max(1, queued), 2)
            up["server_checks"] = check_server(pair, plan, size["rows"])
            out["go_online"] = up
    return out


def table(out: dict[str, Any]) -> str:
    down, up, listing = out["go_offline"], out["go_online"], out["list_page"]
    lines = [
        "| step | items | wall s | sandbox s | agent CPU s | peak RSS MiB | requests | fewest"
        " | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for step, f, items in (
        ("go offline", down, f"{sum(down['rows'].values())} rows"),
        ("go online", up, f"{up['queued']} changes"),
    ):
        lines.append(
            f"| {step} | {items} | {f['wall_seconds']} | {f['sandbox_seconds']} |"
            f" {f['cpu_seconds']} | {f['peak_rss_mib']} | {f['requests']} |"
            f" {f['fewest_requests']} | {f['ratio']} |"
        )
    lines += [
        "",
        f"List page over {listing['rows']} rows (the htmx partial, rendered; median of"
        f" {out['sizes']['repeat']}):",
        "",
        "| query | median ms | slowest ms |",
        "| --- | ---: | ---: |",
    ]
    for name, figures in listing.items():
        if isinstance(figures, dict):
            lines.append(f"| {name} | {figures['median_ms']} | {figures['max_ms']} |")
    return "\n".join(lines)


def append_section(title: str, out: dict[str, Any], parts: Sequence[str]) -> None:
    """A dated section at the end of bench/RESULTS.md (every bench script's own)."""
    size = "small (--small)" if out["small"] else "full"
    heading = f"\n## {title}, {out['date']} ({size}, {out['cores']} cores)\n"
    with RESULTS.open("a") as results:
        results.write("\n".join([heading, *parts]) + "\n")


def append_results(out: dict[str, Any]) -> None:
    append_section(
        "Offline (bench/bench_offline.py)",
        out,
        [
            table(out),
            "",
            f"Go online, server checks: {json.dumps(out['go_online']['server_checks'])}.",
            f"Requests seen by the server, go offline: {json.dumps(out['go_offline']['requests_seen'])}.",
            f"Requests seen by the server, go online: {json.dumps(out['go_online']['requests_seen'])}.",
        ],
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="2 % of the sizes: a quick check")
    parser.add_argument("--rows", type=int, help="contacts to take offline")
    parser.add_argument("--changes", type=int, help="changes to queue offline")
    parser.add_argument("--no-results", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args(argv)
    size = dict(SMALL if args.small else FULL)
    size.update({k: v for k, v in (("rows", args.rows), ("changes", args.changes)) if v})
    out = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "small": args.small,
        "cores": os.cpu_count(),
        **run(size),
    }
    if not args.no_results:
        append_results(out)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
