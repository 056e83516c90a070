"""bench/run_all.py (`make bench`) without the long phases: the vdirsyncer section really syncs
vCards between two folders in a child process, and the targets and the RESULTS.md table are
built from a phase's figures (met or not, honestly). Nothing about time."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.helpers import load_bench


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    return load_bench("run_all.py", "bench_run_all")


def test_vdirsyncer_copies_every_vcard_and_reports_its_cost(run_all: ModuleType) -> None:
    out = run_all.vdirsyncer_bench(30, run_all.vdir_baseline())
    assert out["copied"] == 30
    assert out["initial"]["code"] == 0 and out["quiet"]["code"] == 0
    assert out["initial"]["cpu_seconds"] > 0 and out["initial"]["peak_rss_mib"] > 0


def phase(cpu_ms: float, crm: int, ews: int, steps: dict[str, int]) -> dict[str, Any]:
    return {
        "wall_seconds": 1.0, "cpu_seconds": 2.0, "peak_rss_mib": 150.0, "cpu_ms_per_item": cpu_ms,
        "requests_crm": crm, "requests_ews": ews, "fewest_by_step": steps,
        "fewest_requests": sum(steps.values()), "changed": 10,
    }  # fmt: skip


def test_targets_say_met_or_not(run_all: ModuleType) -> None:
    steps = {"crm change tracking": 4, "ews SyncFolderItems": 3, "ews CreateItem + read-back": 20}
    initial = phase(0.9, 4, 30, steps)
    initial["side_ratio"] = run_all.side_ratio(initial)
    assert initial["side_ratio"] == {"crm": 1.0, "ews": round(30 / 23, 2)}
    quiet = phase(0, 4, 3, {"crm change tracking": 4, "ews SyncFolderItems": 3})
    out = {"sync": {"initial": initial, "quiet": quiet}}
    found = run_all.targets(out)
    assert found["initial_cpu_ms_per_item"]["met"] is True
    assert found["plan_cpu_ms_per_item"]["met"] is False
    assert found["initial_request_ratio_per_side"]["met"] is False  # EWS 1.3 > 1.1
    assert found["quiet_one_request_per_folder_and_set"]["met"] is True
    quiet["requests_ews"] = 7
    assert run_all.targets(out)["quiet_one_request_per_folder_and_set"]["met"] is False
