"""One progress model for a run: the phase, done and total of each kind it syncs.

Stored in `Run.progress` as `{kind: {"phase": str, "done": int, "total": int}}`, in the order
the run takes the kinds. The dashboard's bar and heading, the runs table's Progress column,
`status --json` and the terminal bar of `sync --once` all read it through this module, so they
cannot disagree: a bar computed from the current step alone stayed empty while the heading said
"tasks: read (4/4)", and one fed the last kind's counts never filled.

The engine reports its own phase names ("read", "apply"; email tracking the folder it reads);
`PHASE_WORDS` gives people's words for them, translated where shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync.setup.messages import N_, Msg

WAITING = "waiting"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"
FINISHED = (DONE, FAILED, SKIPPED)
"""Phases after which a kind does nothing more in this run (its share of the bar is full)."""

PHASES: dict[str, str] = {
    "read": "read",
    "apply": "write",
    "sending email": "send",
    WAITING: WAITING,
    DONE: DONE,
    FAILED: FAILED,
    SKIPPED: SKIPPED,
}
"""The reporters' phase names → the model's; any other (email tracking's folder names) is
reading."""

PHASE_WORDS: dict[str, Msg] = {
    WAITING: N_("waiting"),
    "read": N_("reading"),
    "write": N_("writing"),
    "send": N_("sending"),
    DONE: N_("done"),
    FAILED: N_("failed"),
    SKIPPED: N_("not run"),
}

KIND_TITLES: dict[str, Msg] = {
    "contacts": N_("Contacts"),
    "appointments": N_("Appointments"),
    "tasks": N_("Tasks"),
    "email": N_("Email tracking"),
    "outgoing": N_("Outgoing email"),
}
"""What a person calls each row (the dashboard's card titles)."""
SHOWN_AS: dict[str, str] = {"recurringappointments": "appointments"}
"""Engine kinds shown as part of another kind's row (a series is an appointment to a user)."""

READ_SHARE = 0.1
"""The part of a kind's bar that the engine's reading fills (reported with no count: how long
it takes is unknown until it is done); writing fills the rest."""


def phase_of(reported: str | None) -> str:
    """The model's phase for a phase name a reporter gave."""
    return PHASES.get(reported or "", "read")


def updated(
    model: Mapping[str, Any] | None, kind: str, phase: str, done: int = 0, total: int = 0
) -> dict[str, Any]:
    """A new model with `kind`'s entry set (a new object: the JSON column sees the change)."""
    new = {name: dict(entry) for name, entry in (model or {}).items()}
    new[kind] = {"phase": phase, "done": max(0, done), "total": max(0, total)}
    return new


def kind_fraction(entry: Mapping[str, Any]) -> float:
    """How much of one kind's work is done, 0 to 1."""
    phase = entry.get("phase")
    done, total = int(entry.get("done") or 0), int(entry.get("total") or 0)
    if phase in FINISHED:
        return 1.0
    if phase == WAITING:
        return 0.0
    share = min(done / total, 1.0) if total else 0.0
    if phase == "write":
        return READ_SHARE + (1 - READ_SHARE) * (share if total else 1.0)
    if phase == "read" and not total:
        return READ_SHARE / 2  # the engine reads with no count: started, no more is known
    return share  # a counted read (email's folders) or send is the whole of that stage


def percent(model: Mapping[str, Any] | None) -> int:
    """The whole run's progress, 0 to 100: each kind an equal share; 100 only once all ended."""
    if not model:
        return 0
    fractions = [kind_fraction(entry) for entry in model.values()]
    whole = sum(fractions) / len(fractions)
    if all(entry.get("phase") in FINISHED for entry in model.values()):
        return 100
    return min(int(whole * 100), 99)


@dataclass
class Row:
    """One kind as shown: its title and phase (messages to translate), counts and share."""

    kind: str
    title: Msg | str
    phase: str
    phase_word: Msg | str
    done: int
    total: int
    percent: int

    @property
    def active(self) -> bool:
        return self.phase not in FINISHED and self.phase != WAITING


def rows(model: Mapping[str, Any] | None) -> list[Row]:
    """The model's kinds as people see them, engine kinds merged into the row they belong to."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for kind, entry in (model or {}).items():
        if isinstance(entry, Mapping):
            grouped.setdefault(SHOWN_AS.get(kind, kind), []).append(entry)
    shown = []
    for kind, entries in grouped.items():
        current = next(
            (e for e in entries if e.get("phase") not in (*FINISHED, WAITING)),
            None,
        )
        if current is None:
            failed = next((e for e in entries if e.get("phase") == FAILED), None)
            waiting = next((e for e in entries if e.get("phase") == WAITING), None)
            current = failed or waiting or entries[-1]
            if current is waiting and any(e.get("phase") in FINISHED for e in entries):
                current = {"phase": "read", "done": 0, "total": 0}  # between its two parts
        phase = str(current.get("phase") or WAITING)
        fraction = sum(kind_fraction(e) for e in entries) / len(entries)
        shown.append(
            Row(
                kind=kind,
                title=KIND_TITLES.get(kind, kind),
                phase=phase,
                phase_word=PHASE_WORDS.get(phase, phase),
                done=int(current.get("done") or 0),
                total=int(current.get("total") or 0),
                percent=100 if fraction >= 1.0 else min(int(fraction * 100), 99),
            )
        )
    return shown


def current_row(model: Mapping[str, Any] | None) -> Row | None:
    """The kind being worked on now (None between kinds or once all ended)."""
    return next((row for row in rows(model) if row.active), None)


def as_json(model: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The model for `status --json`: the run's percent and each kind's row, in English."""
    if not model:
        return None
    return {
        "percent": percent(model),
        "kinds": [
            {
                "kind": row.kind,
                "title": str(row.title),
                "phase": row.phase,
                "done": row.done,
                "total": row.total,
                "percent": row.percent,
            }
            for row in rows(model)
        ],
    }


def describe(model: Mapping[str, Any] | None) -> str:
    """One line in English for the terminal: the kind worked on now and its phase."""
    row = current_row(model)
    if row is None:
        ended = rows(model)
        return "done" if ended and all(r.phase in FINISHED for r in ended) else "starting"
    counts = f" {row.done}/{row.total}" if row.total else ""
    return f"{row.title}: {row.phase_word}{counts}"


def draw_bar(done: int, total: int, phase: str | None, counts: bool = False) -> None:
    """One line on the terminal (stderr), redrawn in place: the phase in words and a bar, with
    the percent (or `done/total` when `counts`: the offline download counts rows)."""
    import sys

    width = 30
    filled = min(int(width * done / total), width) if total else 0
    if not total:
        tail = ""
    elif counts:
        tail = f" {done}/{total}"
    else:
        tail = f" {100 * done // total:3d} %"
    line = f"\r{(phase or 'sync')[:40]:<40} [{'#' * filled}{'.' * (width - filled)}]{tail}"
    print(line, end="", file=sys.stderr, flush=True)
