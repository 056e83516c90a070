"""The agent's process killed outright (SIGKILL) in the middle of a sync, then started again on
the same local database: no record may be duplicated or lost (DESIGN.md §5).

tests/e2e/test_reliability.py crashes the engine inside the test process; here a real child
process (`python -m tests.e2e.remote_agent`) syncs over HTTP against the sandbox servers and
dies at a chosen point:

- *answered*: right after the server answered the k-th write of a kind (the log shows it), so
  the agent dies somewhere between reading the answer and committing its links;
- *applied*: as soon as the sandbox CRM holds the k-th new row, while its `$batch` is still
  being answered (the answer may never reach the agent);
- *in flight*: a write request is held in the server before it is applied; the agent is killed
  while it waits, then the server applies the write for a client that no longer exists (or,
  `after=True`, the write is applied first and only its answer is held).

The agent is then run again without faults until it exits cleanly, and once more: that last
run must change nothing. Both sides are then compared record by record, by a marker field that
is unique per seeded record (a contact's last name, an activity's subject): each once on each
side, linked one to one, equal under the mapping, the users' edits kept.

The last two tests keep two bugs found this way fixed: a series' exception rows lost when the
agent died between the master's write and theirs (now merged occurrence by occurrence), and a
mailbox copy the user deleted right after the run that made it (no kill needed).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.engine.state import SYNCED, UNTRACKED
from sync.kinds import KINDS, exceptions
from sync.kinds.base import Kind
from sync.sides import DeleteOp, UpdateOp, Upsert
from tests.e2e.harness import (
    KIND_NAMES,
    ORG,
    SandboxPair,
    full_read,
    in_step,
    moment,
    seed_appointments,
    seed_contacts,
    seed_series,
    seed_tasks,
    snapshots,
    start_pair,
    tomorrow_at,
    tracked,
    user_create_items,
    user_delete_items,
    user_update_items,
)
from tests.e2e.remote_agent import agent_at, write_address

ROOT = Path(__file__).resolve().parents[2]
BATCH_SIZE = 4
"""Small batches: many write requests, so many places to die at."""
N_CONTACTS, N_TASKS, N_APPOINTMENTS, N_SERIES = 16, 6, 6, 2
N_TRACKED_CONTACTS, N_TRACKED_TASKS, N_TRACKED_APPOINTMENTS = 5, 2, 2
POLL = 0.002
"""Seconds between two looks at the servers while the agent runs."""
GUARD = 60.0
"""Seconds after which a run or a held request is given up as hung (a guard, not a measure)."""
RESTARTS = 3


# --- the world: both sides seeded, the markers every record must keep exactly once ----------------


@dataclass
class World:
    """A sandbox pair, the agent's address file (its local database lives beside it) and what
    both sides must hold in the end."""

    pair: SandboxPair
    work_dir: Path
    address: Path
    expected: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KIND_NAMES})
    """Per kind, the marker (title) of every record that must exist once on each side."""
    untracked: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KIND_NAMES})
    """Per kind, markers of records whose copy the user deleted in the mailbox: once in the CRM,
    not in the mailbox, their link untracked."""
    edits: list[tuple[str, str, str, Any]] = field(default_factory=list)
    """(kind, marker, canonical field, value) made by a user: must win on both sides."""
    runs: int = 0

    def log_path(self, suffix: str) -> Path:
        return self.work_dir / f"run{self.runs}.{suffix}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with start_pair(tmp_path) as pair:
        address = write_address(pair, tmp_path / "agent", tmp_path / "address.json",
                                batch_size=BATCH_SIZE)  # fmt: skip
        yield World(pair, tmp_path, address)


def seed_both_sides(world: World) -> None:
    """CRM records to copy into the mailbox and tracked mailbox items to copy into the CRM, of
    every kind, single appointments and recurring series alike."""
    pair, expected = world.pair, world.expected
    seed_contacts(pair, N_CONTACTS, prefix="C")
    expected["contacts"] |= {f"CLast{i}" for i in range(N_CONTACTS)}
    seed_tasks(pair, N_TASKS)
    expected["tasks"] |= {f"Follow up {i}" for i in range(N_TASKS)}
    seed_appointments(pair, N_APPOINTMENTS)
    expected["appointments"] |= {f"Meeting {i}" for i in range(N_APPOINTMENTS)}
    seed_series(pair, N_SERIES)
    expected["recurringappointments"] |= {f"Series {i}" for i in range(N_SERIES)}

    mailbox = pair.mailbox_side()
    tracked_contacts = [f"Tracked{i}" for i in range(N_TRACKED_CONTACTS)]
    made = [tracked(given_name="Outlook", surname=s) for s in tracked_contacts]
    user_create_items(mailbox, "contacts", made)
    expected["contacts"] |= set(tracked_contacts)
    tracked_tasks = [f"Outlook task {i}" for i in range(N_TRACKED_TASKS)]
    user_create_items(mailbox, "tasks", [tracked(subject=s) for s in tracked_tasks])
    expected["tasks"] |= set(tracked_tasks)
    start = tomorrow_at(14)
    meetings = [f"Outlook meeting {i}" for i in range(N_TRACKED_APPOINTMENTS)]
    user_create_items(
        mailbox,
        "appointments",
        [
            tracked(subject=s, start=moment(start + timedelta(days=i)),
                    end=moment(start + timedelta(days=i, hours=1)), location="Cafe")
            for i, s in enumerate(meetings)
        ],
    )  # fmt: skip
    expected["appointments"] |= set(meetings)
    first = start.replace(hour=10)
    user_create_items(
        mailbox,
        "appointments",
        [
            tracked(subject="Outlook series", start=moment(first),
                    end=moment(first + timedelta(minutes=30)), timezone="UTC",
                    recurrence={"pattern": {"type": "daily", "interval": 1},
                                "range": {"type": "numbered", "start": f"{first:%Y-%m-%d}",
                                          "end": None, "count": 5}})
        ],
    )  # fmt: skip
    expected["recurringappointments"].add("Outlook series")


def by_marker(side_records: dict[str, Upsert], kind: str, on_crm: bool) -> dict[str, Upsert]:
    spec = KINDS[kind]
    out = {}
    for record in side_records.values():
        values = spec.crm_values(record.fields) if on_crm else spec.mailbox_values(record.fields)
        out[marker(spec, values)] = record
    return out


def edit_both_sides(world: World) -> None:
    """After a complete sync: users change records on both sides and make a few new ones."""
    pair = world.pair
    crm, mailbox = pair.crm_side(), pair.mailbox_side()
    crm_contacts = by_marker(full_read(crm, "contacts"), "contacts", on_crm=True)
    items = by_marker(full_read(mailbox, "contacts"), "contacts", on_crm=False)
    in_crm = [f"CLast{i}" for i in range(0, 6)]
    in_mailbox = [f"CLast{i}" for i in range(6, 12)] + ["Tracked0", "Tracked1"]
    ops = [UpdateOp(crm_contacts[m].id, None, {"jobtitle": f"CRM title {m}"}) for m in in_crm]
    assert all(not isinstance(r, Exception) for r in crm.write("contacts", ops))
    world.edits += [("contacts", m, "jobtitle", f"CRM title {m}") for m in in_crm]
    changes = {items[m].id: {"job_title": f"Outlook title {m}"} for m in in_mailbox}
    user_update_items(mailbox, "contacts", changes)
    world.edits += [("contacts", m, "jobtitle", f"Outlook title {m}") for m in in_mailbox]

    meetings = by_marker(full_read(crm, "appointments"), "appointments", on_crm=True)
    moved = [f"Meeting {i}" for i in range(4)]
    ops = [UpdateOp(meetings[m].id, None, {"location": f"Room {m}"}) for m in moved]
    assert all(not isinstance(r, Exception) for r in crm.write("appointments", ops))
    world.edits += [("appointments", m, "location", f"Room {m}") for m in moved]

    seed_contacts(pair, 3, prefix="N")
    world.expected["contacts"] |= {f"NLast{i}" for i in range(3)}
    fresh = ["Fresh0", "Fresh1"]
    user_create_items(mailbox, "contacts", [tracked(given_name="New", surname=s) for s in fresh])
    world.expected["contacts"] |= set(fresh)

    # Deleted in the CRM: the copies leave the mailbox. The user deletes in the mailbox a copy
    # of an item they tracked there and a copy the first sync made (untracked: the CRM records
    # stay); that one was made after the last run's read of the mailbox.
    gone = ["CLast12", "CLast13"]
    ops = [DeleteOp(crm_contacts[m].id, None) for m in gone]
    assert all(not isinstance(r, Exception) for r in crm.write("contacts", ops))
    world.expected["contacts"] -= set(gone)
    [op] = [DeleteOp(meetings["Meeting 5"].id, None)]
    assert all(not isinstance(r, Exception) for r in crm.write("appointments", [op]))
    world.expected["appointments"].discard("Meeting 5")
    user_delete_items(mailbox, "contacts", [items["Tracked4"].id, items["CLast14"].id])
    world.expected["contacts"] -= {"Tracked4", "CLast14"}
    world.untracked["contacts"] |= {"Tracked4", "CLast14"}


# --- where the agent dies -------------------------------------------------------------------------


class Armed:
    """A kill point watching the servers during one run."""

    def ready(self) -> bool:
        raise NotImplementedError

    def after_kill(self) -> None:
        """The agent is dead: let the servers finish what they hold."""


@dataclass(frozen=True)
class Answered:
    """Die right after the server answered the `nth` request `target` of this run."""

    service: str
    target: str
    nth: int

    def arm(self, pair: SandboxPair) -> Armed:
        start, point = len(pair.log), self

        class Watch(Armed):
            def ready(self) -> bool:
                done = [
                    e
                    for e in pair.log.snapshot()[start:]
                    if (e.service, e.target, e.status) == (point.service, point.target, 200)
                ]
                return len(done) >= point.nth

        return Watch()


@dataclass(frozen=True)
class Applied:
    """Die as soon as the sandbox CRM holds `nth` new rows of `entity_set` (the `$batch` that
    makes them may still be running, its answer not sent)."""

    entity_set: str
    nth: int = 1

    def arm(self, pair: SandboxPair) -> Armed:
        table = pair.dataverse.table(ORG, self.entity_set)
        wanted = len(table) + self.nth

        class Watch(Armed):
            def ready(self) -> bool:
                return len(table) >= wanted

        return Watch()


@dataclass(frozen=True)
class Request:
    """Which requests a `Held` point waits for: a pattern over the request body."""

    service: str  # "ews" or "dataverse"
    pattern: str

    def __call__(self, body: bytes) -> bool:
        return re.search(self.pattern.encode(), body, re.MULTILINE) is not None


def ews_op(operation: str, inside: str | None = None) -> Request:
    """An EWS request of `operation` (with an `inside` element somewhere after it)."""
    pattern = rf"<\w+:{operation}\b" + (rf"[\s\S]*<\w+:{inside}\b" if inside else "")
    return Request("ews", pattern)


def crm_write(method: str, entity_set: str) -> Request:
    """A Dataverse `$batch` with a `method` (POST, PATCH) on `entity_set`."""
    return Request("dataverse", rf"^{method} \S*/{entity_set}\b")


@dataclass(frozen=True)
class Held:
    """Hold the `nth` matching request in the server: before it is applied (the server applies
    it once the agent is dead) or, `after=True`, after it is applied and before its answer."""

    request: Request
    nth: int = 1
    after: bool = False

    def arm(self, pair: SandboxPair) -> Armed:
        ews = self.request.service == "ews"
        owner: Any = pair.ews if ews else pair.dataverse
        name = "handle_soap" if ews else "serve"
        inner = getattr(owner, name)
        point = self
        seen = 0
        lock = threading.Lock()
        held, release, done = threading.Event(), threading.Event(), threading.Event()

        def gate(*args: Any) -> Any:  # the request body is the last argument of both
            nonlocal seen
            with lock:
                mine = point.request(args[-1]) and (seen := seen + 1) == point.nth
            if not mine:
                return inner(*args)
            try:
                if point.after:
                    answer = inner(*args)
                    held.set()
                    release.wait(GUARD)
                    return answer
                held.set()
                release.wait(GUARD)
                return inner(*args)
            finally:
                done.set()

        setattr(owner, name, gate)

        class Gate(Armed):
            def ready(self) -> bool:
                return held.is_set()

            def after_kill(self) -> None:
                release.set()
                if held.is_set():
                    assert done.wait(GUARD), "the held request never finished"
                delattr(owner, name)  # the server's own method again

        return Gate()


KillPoint = Answered | Applied | Held


# --- running the agent in its own process ---------------------------------------------------------


def spawn(world: World) -> tuple[subprocess.Popen[bytes], Path]:
    world.runs += 1
    out, err = world.log_path("out"), world.log_path("err")
    with out.open("wb") as stdout, err.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.remote_agent", str(world.address)],
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
        )
    return child, out


def reap(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()
    child.wait()


def run_killed(world: World, point: KillPoint) -> None:
    """One run of the agent, killed with SIGKILL at `point`."""
    armed = point.arm(world.pair)
    child: subprocess.Popen[bytes] | None = None
    killed = False
    try:
        child, _ = spawn(world)
        give_up = time.monotonic() + GUARD
        while child.poll() is None and time.monotonic() < give_up:
            if armed.ready():
                child.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(POLL)
        child.wait(timeout=GUARD)
    finally:
        if child is not None:
            reap(child)
        armed.after_kill()
    assert child is not None
    err = world.log_path("err").read_text(errors="replace")[-2000:]
    assert killed, f"the run ended (exit {child.returncode}) before {point}:\n{err}"
    assert child.returncode == -signal.SIGKILL


def run_to_end(world: World) -> dict[str, dict[str, Any]]:
    """Run the agent until a run exits cleanly; its per-kind results."""
    failures = []
    for _ in range(RESTARTS):
        child, out = spawn(world)
        try:
            child.wait(timeout=GUARD)
        finally:
            reap(child)
        if child.returncode == 0:
            return dict(json.loads(out.read_text())["results"])
        failures.append(world.log_path("err").read_text(errors="replace")[-3000:])
    raise AssertionError(f"no clean run in {RESTARTS} attempts:\n" + "\n---\n".join(failures))


def changes_made(result: dict[str, Any]) -> dict[str, Any]:
    """What a run's result says it did (empty: nothing)."""
    did = {
        f"{side}.{what}": n for side in ("crm", "mailbox") for what, n in result[side].items() if n
    }
    did |= {k: result[k] for k in ("untracked", "relinked", "conflicts", "errors") if result[k]}
    if result["stopped"]:
        did["stopped"] = result["stopped"]
    return did


# --- the checks -----------------------------------------------------------------------------------


def marker(kind: Kind, values: Mapping[str, Any]) -> str:
    """The seeded value that names a record here: a contact's last name, else the subject
    (the kinds' titles are for people: a contact's is its full name)."""
    return str(values.get("lastname" if kind.name == "contacts" else "subject") or "")


def check_whole(world: World) -> None:
    """Every seeded record and tracked item exactly once on each side (the untracked ones once
    in the CRM only), linked one to one, both sides equal under the mapping, and the users'
    edits on both sides."""
    agent = agent_at(json.loads(world.address.read_text()))
    try:
        snaps = snapshots(agent)
        problems: list[str] = []
        for name, snap in snaps.items():
            kind = KINDS[name]
            crm_titles = {i: marker(kind, snap.crm_values(i)) for i in snap.crm_all}
            item_titles = {i: marker(kind, snap.mailbox_values(i)) for i in snap.mailbox}
            both, crm_only = world.expected[name], world.untracked[name]
            for side, titles, wanted in (
                ("CRM", crm_titles, both | crm_only),
                ("mailbox", item_titles, both),
            ):
                seen = Counter(titles.values())
                problems += [f"{name}: {n} × {t!r} in the {side}" for t, n in seen.items() if n > 1]
                lost = sorted(wanted - set(seen))
                problems += [f"{name}: {t!r} lost in the {side}" for t in lost]
                extra = sorted(set(seen) - wanted)
                problems += [f"{name}: {t!r} unexpected in the {side}" for t in extra]
            links = agent.links(name)
            synced = [lk for lk in links if lk.state == SYNCED]
            untracked = {crm_titles.get(lk.crm_id) for lk in links if lk.state == UNTRACKED}
            others = [lk for lk in links if lk.state not in (SYNCED, UNTRACKED)]
            problems += [f"{name}: link {lk.crm_id} is {lk.state}" for lk in others]
            if untracked != crm_only:
                problems.append(f"{name}: untracked links of {untracked}, wanted {crm_only}")
            by_item = Counter(lk.mailbox_id for lk in synced)
            problems += [f"{name}: item linked {n} times" for n in by_item.values() if n > 1]
            pairs = [
                (crm_titles.get(lk.crm_id), item_titles.get(lk.mailbox_id or "")) for lk in synced
            ]
            problems += [f"{name}: link joins {c!r} and {m!r}" for c, m in pairs
                         if c != m or c is None]  # fmt: skip
            if len(synced) != len(both):
                problems.append(f"{name}: {len(synced)} synced links for {len(both)} records")
        for name, wanted_marker, column, value in world.edits:
            kind, snap = KINDS[name], snaps[name]
            crm = [snap.crm_values(i) for i in snap.crm_all]
            items = [snap.mailbox_values(i) for i in snap.mailbox]
            in_crm = [v.get(column) for v in crm if marker(kind, v) == wanted_marker]
            in_mailbox = [v.get(column) for v in items if marker(kind, v) == wanted_marker]
            if in_crm != [value] or in_mailbox != [value]:
                problems.append(f"{name} {wanted_marker!r} {column}: CRM {in_crm}, mailbox {in_mailbox}; "
                                f"the user's edit was {value!r}")  # fmt: skip
        assert problems == [], "\n".join(problems)
        assert in_step(agent, snaps) == {}
    finally:
        agent.database.dispose()


def recover_and_check(world: World) -> None:
    run_to_end(world)  # the agent starts again on the same local database, no faults
    quiet = run_to_end(world)
    assert {k: d for k, r in quiet.items() if (d := changes_made(r))} == {}
    check_whole(world)


# --- the tests ------------------------------------------------------------------------------------

EWS = "ews"

INITIAL = {
    # Twice in a row: after the third CreateItem of the contacts' copies was answered (3 of 4
    # batches), then, in the next run, as the first tracked contact lands in the CRM.
    "mailbox-create-then-crm-create": [Answered(EWS, "CreateItem", 3), Applied("contacts")],
    # A recurring series' CreateItem in flight: Exchange makes it after the agent died.
    "mailbox-series-in-flight": [Held(ews_op("CreateItem", "Recurrence"))],
    # A series made from a tracked mailbox series: applied in the CRM, its answer lost.
    "crm-series-answer-lost": [Held(crm_write("POST", "recurringappointmentmasters"), after=True)],
}


@pytest.mark.parametrize("where", list(INITIAL))
def test_killed_during_the_first_sync_neither_duplicates_nor_drops(
    world: World, where: str
) -> None:
    seed_both_sides(world)
    for point in INITIAL[where]:
        run_killed(world, point)
    recover_and_check(world)


UPDATES = {
    # Twice in a row: after the first UpdateItem carrying the CRM's edits was answered, then,
    # in the next run, while the DeleteItem of the copies of records deleted in the CRM is in
    # flight (Exchange deletes them after the agent died).
    "mailbox-update-then-delete-in-flight": [
        Answered(EWS, "UpdateItem", 1),
        Held(ews_op("DeleteItem")),
    ],
    # Copying the mailbox's edits into the CRM: the PATCH batch in flight.
    "crm-update-in-flight": [Held(crm_write("PATCH", "contacts"))],
}


@pytest.mark.parametrize("where", list(UPDATES))
def test_killed_while_syncing_edits_and_deletions_neither_duplicates_nor_drops(
    world: World, where: str
) -> None:
    seed_both_sides(world)
    run_to_end(world)
    edit_both_sides(world)
    for point in UPDATES[where]:
        run_killed(world, point)
    recover_and_check(world)


def move_and_delete_occurrences(world: World) -> None:
    """In the mailbox, the user moves the second occurrence of a series made from the CRM three
    hours later and deletes the third: one exception row and one deleted-list entry in the CRM."""
    kind = KINDS["recurringappointments"]
    mailbox = world.pair.mailbox_side()
    items = {k: u for k, u in full_read(mailbox, "appointments").items()
             if kind.mailbox_accepts(u.fields)}  # fmt: skip
    series = by_marker(items, "recurringappointments", on_crm=False)["Series 0"]
    first = datetime.fromisoformat(str(series.fields["start"]).replace("Z", "+00:00"))
    step = timedelta(days=2)  # Series 0: every other day (harness._PATTERNS[0])
    moved = {
        "original_start": moment(first + step),
        "start": moment(first + step + timedelta(hours=3)),
        "end": moment(first + step + timedelta(hours=3, minutes=45)),
    }
    deleted = moment(first + 2 * step)
    user_update_items(
        mailbox,
        "appointments",
        {series.id: {"modified_occurrences": [moved], "deleted_occurrences": [deleted]}},
    )
    wanted = exceptions.value([deleted], [moved])
    now = mailbox.read("appointments", [series.id])[series.id]
    assert kind.mailbox_values(now.fields)["exceptions"] == wanted
    world.edits.append(("recurringappointments", "Series 0", "exceptions", wanted))


def test_killed_between_a_series_and_its_exception_rows_keeps_the_moved_occurrence(
    world: World,
) -> None:
    seed_both_sides(world)
    run_to_end(world)
    move_and_delete_occurrences(world)
    # The master's PATCH (its deleted-occurrence list) is applied, its answer never arrives:
    # the agent dies before it writes the exception row of the moved occurrence.
    run_killed(world, Held(crm_write("PATCH", "recurringappointmentmasters"), after=True))
    recover_and_check(world)


# --- found on the way (no kill needed) ------------------------------------------------------------


def test_a_copy_deleted_right_after_the_run_that_made_it_is_untracked(world: World) -> None:
    seed_contacts(world.pair, 4, prefix="D")
    agent = agent_at(json.loads(world.address.read_text()))
    try:
        assert agent.sync(["contacts"])["contacts"].mailbox.created == 4
        mailbox = world.pair.mailbox_side()
        items = by_marker(full_read(mailbox, "contacts"), "contacts", on_crm=False)
        user_delete_items(mailbox, "contacts", [items["DLast0"].id])
        assert agent.sync(["contacts"])["contacts"].untracked == 1
        assert in_step(agent, snapshots(agent, ["contacts"])) == {}
    finally:
        agent.database.dispose()
