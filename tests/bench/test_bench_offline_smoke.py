"""bench/bench_offline.py at its small size (1,000 rows, 40 changes): every figure is there, the
download keeps every row in the fewest requests but the progress bar's count, every list query
answers a page, and going online leaves the server as the queued changes say (checked from the
sandbox's own store). Nothing about time."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.helpers import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("bench_offline.py", "bench_offline")


@pytest.fixture(scope="module")
def figures(bench: ModuleType) -> dict[str, Any]:
    return dict(bench.run(dict(bench.SMALL)))


def test_go_offline_keeps_every_row_in_the_fewest_requests_but_the_count(
    bench: ModuleType, figures: dict[str, Any]
) -> None:
    down = figures["go_offline"]
    rows = bench.SMALL["rows"]
    assert down["rows"] == {"contacts": rows}
    # one page of 5,000 and the six metadata requests; the one request more is the count the
    # progress bar runs to (`@odata.count`, under 5,000 rows: no id paging)
    assert down["fewest_requests"] == bench.METADATA_FEWEST + 1
    assert down["requests_seen"] == {"GET EntityDefinitions": 7, "GET contacts": 2}
    assert down["requests"] == sum(down["requests_seen"].values())
    for figure in ("wall_seconds", "cpu_seconds", "peak_rss_mib", "sandbox_seconds"):
        assert down[figure] > 0


def test_every_list_query_answers_its_page(bench: ModuleType, figures: dict[str, Any]) -> None:
    listing = figures["list_page"]
    assert listing["rows"] == bench.SMALL["rows"]
    pages = {k: v for k, v in listing.items() if isinstance(v, dict)}
    assert len(pages) == 8 and all(p["median_ms"] > 0 for p in pages.values())
    # a page of rows is far longer than "no match", and one match is a one-row page
    assert listing["search, no match"]["bytes"] < listing["search, one match"]["bytes"]
    assert listing["search, one match"]["bytes"] < listing["first page"]["bytes"]


def test_go_online_replays_every_change_once_in_the_fewest_requests(
    bench: ModuleType, figures: dict[str, Any]
) -> None:
    up = figures["go_online"]
    changes = bench.SMALL["changes"]
    merges = changes * 5 // 100
    assert up["queued"] == changes
    assert (up["replayed"], up["conflicts"], up["failed"]) == (changes, 0, 0)
    assert up["merged"] == merges and up["online"] is True
    assert up["server_checks"] == dict.fromkeys(up["server_checks"], True)
    assert len(up["server_checks"]) == 5
    assert up["requests"] == up["fewest_requests"] == bench.fewest_replay(changes, merges)
    assert up["requests"] == sum(up["requests_seen"].values())


def test_the_table_lists_both_steps_and_every_query(
    bench: ModuleType, figures: dict[str, Any]
) -> None:
    text = bench.table(figures)
    assert "| go offline | 1000 rows |" in text and "| go online | 40 changes |" in text
    assert text.count("\n| search,") == 3
