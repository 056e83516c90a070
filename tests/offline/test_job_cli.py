"""The offline job (its own runs, job "offline") and `run.py offline --status --json`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from sync.offline import cli
from sync.offline.job import OfflineJob
from sync.offline.service import OfflineService
from sync.offline.store import set_mode
from sync.service import OFFLINE, SyncService
from sync.store.db import Database
from sync.store.models import Run, SyncFilter
from tests.offline.conftest import Sandbox


def _runs(database: Database) -> list[Run]:
    with database.session() as session:
        return list(session.scalars(select(Run).where(Run.job == OFFLINE).order_by(Run.id)))


def test_job_refreshes_while_online_and_skips_while_offline(
    service: OfflineService, database: Database, running: Sandbox
) -> None:
    job = OfflineJob(service)
    sync = SyncService(database, {OFFLINE: job})
    assert sync.is_ready(OFFLINE)
    sync.run(OFFLINE, "now")
    first = _runs(database)[-1]
    assert first.outcome == "ok" and first.counts["offline"]["rows"]["contacts"] > 0
    assert service.store().count("contacts") > 0
    set_mode(database, "offline")
    running.server.stop()  # no call may be made: a call would fail the run
    try:
        sync.run(OFFLINE, "schedule")
    finally:
        running.server.start()
    assert _runs(database)[-1].outcome == "skipped"


def test_job_not_ready_without_offline_filters(service: OfflineService, database: Database) -> None:
    with database.session() as session:
        for row in session.scalars(select(SyncFilter)):
            row.enabled = False
    assert not SyncService(database, {OFFLINE: OfflineJob(service)}).is_ready(OFFLINE)


def test_cli_status_json(
    service: OfflineService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service.go_offline()
    store = service.store()
    store.update("contacts", store.list("contacts", page_size=1).records[0].id, {"jobtitle": "x"})
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["offline", "--status", "--json", "--data-dir", str(tmp_path)])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "offline" and out["pending"] == 1
    assert out["rows"]["contacts"] == store.count("contacts")
