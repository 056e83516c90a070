"""SIGKILL during replay, again and again at random points, then a clean go-online: every
queued change is on the server exactly once, nothing is duplicated, nothing lost (issue 12:
"SIGKILL during replay at ≥ 20 random points, then restart → no duplicates, nothing lost").

Each child process (tests/offline/replay_agent.py) replays from where the last one died and
kills itself at a random point: just before a call (the journal says "sending") or just after
the server applied it (the journal does not know yet). A queue of twenty-one changes makes
twenty kills."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from sync.offline.service import OfflineService
from sync.store.db import Database
from tests.helpers import ROOT
from tests.offline.conftest import ALICE, Sandbox

GUARD = 60.0
"""Seconds after which a child is given up as hung (a guard, not a measure)."""


def _agent(address: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "tests.offline.replay_agent", str(address)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert done.returncode in (0, -9), done.stderr[-2000:]
    return done.returncode


def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    service: OfflineService,
    database: Database,
    running: Sandbox,
    me: str,
    tmp_path: Path,
) -> None:
    rng = random.Random(12)
    service.go_offline()
    store = service.store()
    existing = [r.id for r in store.list("contacts", page_size=14).records]
    assert len(existing) == 14
    marker = "Kill12"
    created = [
        store.create("contacts", {"firstname": f"N{n}", "lastname": marker}) for n in range(8)
    ]
    for n, row_id in enumerate(created[:2]):
        store.update("contacts", row_id, {"jobtitle": f"made {n}"})
    for n, row_id in enumerate(existing[:12]):
        store.update("contacts", row_id, {"jobtitle": f"{marker} edit {n}"})
    store.delete("contacts", existing[12])
    store.delete("contacts", existing[13])
    store.delete("contacts", created[7])  # created and deleted offline: never sent
    server_edit = existing[0]
    with running.http() as http:  # a non-overlapping server change meanwhile
        answer = http.patch(running.api + f"contacts({server_edit})", json={"department": "S"})
        assert answer.status_code == 204
    # the edits of a row are one change: 7 creates, 12 updates, 2 deletes
    assert len(store.pending()) == 21
    address = tmp_path / "address.json"
    kills = 0
    while store.pending() and kills < 40:
        # each child finishes one change, then dies at a random point of the next one: just
        # before its call (journalled "sending"), or just after the server applied it
        point = rng.choice(["before-call", "after-call"])
        address.write_text(
            json.dumps(
                {
                    "api_url": running.api,
                    "token": running.tokens.static_token(ALICE),
                    "me": me,
                    "org": "org-contoso",
                    "data_dir": str(database.url.removeprefix("sqlite:///").rsplit("/", 1)[0]),
                    "kill": [point, 2],
                }
            )
        )
        if _agent(address) == -9:
            kills += 1
    assert kills >= 20
    replayed, refreshed = service.go_online()
    assert refreshed is not None and store.pending() == []
    with running.http() as http:
        made = http.get(
            running.api + f"contacts?$select=contactid,jobtitle&$filter=lastname eq '{marker}'"
        ).json()["value"]
        assert sorted(r["contactid"] for r in made) == sorted(created[:7])  # once each
        titles = {r["contactid"]: r["jobtitle"] for r in made}
        assert titles[created[0]] == "made 0" and titles[created[1]] == "made 1"
        for n, row_id in enumerate(existing[:12]):
            row = http.get(running.api + f"contacts({row_id})").json()
            assert row["jobtitle"] == f"{marker} edit {n}"
        assert http.get(running.api + f"contacts({server_edit})").json()["department"] == "S"
        for row_id in (existing[12], existing[13], created[7]):
            assert http.get(running.api + f"contacts({row_id})").status_code == 404
