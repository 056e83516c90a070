"""`make bench`: every benchmark of issue 13 in one run, one JSON object on stdout and a dated
table appended to bench/RESULTS.md.

The sandbox servers run in this process; each phase's agent runs in a child process of its own
(tests/e2e/remote_agent.py, bench/mail_agent.py), so CPU seconds and peak RSS are the agent's.

Sections of the JSON object:
  sync        bench/bench_sync.py's phases (initial, echo, incremental 1 %, incremental_echo,
              quiet) at 10,000 contacts + 5,000 appointments (500 series) + 5,000 tasks
  email       20,000 messages delivered to the Inbox, tracked under "all" (initial), then a
              run with nothing new (quiet)
  large       100,000 contacts: initial and quiet
  vdirsyncer  the same 10,000 contacts as vCards synced by vdirsyncer between two local folders
              (initial and quiet), in a child process as well
  latency     bench/bench_latency.py: a change's delay from the mailbox (Graph) to the CRM and
              back (median, p95 of 50 each), and an idle spell's requests per hour
  offline     bench/bench_offline.py (issue 12): go offline with 50,000 rows, the list page
              over them, go online with 1,000 queued changes
  profile     the top 20 functions (own time) of the initial and echo phases under cProfile, on
              a contacts-only run of `profile_contacts` records (a separate run: cProfile slows
              the agent down, so the timed phases above run without it)
  targets     issue 13's targets, each with the measured figure and met true/false
Every phase's `cpu_ms_per_item` is the child's CPU seconds less the baseline of a child that only
imports the agent, divided by the items the phase moved (or listed, for quiet runs: 0 items).

Usage: python bench/run_all.py [--small] [--no-results] [--skip large,vdirsyncer,...]
  --small   about 2 % of the sizes (a quick check; the figures are not the issue's)
"""

from __future__ import annotations

import argparse
import cProfile  # noqa: F401  (documents that the children use it)
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_latency  # noqa: E402
import bench_offline  # noqa: E402
import bench_sync  # noqa: E402

from tests.e2e.harness import (  # noqa: E402
    ALICE,
    KIND_NAMES,
    SandboxPair,
    seed_contacts,
    start_pair,
)
from tests.e2e.remote_agent import write_address  # noqa: E402

FULL = {
    "contacts": 10_000,
    "appointments": 5_000,
    "series": 500,
    "tasks": 5_000,
    "emails": 20_000,
    "large_contacts": 100_000,
    "vcards": 10_000,
    "profile_contacts": 5_000,
}
SMALL_SHARE = 0.02
TARGETS = {
    "initial_cpu_ms_per_item": 1.0,
    "plan_cpu_ms_per_item": 0.34,
    "large_peak_rss_mib": 200.0,
    "initial_request_ratio_per_side": 1.1,
}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def sizes(small: bool) -> dict[str, int]:
    if not small:
        return dict(FULL)
    return {k: max(10, round(v * SMALL_SHARE)) for k, v in FULL.items()}


def per_item(cpu: float, baseline: float, items: int) -> float | None:
    """Milliseconds of the agent's own CPU per item (imports left out); None for 0 items."""
    return round((cpu - baseline) * 1000 / items, 3) if items else None


# --- contacts, appointments, tasks ----------------------------------------------------------


def sync_bench(size: dict[str, int], baseline: float) -> dict[str, Any]:
    out = bench_sync.run({k: size[k] for k in ("contacts", "appointments", "series", "tasks")})
    for name in bench_sync.PHASES:
        figures = out[name]
        items = figures["changed"]
        figures["cpu_ms_per_item"] = per_item(figures["cpu_seconds"], baseline, items)
        figures["side_ratio"] = side_ratio(figures)
    return out


def side_ratio(figures: dict[str, Any]) -> dict[str, float | None]:
    """Requests per side against the fewest for that side (the formula's steps by prefix)."""
    steps = figures["fewest_by_step"]
    least = {
        side: sum(v for k, v in steps.items() if k.startswith(side)) for side in ("crm", "ews")
    }
    return {
        side: round(figures[f"requests_{side}"] / least[side], 2) if least[side] else None
        for side in ("crm", "ews")
    }


# --- 100,000 contacts -------------------------------------------------------------------------


def large_bench(n: int, baseline: float) -> dict[str, Any]:
    out: dict[str, Any] = {"contacts": n}
    with (
        tempfile.TemporaryDirectory(prefix="bench-large-") as folder,
        start_pair(Path(folder)) as pair,
    ):
        log(f"large: seeding {n} contacts")
        seed_contacts(pair, n)
        address = write_address(pair, Path(folder) / "agent", Path(folder) / "address.json")
        work = {name: bench_sync.KindWork() for name in KIND_NAMES}
        work["contacts"] = bench_sync.KindWork(crm_listed=n, crm_changed=n, mailbox_creates=n)
        log("large: initial")
        out["initial"] = bench_sync.phase(pair, address, work, first_run=True)
        out["initial"]["cpu_ms_per_item"] = per_item(
            out["initial"]["cpu_seconds"], baseline, out["initial"]["changed"]
        )
        out["initial"]["side_ratio"] = side_ratio(out["initial"])
        log("large: echo")
        nothing = {name: bench_sync.KindWork() for name in KIND_NAMES}
        out["echo"] = bench_sync.phase(pair, address, nothing)
        log("large: quiet")
        out["quiet"] = bench_sync.phase(pair, address, nothing)
        for name in ("initial", "echo", "quiet"):
            out[name].pop("kinds", None)
    return out


# --- email tracking ---------------------------------------------------------------------------


def mime(i: int, when: datetime) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Customer {i} <customer{i % 500}@customer.example>"
    mail["To"] = f"Alice <{ALICE}>"
    mail["Subject"] = f"Order {i}"
    mail["Message-ID"] = f"<bench-{i}@customer.example>"
    mail["Date"] = format_datetime(when)
    mail.set_content(f"Hello Alice,\nplease see order {i}.\n")
    return mail.as_bytes()


def mail_child(address: Path) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.mail_agent", str(address)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=7200,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the tracker failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1])), time.perf_counter() - started


def mail_phase(pair: SandboxPair, address: Path, baseline: float, n: int) -> dict[str, Any]:
    pair.log.clear()
    child, seconds = mail_child(address)
    entries = pair.log.snapshot()
    by_operation = Counter(
        f"dataverse {e.method} {e.target}" if e.service == "dataverse" else f"ews {e.target}"
        for e in entries
    )
    items = int(child["counts"]["tracked"]) + int(child["counts"]["linked"])
    return {
        "wall_seconds": child["wall_seconds"],
        "process_seconds": round(seconds, 3),
        "cpu_seconds": child["cpu_seconds"],
        "cpu_ms_per_item": per_item(child["cpu_seconds"], baseline, items),
        "peak_rss_mib": child["peak_rss_mib"],
        "requests_crm": sum(e.service == "dataverse" for e in entries),
        "requests_ews": sum(e.service == "ews" for e in entries),
        "requests_by_operation": dict(sorted(by_operation.items())),
        "counts": child["counts"],
        "messages": n,
    }


def email_bench(n: int, baseline: float) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": n}
    with (
        tempfile.TemporaryDirectory(prefix="bench-mail-") as folder,
        start_pair(Path(folder)) as pair,
    ):
        log(f"email: delivering {n} messages")
        when = datetime.now(UTC) - timedelta(minutes=30)
        for i in range(n):
            pair.ews.deliver_mime(ALICE, mime(i, when), "inbox")
        path = Path(folder) / "address.json"
        write_address(pair, Path(folder) / "agent", path)
        address = json.loads(path.read_text())
        address["user"] = ALICE
        path.write_text(json.dumps(address))
        log("email: initial")
        out["initial"] = mail_phase(pair, path, baseline, n)
        log("email: quiet")
        out["quiet"] = mail_phase(pair, path, baseline, 0)
    return out


# --- vdirsyncer -----------------------------------------------------------------------------------

VDIR_CHILD = """
import json, resource, sys, time
from vdirsyncer.cli import app
def peak_rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
started = time.perf_counter()
code = 0
try:
    app.main(args=sys.argv[1:], standalone_mode=False)
except SystemExit as stop:
    code = stop.code or 0
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"code": code, "wall_seconds": round(time.perf_counter() - started, 3),
                  "cpu_seconds": round(u.ru_utime + u.ru_stime, 3),
                  "peak_rss_mib": peak_rss_mib()}))
"""


def vcard(i: int) -> str:
    return (
        "BEGIN:VCARD\r\nVERSION:3.0\r\n"
        f"UID:bench-{i}\r\nFN:CFirst{i} CLast{i}\r\nN:CLast{i};CFirst{i};;;\r\n"
        f"EMAIL;TYPE=INTERNET:c{i}@customer.example\r\nTEL;TYPE=WORK:+44 20 7946 {i:04d}\r\n"
        f"TEL;TYPE=CELL:+44 7700 9{i:05d}\r\nTITLE:Buyer\r\n"
        f"ADR;TYPE=WORK:;;{i} Market Street;Leeds;;LS{i % 30} 1AA;\r\n"
        f"NOTE:Met at the fair\\, table {i}.\r\nEND:VCARD\r\n"
    )


def vdir_run(config: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", VDIR_CHILD, "-c", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input="y\n" * 4,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"vdirsyncer failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def vdirsyncer_bench(n: int, baseline_cpu: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-vdir-") as folder:
        base = Path(folder)
        (base / "a").mkdir()
        (base / "b").mkdir()
        for i in range(n):
            (base / "a" / f"bench-{i}.vcf").write_text(vcard(i), newline="")
        config = base / "config"
        config.write_text(
            f'[general]\nstatus_path = "{base}/status/"\n\n'
            '[pair contacts]\na = "contacts_a"\nb = "contacts_b"\ncollections = null\n\n'
            f'[storage contacts_a]\ntype = "filesystem"\npath = "{base}/a/"\n'
            'fileext = ".vcf"\n\n'
            f'[storage contacts_b]\ntype = "filesystem"\npath = "{base}/b/"\n'
            'fileext = ".vcf"\n'
        )
        vdir_run(config, "discover")
        initial = vdir_run(config, "sync")
        copied = len(list((base / "b").glob("*.vcf")))
        quiet = vdir_run(config, "sync")
    initial["cpu_ms_per_item"] = per_item(initial["cpu_seconds"], baseline_cpu, n)
    return {
        "vcards": n,
        "copied": copied,
        "import_baseline_cpu_seconds": baseline_cpu,
        "initial": initial,
        "quiet": quiet,
    }


def vdir_baseline() -> float:
    code = (
        "import json, resource\nfrom vdirsyncer.cli import app  # noqa\n"
        "u = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(json.dumps(round(u.ru_utime + u.ru_stime, 3)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(json.loads(done.stdout))


# --- profile ------------------------------------------------------------------------------------


def profiled_child(address: Path, out: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "tests.e2e.remote_agent",
         str(address)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the profiled agent failed:\n{done.stderr[-4000:]}")


def top(stats_file: Path, count: int = 20) -> list[dict[str, Any]]:
    """The `count` functions with the most own time."""
    stats = pstats.Stats(str(stats_file), stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({
            "function": f"{shorten(filename)}:{line}({name})",
            "calls": calls,
            "own_seconds": round(own, 3),
            "cumulative_seconds": round(cumulative, 3),
        })  # fmt: skip
    rows.sort(key=lambda r: r["own_seconds"], reverse=True)
    return rows[:count]


def shorten(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def profile_bench(n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"contacts": n}
    with (
        tempfile.TemporaryDirectory(prefix="bench-prof-") as folder,
        start_pair(Path(folder)) as pair,
    ):
        seed_contacts(pair, n)
        address = write_address(pair, Path(folder) / "agent", Path(folder) / "address.json")
        for name in ("initial", "echo"):
            log(f"profile: {name}")
            stats = Path(folder) / f"{name}.prof"
            profiled_child(address, stats)
            out[name] = top(stats)
    return out


# --- targets and RESULTS.md -----------------------------------------------------------------------


def targets(out: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    initial = out.get("sync", {}).get("initial")
    if initial:
        cpu = initial["cpu_ms_per_item"]
        found["initial_cpu_ms_per_item"] = {
            "target": TARGETS["initial_cpu_ms_per_item"],
            "measured": cpu,
            "met": cpu is not None and cpu <= TARGETS["initial_cpu_ms_per_item"],
        }
        found["plan_cpu_ms_per_item"] = {
            "target": TARGETS["plan_cpu_ms_per_item"],
            "measured": cpu,
            "met": cpu is not None and cpu <= TARGETS["plan_cpu_ms_per_item"],
            "note": "a written plan in bench/RESULTS.md",
        }
        ratios = initial["side_ratio"]
        found["initial_request_ratio_per_side"] = {
            "target": TARGETS["initial_request_ratio_per_side"],
            "measured": ratios,
            "met": all(
                r is None or r <= TARGETS["initial_request_ratio_per_side"] for r in ratios.values()
            ),
        }
        quiet = out["sync"]["quiet"]
        folders, sets = 3, len(KIND_NAMES)
        found["quiet_one_request_per_folder_and_set"] = {
            "target": {"crm": sets, "ews": folders},
            "measured": {"crm": quiet["requests_crm"], "ews": quiet["requests_ews"]},
            "met": quiet["requests_crm"] == sets and quiet["requests_ews"] == folders,
            "note": "each phase is a new process: its folder lookups count here",
        }
    large = out.get("large", {}).get("initial")
    if large:
        rss = max(out["large"][p]["peak_rss_mib"] for p in ("initial", "echo", "quiet"))
        found["large_peak_rss_mib"] = {
            "target": TARGETS["large_peak_rss_mib"],
            "measured": rss,
            "met": rss < TARGETS["large_peak_rss_mib"],
        }
    vdir = out.get("vdirsyncer", {}).get("initial")
    if vdir and initial:
        ours, theirs = initial["cpu_ms_per_item"], vdir["cpu_ms_per_item"]
        found["vs_vdirsyncer_cpu_per_item"] = {
            "ours_ms": ours,
            "vdirsyncer_ms": theirs,
            "ratio": round(ours / theirs, 2) if ours and theirs else None,
        }
    return found


def table(out: dict[str, Any]) -> str:
    lines = [
        "| run | phase | items | wall s | CPU s | CPU ms/item | peak RSS MiB | req CRM | req EWS"
        " | fewest | ratio CRM / EWS |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]

    def row(run: str, phase: str, f: dict[str, Any], items: int) -> None:
        ratio = f.get("side_ratio") or {}
        lines.append(
            f"| {run} | {phase} | {items} | {f['wall_seconds']} | {f['cpu_seconds']} |"
            f" {f.get('cpu_ms_per_item')} | {f['peak_rss_mib']} | {f.get('requests_crm', '')} |"
            f" {f.get('requests_ews', '')} | {f.get('fewest_requests', '')} |"
            f" {ratio.get('crm', '')} / {ratio.get('ews', '')} |"
        )

    sync = out.get("sync")
    if sync:
        for name in bench_sync.PHASES:
            row("sync", name, sync[name], sync[name]["changed"])
    email = out.get("email")
    if email:
        for name in ("initial", "quiet"):
            f = email[name]
            row("email", name, f, f["counts"]["tracked"] + f["counts"]["linked"])
    large = out.get("large")
    if large:
        for name in ("initial", "echo", "quiet"):
            row("100k contacts", name, large[name], large[name]["changed"])
    vdir = out.get("vdirsyncer")
    if vdir:
        row("vdirsyncer", "initial", vdir["initial"], vdir["copied"])
        row("vdirsyncer", "quiet", vdir["quiet"], 0)
    return "\n".join(lines)


def append_results(out: dict[str, Any]) -> None:
    parts = [
        table(out),
        "",
        "CPU ms/item: the child's CPU less the import-only baseline "
        f"({out['agent_baseline']['cpu_seconds']} s), per item moved.\n",
        "Targets:\n",
        "```json",
        json.dumps(out["targets"], indent=1),
        "```",
    ]
    if out.get("latency"):
        parts += ["\nChange latency and idle cost (bench/bench_latency.py):\n", "```json"]
        parts += [json.dumps(out["latency"], indent=1), "```"]
    if out.get("offline"):
        parts += ["\nOffline (bench/bench_offline.py):\n", bench_offline.table(out["offline"])]
    for name in ("initial", "echo"):
        rows = out.get("profile", {}).get(name)
        if rows:
            parts.append(f"\nProfile, {name} ({out['profile']['contacts']} contacts), top 20 own"
                         " time:\n")  # fmt: skip
            parts.append(
                "| function | calls | own s | cumulative s |\n| --- | ---: | ---: | ---: |"
            )
            parts += [
                f"| `{r['function']}` | {r['calls']} | {r['own_seconds']} |"
                f" {r['cumulative_seconds']} |"
                for r in rows
            ]
    bench_offline.append_section("make bench", out, parts)


# --- main ---------------------------------------------------------------------------------------

SECTIONS = ("sync", "email", "large", "vdirsyncer", "profile", "latency", "offline")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="about 2 % of the sizes")
    parser.add_argument("--no-results", action="store_true", help="leave RESULTS.md alone")
    parser.add_argument("--skip", default="", help=f"comma-separated, of {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    size = sizes(args.small)
    baseline = bench_sync.agent_baseline()
    out: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "small": args.small,
        "cores": os.cpu_count(),
        "sizes": size,
        "agent_baseline": baseline,
    }
    cpu0 = baseline["cpu_seconds"]
    sections = {
        "sync": lambda: sync_bench(size, cpu0),
        "email": lambda: email_bench(size["emails"], cpu0),
        "large": lambda: large_bench(size["large_contacts"], cpu0),
        "vdirsyncer": lambda: vdirsyncer_bench(size["vcards"], vdir_baseline()),
        "profile": lambda: profile_bench(size["profile_contacts"]),
        "latency": lambda: bench_latency.main(["--small"] if args.small else []),
        "offline": lambda: bench_offline.run(
            bench_offline.SMALL if args.small else bench_offline.FULL
        ),
    }
    for name, bench in sections.items():
        if name not in skip:
            out[name] = bench()
            # each section as it ends (a long run stopped later keeps what it measured)
            log(f"section {name}: {json.dumps(out[name])}")
    out["targets"] = targets(out)
    if not args.no_results:
        append_results(out)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
