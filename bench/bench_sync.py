"""Benchmark: the agent syncing contacts, appointments (single and recurring) and tasks between
the sandbox Dataverse and the sandbox EWS, initial and incremental.

The sandbox servers run in this process (threads); the agent runs in a child process
(`tests/e2e/remote_agent.py`), one child per phase, all on the same local database, so the CPU
time and peak memory reported are the agent's own. Asserts nothing about time.

Phases, in order (each a section of the printed JSON object):
  initial           CRM seeded (default 10,000 contacts, 2,000 appointments of which 200 are
                    recurring series, 2,000 tasks), empty mailbox: everything goes to the mailbox
  echo              the next run, nothing changed: the mailbox lists our own creates again
                    (SyncFolderItems reports everything made since the state read before them)
  incremental       1 % of each kind changed, half in the CRM and half in the mailbox, plus a few
                    (0.1 %, at least one) creates and deletes on each side (see `changes_made`)
  incremental_echo  the next run, nothing changed: our writes of the incremental run come back
  quiet             nothing changed since the last run

Figures of each phase:
  wall_seconds      the child's sync (agent.sync over all kinds), wall clock
  process_seconds   the child's whole life as seen from here (interpreter start and imports too)
  cpu_seconds       user + system CPU of the child, imports included (see `agent_baseline`)
  peak_rss_mib      the child's own peak resident memory (VmHWM; see remote_agent.peak_rss_mib)
  requests_crm      HTTP requests the sandbox Dataverse answered (retries included)
  requests_ews      SOAP requests the sandbox EWS answered
  requests_failed   of those, answered with a status other than 2xx (e.g. a lookup's 404)
  requests_by_operation  "dataverse METHOD entity-set" / "ews Operation" → count
  fewest_requests   the fewest requests the batch limits allow for what the phase must do
  fewest_by_step    the same, per step of the formula below
  ratio             (requests_crm + requests_ews) / fewest_requests
  kinds             per kind, the run's result: created / updated / deleted in the CRM ("crm")
                    and in the mailbox ("mailbox"), untracked, relinked, conflicts, errors
  changed, errors   totals over the kinds
Top level: `cores` (os.cpu_count()), `seeded` (records per kind), `limits` (the batch limits
used below, read from the code) and `agent_baseline` (CPU and peak RSS of a child that only
imports the agent: what every phase's cpu_seconds and peak_rss_mib include before any work).

The fewest requests. B = the engine's batch size (EngineSettings.batch_size, 100): the engine
applies its actions in batches of B and writes each batch with one call per side, so B bounds
every write call (the EWS side's write_batch is 100 as well; Dataverse would take 1,000
operations in one $batch). Per phase:
  CRM   2 × 3 + 1 on an install's first run                       the definitions of task,
                                                                   appointment and series (the
                                                                   attributes, their DateTime
                                                                   cast) and the user's time zone
      + Σ over the 4 entity sets  max(1, ⌈rows listed / 5,000⌉)   change tracking, one GET a page
                                                                   (all rows on a first read, the
                                                                   changed ones after; the
                                                                   appointments set lists the
                                                                   series' occurrence rows too)
      + Σ appointments, series    ⌈rows changed in the CRM / 1,000⌉ read by id in $batch (the
                                                                   parties are not in change rows)
      + Σ kinds                   ⌈CRM writes / B⌉                 one $batch per engine batch
  EWS   Σ over the 3 folders      max(1, ⌈items listed / 512⌉)     SyncFolderItems, ids only (the
                                                                   folder is read once, before
                                                                   any write: empty on a first run)
      + Σ folders                 ⌈items new or changed / 512⌉     GetItem of their fields
      + Σ kinds                   2 × ⌈creates / B⌉                CreateItem + the GetItem that
                                                                   reads back what Exchange stored
      + Σ kinds                   ⌈updates / B⌉ (× 2 for calendar  UpdateItem (+ GetItem: a calendar
                                  items)                           update needs the current values)
      + Σ kinds                   ⌈deletes / B⌉                    DeleteItem
      + 1 on an install's first run (look up the untracked marks), 2 when records were untracked
        (look up the marks folder, write the marks of every kind at once)
Not counted, so they show in the ratio: folder lookups on an install's first run (GetFolder:
later runs, in a new process too, take each folder's id from the token saved with its sync
state), the marks folder lookup, idempotency lookups before creates (one FindItem per create
batch), a second calendar read by the second calendar kind (its full read on a first run lists
the appointments the first kind just made), and reading our own writes back (echo).

Usage: python bench/bench_sync.py [--contacts N] [--appointments N] [--series N] [--tasks N]
                                  [--scale F]
(defaults: the issue's 10,000 / 2,000 / 200 / 2,000; `--appointments` counts the series too;
`--scale 0.01` shrinks every number). Prints one JSON object on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sync.crm.batch import MAX_BATCH_OPERATIONS  # noqa: E402
from sync.crm.client import DEFAULT_PAGE_SIZE  # noqa: E402
from sync.engine import EngineSettings  # noqa: E402
from sync.kinds import KINDS  # noqa: E402
from sync.mailbox.ews import EwsSide  # noqa: E402
from sync.store.db import open_database  # noqa: E402
from sync.store.linkstore import SqlLinkStore  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    KIND_NAMES,
    ORG,
    ORG_ID,
    SandboxPair,
    seed_appointments,
    seed_contacts,
    seed_series,
    seed_tasks,
    start_pair,
    tomorrow_at,
    tracked,
    user_create_items,
    user_delete_items,
    user_update_items,
)
from tests.e2e.remote_agent import write_address  # noqa: E402

PHASES = ("initial", "echo", "incremental", "incremental_echo", "quiet")
DEFAULTS = {"contacts": 10_000, "appointments": 2_000, "series": 200, "tasks": 2_000}
CHANGED_SHARE = 0.01
"""Share of each kind changed by the incremental phase (half in the CRM, half in the mailbox)."""
FEW_SHARE = 0.001
"""Share of each kind created and deleted on each side by the incremental phase (at least 1)."""

_EWS_DEFAULTS = inspect.signature(EwsSide.__init__).parameters
LIMITS = {
    "crm_page": DEFAULT_PAGE_SIZE,
    "crm_batch_operations": MAX_BATCH_OPERATIONS,
    "ews_sync_page": int(_EWS_DEFAULTS["page_size"].default),
    "ews_fetch_batch": int(_EWS_DEFAULTS["fetch_batch"].default),
    "ews_write_batch": int(_EWS_DEFAULTS["write_batch"].default),
    "engine_batch": EngineSettings().batch_size,
}
FOLDERS = {
    "contacts": "contacts",
    "tasks": "tasks",
    "appointments": "calendar",
    "recurringappointments": "calendar",
}
CALENDAR_KINDS = ("appointments", "recurringappointments")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- what a phase must do, and the fewest requests for it ---------------------------------------


@dataclass
class KindWork:
    """What one kind's run has to move (the bench knows: it made the changes)."""

    crm_listed: int = 0
    """Rows the change-tracking read lists (all of them on a first read)."""
    crm_changed: int = 0
    """Rows created or changed in the CRM (read by id for their parties, calendar kinds)."""
    mailbox_listed: int = 0
    """Changes SyncFolderItems lists in the kind's folder before our writes."""
    mailbox_changed: int = 0
    """Items created or changed in the mailbox (GetItem for their fields)."""
    crm_writes: int = 0
    mailbox_creates: int = 0
    mailbox_updates: int = 0
    mailbox_deletes: int = 0
    untracks: int = 0


def crm_rows(pair: SandboxPair, entity_set: str) -> int:
    """How many rows the sandbox holds in `entity_set` (what a full read lists)."""
    with pair.dataverse.store.lock:
        return len(pair.dataverse.table(ORG, entity_set).rows)


DEFINED_TABLES = ("task", "appointment", "recurringappointmentmaster")
"""The tables whose definitions the kinds read (sync/crm/entities.py: contacts need none)."""


def fewest(work: Mapping[str, KindWork], first_run: bool) -> dict[str, int]:
    """The fewest requests per step of the formula in the module docstring."""
    b = max(1, min(LIMITS["engine_batch"], LIMITS["ews_write_batch"]))
    crm_write_batch = max(1, min(LIMITS["engine_batch"], LIMITS["crm_batch_operations"]))
    folders: dict[str, list[int]] = {}
    for name, w in work.items():
        listed = folders.setdefault(FOLDERS[name], [0, 0])
        listed[0] += w.mailbox_listed
        listed[1] += w.mailbox_changed
    marks = (2 if any(w.untracks for w in work.values()) else 0) or (1 if first_run else 0)
    steps = {
        # an install's first run reads the table definitions its date columns need (two
        # requests a table: the attributes and their DateTime cast) and the user's time zone;
        # later runs, in a new process too, take them from the local database for a day
        "crm table definitions": (2 * len(DEFINED_TABLES) + 1) if first_run else 0,
        "crm change tracking": sum(
            max(1, math.ceil(w.crm_listed / LIMITS["crm_page"])) for w in work.values()
        ),
        "crm read by id": sum(
            math.ceil(work[k].crm_changed / LIMITS["crm_batch_operations"])
            for k in CALENDAR_KINDS
            if k in work
        ),
        "crm writes": sum(math.ceil(w.crm_writes / crm_write_batch) for w in work.values()),
        "ews SyncFolderItems": sum(
            max(1, math.ceil(n / LIMITS["ews_sync_page"])) for n, _ in folders.values()
        ),
        "ews GetItem of changes": sum(
            math.ceil(n / LIMITS["ews_fetch_batch"]) for _, n in folders.values()
        ),
        "ews CreateItem + read-back": sum(
            2 * math.ceil(w.mailbox_creates / b) for w in work.values()
        ),
        "ews UpdateItem": sum(
            math.ceil(w.mailbox_updates / b) * (2 if name in CALENDAR_KINDS else 1)
            for name, w in work.items()
        ),
        "ews DeleteItem": sum(math.ceil(w.mailbox_deletes / b) for w in work.values()),
        "ews untracked marks": marks,
    }
    return steps


# --- the agent in a child process ----------------------------------------------------------------


def run_child(address: Path, kinds: Sequence[str] = ()) -> tuple[dict[str, Any], float]:
    """The agent's JSON line and the child's whole life in seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.remote_agent", str(address), *kinds],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the agent failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1])), seconds


def agent_baseline() -> dict[str, float]:
    """CPU and peak RSS of a child that imports the agent and does nothing else."""
    code = (
        "import json, resource\n"
        "from tests.e2e.remote_agent import peak_rss_mib\n"
        "u = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(json.dumps({'cpu_seconds': round(u.ru_utime + u.ru_stime, 3),"
        " 'peak_rss_mib': peak_rss_mib()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def phase(
    pair: SandboxPair, address: Path, work: Mapping[str, KindWork], first_run: bool = False
) -> dict[str, Any]:
    """Run the agent once over every kind and gather the phase's figures."""
    pair.log.clear()
    child, process_seconds = run_child(address)
    entries = pair.log.snapshot()
    by_operation = Counter(
        f"dataverse {e.method} {e.target}" if e.service == "dataverse" else f"ews {e.target}"
        for e in entries
    )
    crm = sum(e.service == "dataverse" for e in entries)
    ews = sum(e.service == "ews" for e in entries)
    steps = fewest(work, first_run)
    least = sum(steps.values())
    kinds = {
        name: {k: v for k, v in result.items() if k not in ("kind", "message")}
        for name, result in child["results"].items()
    }
    changed = sum(
        sum(r[side][c] for side in ("crm", "mailbox") for c in ("created", "updated", "deleted"))
        + r["untracked"]
        for r in kinds.values()
    )
    return {
        "wall_seconds": child["wall_seconds"],
        "process_seconds": round(process_seconds, 3),
        "cpu_seconds": child["cpu_seconds"],
        "peak_rss_mib": child["peak_rss_mib"],
        "requests_crm": crm,
        "requests_ews": ews,
        "requests_failed": sum(not 200 <= e.status < 300 for e in entries),
        "requests_by_operation": dict(sorted(by_operation.items())),
        "fewest_requests": least,
        "fewest_by_step": steps,
        "ratio": round((crm + ews) / least, 2),
        "changed": changed,
        "errors": sum(r["errors"] for r in kinds.values()),
        "kinds": kinds,
    }


# --- the incremental changes -----------------------------------------------------------------


@dataclass
class Changes:
    """The incremental phase's changes to one kind, and what they make the agent do."""

    crm_updates: list[str] = field(default_factory=list)
    mailbox_updates: list[str] = field(default_factory=list)
    crm_deletes: list[str] = field(default_factory=list)
    mailbox_deletes: list[str] = field(default_factory=list)
    crm_creates: int = 0
    mailbox_creates: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "crm_updated": len(self.crm_updates),
            "mailbox_updated": len(self.mailbox_updates),
            "crm_created": self.crm_creates,
            "mailbox_created": self.mailbox_creates,
            "crm_deleted": len(self.crm_deletes),
            "mailbox_deleted": len(self.mailbox_deletes),
        }

    def work(self) -> KindWork:
        crm_changed = len(self.crm_updates) + self.crm_creates
        mailbox_changed = len(self.mailbox_updates) + self.mailbox_creates
        return KindWork(
            crm_listed=crm_changed + len(self.crm_deletes),
            crm_changed=crm_changed,
            mailbox_listed=mailbox_changed + len(self.mailbox_deletes),
            mailbox_changed=mailbox_changed,
            crm_writes=len(self.mailbox_updates) + self.mailbox_creates,
            mailbox_creates=self.crm_creates,
            mailbox_updates=len(self.crm_updates),
            mailbox_deletes=len(self.crm_deletes),
            untracks=len(self.mailbox_deletes),
        )


def choose_changes(name: str, ids: Sequence[str]) -> Changes:
    """1 % of the records changed (half each side), a few created and deleted on each side;
    no record is touched twice (no conflicts). Series are not made in the mailbox."""
    n = len(ids)
    if n == 0:
        return Changes()
    changed = min(n, max(2, round(n * CHANGED_SHARE)))
    on_crm = math.ceil(changed / 2)
    few = max(1, round(n * FEW_SHARE))
    deletes = few if changed + 2 * few <= n else 0
    picked = iter(ids)

    def take(count: int) -> list[str]:
        return [next(picked) for _ in range(count)]

    return Changes(
        crm_updates=take(on_crm),
        mailbox_updates=take(changed - on_crm),
        crm_deletes=take(deletes),
        mailbox_deletes=take(deletes),
        crm_creates=few,
        mailbox_creates=0 if name == "recurringappointments" else few,
    )


def linked_items(data_dir: Path) -> dict[str, dict[str, str]]:
    """CRM id → mailbox item id per kind, from the agent's local database."""
    database = open_database(data_dir)
    try:
        store = SqlLinkStore(database, ORG_ID)
        return {
            name: {lk.crm_id: lk.mailbox_id for lk in store.load_links(name) if lk.mailbox_id}
            for name in KIND_NAMES
        }
    finally:
        database.dispose()


CRM_EDIT = {
    "contacts": lambda i: {"jobtitle": f"Head of {i}"},
    "tasks": lambda i: {"subject": f"Renamed in CRM {i}"},
    "appointments": lambda i: {"location": f"Moved {i}"},
    "recurringappointments": lambda i: {"subject": f"Series renamed in CRM {i}"},
}
MAILBOX_EDIT = {
    "contacts": lambda i: {"mobile_phone": f"+44 7700 1{i:05d}"},
    "tasks": lambda i: {"percent_complete": 75, "status": "InProgress"},
    "appointments": lambda i: {"subject": f"Renamed in Outlook {i}"},
    "recurringappointments": lambda i: {"subject": f"Series renamed in Outlook {i}"},
}


def mailbox_new(name: str, count: int) -> list[dict[str, Any]]:
    """Items made by hand in the mailbox with the tracked category (they go to the CRM)."""
    start = tomorrow_at(14)
    made: dict[str, Any] = {
        "contacts": lambda i: tracked(
            given_name=f"Outlook{i}", surname="Made", email_address_1=f"o{i}@new.example"
        ),
        "tasks": lambda i: tracked(subject=f"Outlook task {i}"),
        "appointments": lambda i: tracked(
            subject=f"Outlook meeting {i}",
            start=f"{start:%Y-%m-%dT%H:%M:%SZ}",
            end=f"{start.replace(hour=15):%Y-%m-%dT%H:%M:%SZ}",
            location="Cafe",
        ),
    }
    return [made[name](i) for i in range(count)]


def make_changes(pair: SandboxPair, data_dir: Path, chosen: Mapping[str, Changes]) -> None:
    """Apply the chosen changes: CRM edits over the Web API, mailbox edits as a user in Outlook
    would (a second EWS connection), CRM creates through the server's insert API."""
    crm = pair.crm_client()
    user = pair.mailbox_side()
    items = linked_items(data_dir)
    try:
        for name, changes in chosen.items():
            kind = KINDS[name]
            folder_kind = kind.mailbox_kind
            for i, crm_id in enumerate(changes.crm_updates):
                crm.update(kind.entity_set, crm_id, CRM_EDIT[name](i))
            for crm_id in changes.crm_deletes:
                crm.delete(kind.entity_set, crm_id)
            if changes.mailbox_updates:
                user_update_items(user, folder_kind, {
                    items[name][crm_id]: MAILBOX_EDIT[name](i)
                    for i, crm_id in enumerate(changes.mailbox_updates)
                })  # fmt: skip
            if changes.mailbox_deletes:
                user_delete_items(
                    user, folder_kind, [items[name][i] for i in changes.mailbox_deletes]
                )
            if changes.mailbox_creates:
                user_create_items(user, folder_kind, mailbox_new(name, changes.mailbox_creates))
            seed = {
                "contacts": lambda n: seed_contacts(pair, n, prefix="N"),
                "tasks": lambda n: seed_tasks(pair, n),
                "appointments": lambda n: seed_appointments(pair, n),
                "recurringappointments": lambda n: seed_series(pair, n),
            }[name]
            if changes.crm_creates:
                seed(changes.crm_creates)
    finally:
        crm.close()


# --- the benchmark ---------------------------------------------------------------------------------


def sizes_from(argv: Sequence[str] | None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    for name, default in DEFAULTS.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every number")
    args = parser.parse_args(argv)
    sizes = {name: getattr(args, name) for name in DEFAULTS}
    if args.scale != 1.0:
        sizes = {k: max(1, round(v * args.scale)) if v else 0 for k, v in sizes.items()}
    sizes["series"] = min(sizes["series"], sizes["appointments"])
    return sizes


def run(sizes: Mapping[str, int]) -> dict[str, Any]:
    seeded = {
        "contacts": sizes["contacts"],
        "tasks": sizes["tasks"],
        "appointments": sizes["appointments"] - sizes["series"],
        "recurringappointments": sizes["series"],
    }
    out: dict[str, Any] = {
        "cores": os.cpu_count(),
        "seeded": seeded,
        "limits": LIMITS,
        "agent_baseline": agent_baseline(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-sync-") as folder,
        start_pair(Path(folder)) as pair,
    ):
        log(f"seeding {seeded}")
        ids = {
            "contacts": seed_contacts(pair, seeded["contacts"]),
            "tasks": seed_tasks(pair, seeded["tasks"]),
            "appointments": seed_appointments(pair, seeded["appointments"]),
            "recurringappointments": seed_series(pair, seeded["recurringappointments"]),
        }
        data_dir = Path(folder) / "agent"
        address = write_address(pair, data_dir, Path(folder) / "address.json")
        nothing = {name: KindWork() for name in KIND_NAMES}

        log("initial sync")
        initial = {
            name: KindWork(
                crm_listed=n,
                crm_changed=n,
                mailbox_creates=n,
            )
            for name, n in seeded.items()
        }
        # the appointments set holds the series' occurrence rows as well: its read lists them
        initial["appointments"].crm_listed = crm_rows(pair, "appointments")
        out["initial"] = phase(pair, address, initial, first_run=True)
        log(f"initial: {out['initial']['wall_seconds']} s")
        out["echo"] = phase(pair, address, nothing)
        log(f"echo: {out['echo']['wall_seconds']} s")

        chosen = {name: choose_changes(name, ids[name]) for name in KIND_NAMES}
        make_changes(pair, data_dir, chosen)
        log("incremental sync")
        out["incremental"] = phase(pair, address, {n: c.work() for n, c in chosen.items()})
        out["incremental"]["changes_made"] = {n: c.counts() for n, c in chosen.items()}
        log(f"incremental: {out['incremental']['wall_seconds']} s")
        out["incremental_echo"] = phase(pair, address, nothing)
        out["quiet"] = phase(pair, address, nothing)
        log(f"quiet: {out['quiet']['wall_seconds']} s")
    out["errors"] = sum(out[p]["errors"] for p in PHASES)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run(sizes_from(argv))


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
