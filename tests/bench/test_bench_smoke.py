"""bench/bench_sync.py at about 1 % of the issue's numbers: every phase and figure is there, the
runs make no errors, the initial run fills the mailbox, the incremental run carries exactly the
changes the bench made, and a quiet run changes nothing. Nothing about time."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import load_bench

FIGURES = (
    "wall_seconds",
    "process_seconds",
    "cpu_seconds",
    "peak_rss_mib",
    "requests_crm",
    "requests_ews",
    "requests_by_operation",
    "fewest_requests",
    "fewest_by_step",
    "ratio",
    "changed",
    "errors",
    "kinds",
)
KIND_NAMES = ("contacts", "tasks", "appointments", "recurringappointments")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("bench_sync.py", "bench_sync")


@pytest.fixture(scope="module")
def figures(bench: ModuleType) -> dict[str, Any]:
    out: dict[str, Any] = bench.main(["--scale", "0.01"])
    json.dumps(out)  # printable as one JSON object
    return out


def test_scale_shrinks_every_number(bench: ModuleType) -> None:
    assert bench.sizes_from([]) == {
        "contacts": 10_000, "appointments": 2_000, "series": 200, "tasks": 2_000
    }  # fmt: skip
    assert bench.sizes_from(["--scale", "0.01"]) == {
        "contacts": 100, "appointments": 20, "series": 2, "tasks": 20
    }  # fmt: skip


def test_every_phase_has_every_figure(bench: ModuleType, figures: dict[str, Any]) -> None:
    assert figures["cores"] >= 1
    assert set(figures["agent_baseline"]) == {"cpu_seconds", "peak_rss_mib"}
    for name in bench.PHASES:
        section = figures[name]
        missing = [f for f in FIGURES if f not in section]
        assert not missing, (name, missing)
        assert set(section["kinds"]) == set(KIND_NAMES), name
        assert section["requests_crm"] > 0 and section["requests_ews"] > 0, name
        assert section["requests_crm"] + section["requests_ews"] == sum(
            section["requests_by_operation"].values()
        ), name
        assert section["fewest_requests"] == sum(section["fewest_by_step"].values()) > 0, name
        assert section["cpu_seconds"] > 0 and section["peak_rss_mib"] > 0, name


def test_no_phase_makes_errors(bench: ModuleType, figures: dict[str, Any]) -> None:
    assert figures["errors"] == 0
    for name in bench.PHASES:
        assert figures[name]["errors"] == 0, (name, figures[name]["kinds"])
        assert all(k["stopped"] is None for k in figures[name]["kinds"].values()), name


def test_initial_run_creates_the_seeded_records_in_the_mailbox(figures: dict[str, Any]) -> None:
    seeded = figures["seeded"]
    assert seeded == {"contacts": 100, "tasks": 20, "appointments": 18, "recurringappointments": 2}
    for name, n in seeded.items():
        result = figures["initial"]["kinds"][name]
        assert result["mailbox"] == {"created": n, "updated": 0, "deleted": 0}, name
        assert result["crm"] == {"created": 0, "updated": 0, "deleted": 0}, name


def test_incremental_run_carries_the_changes_made(figures: dict[str, Any]) -> None:
    phase = figures["incremental"]
    for name, made in phase["changes_made"].items():
        result = phase["kinds"][name]
        assert result["crm"] == {
            "created": made["mailbox_created"],
            "updated": made["mailbox_updated"],
            "deleted": 0,  # a mailbox delete never deletes in the CRM: it untracks
        }, name
        assert result["mailbox"] == {
            "created": made["crm_created"],
            "updated": made["crm_updated"],
            "deleted": made["crm_deleted"],
        }, name
        assert result["untracked"] == made["mailbox_deleted"], name
        assert result["conflicts"] == 0, name
    assert sum(m["crm_updated"] + m["mailbox_updated"] for m in phase["changes_made"].values()) > 0


def test_runs_without_changes_change_nothing(figures: dict[str, Any]) -> None:
    for name in ("echo", "incremental_echo", "quiet"):
        assert figures[name]["changed"] == 0, (name, figures[name]["kinds"])
    quiet = figures["quiet"]
    # nothing to move: no writes on either side
    writes = ("CreateItem", "UpdateItem", "DeleteItem", "$batch")
    assert not [op for op in quiet["requests_by_operation"] if op.endswith(writes)], quiet


def test_a_quiet_run_in_a_new_process_reads_each_folder_once(figures: dict[str, Any]) -> None:
    """Issue 13: each phase is a new process; the folders' ids come with the saved tokens, so a
    quiet run makes one SyncFolderItems per folder (contacts, tasks, calendar) and nothing else
    on EWS: no GetFolder."""
    ews = {
        k: v for k, v in figures["quiet"]["requests_by_operation"].items() if k.startswith("ews")
    }
    assert ews == {"ews SyncFolderItems": 3}, ews
