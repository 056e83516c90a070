"""Issue 11 point 6: one progress model (phase, done, total per kind, sync/progress.py) drives
the dashboard's bar and heading, the runs table's Progress column, `status --json` and the
terminal bar of `sync --once`; names shown are people's words, never `recurringappointments`."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from sync import progress
from sync.kinds import CONTACTS, TASKS
from sync.kinds.appointments import APPOINTMENTS, RECURRING_APPOINTMENTS
from sync.messaging import MessagingJob
from sync.runs import RunRecorder, recent_runs
from sync.service import MESSAGING, SyncService
from tests.foundation.test_messaging_workloads import connection, seeded

ROOT = Path(__file__).resolve().parents[2]


def _database(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["mailbox_sync.database"]


def _planned(recorder: RunRecorder) -> None:
    for kind in ("contacts", "appointments", "recurringappointments", "tasks"):
        recorder.progress(0, 0, "waiting", kind=kind)


def test_the_model_fills_to_100_only_when_every_kind_has_ended() -> None:
    model = {}
    for kind in ("contacts", "tasks"):
        model = progress.updated(model, kind, "waiting")
    assert progress.percent(model) == 0
    model = progress.updated(model, "contacts", "write", 5, 10)
    assert 0 < progress.percent(model) < 50
    model = progress.updated(model, "contacts", "done")
    assert progress.percent(model) == 50
    model = progress.updated(model, "tasks", "write", 10, 10)  # written, not yet ended
    assert progress.percent(model) == 99
    model = progress.updated(model, "tasks", "done")
    assert progress.percent(model) == 100
    assert [row.title for row in progress.rows(model)] == [
        progress.KIND_TITLES["contacts"],
        progress.KIND_TITLES["tasks"],
    ]


def test_heading_and_bar_agree_and_every_kind_has_a_row(app: Flask, client: FlaskClient) -> None:
    recorder = RunRecorder(_database(app), "messaging", "now")
    _planned(recorder)
    recorder.progress(0, 0, "done", kind="contacts")
    recorder.progress(0, 0, "read", kind="appointments")
    recorder.progress(3, 12, "apply", kind="appointments")
    html = client.get("/status", headers={"HX-Request": "true"}).get_data(as_text=True)
    heading = re.search(r'data-testid="progress-heading">([^<]*)<', html)
    assert heading is not None
    bar = re.search(r'data-percent="(\d+)"', html)
    assert bar is not None and 0 < int(bar.group(1)) < 100
    # the heading says the bar's percent, and what is being done in people's words
    assert f"{bar.group(1)} %" in heading.group(1)
    assert "Appointments: writing (3/12)" in heading.group(1)
    assert f'<progress max="100" value="{bar.group(1)}"' in html
    for kind in ("contacts", "appointments", "tasks"):
        assert f'data-testid="progress-{kind}"' in html
    assert "recurringappointments" not in html and 'data-testid="progress-recurring' not in html
    assert re.search(r'data-testid="progress-contacts">.*?done', html)


def test_the_progress_column_tells_every_kind_of_a_finished_run(
    app: Flask, client: FlaskClient
) -> None:
    recorder = RunRecorder(_database(app), "messaging", "schedule")
    _planned(recorder)
    for kind in ("contacts", "appointments", "recurringappointments"):
        recorder.progress(0, 0, "done", kind=kind)
    recorder.progress(0, 0, "failed", kind="tasks")
    recorder.finish("partial", "tasks: the mailbox refused")
    html = client.get("/status").get_data(as_text=True)
    cell = re.search(r'data-testid="run-progress">(.*?)</td>', html, re.S)
    assert cell is not None
    text = re.sub(r"<[^>]+>", " ", cell.group(1))
    assert re.search(r"Contacts\s+done", text) and re.search(r"Appointments\s+done", text)
    assert re.search(r"Tasks\s+failed", text)
    assert "recurring" not in cell.group(1)


def test_status_json_gives_the_same_model(app: Flask, data_dir: Path) -> None:
    recorder = RunRecorder(_database(app), "messaging", "cli")
    _planned(recorder)
    recorder.progress(0, 0, "done", kind="contacts")
    out = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "status", "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status = json.loads(out.stdout)
    (run,) = status["runs"]
    # the mailbox record's workloads, as the dashboard shows them (the run is still going)
    states = {w["workload"]: w["state"] for w in status["workloads"]}
    assert states == {
        "incoming": "not-run",
        "outgoing": "not-run",
        "act": "not-run",
        "offline": "not-run",
    }
    shown = run["progress"]
    assert shown["percent"] == 25  # one of four kinds (a series is a kind of its own)
    assert [(k["kind"], k["title"], k["phase"]) for k in shown["kinds"]] == [
        ("contacts", "Contacts", "done"),
        ("appointments", "Appointments", "waiting"),
        ("tasks", "Tasks", "waiting"),
    ]


def test_a_messaging_run_tells_the_terminal_bar_up_to_100_percent(tmp_path: Path) -> None:
    """A real run over sides in memory: the listener (the terminal bar of `sync --once`) is
    told the whole run's percent, never less than before, ending at 100, in people's words."""
    from sync.store.db import open_database

    database = open_database(tmp_path / "data")
    told: list[tuple[int, int, str | None]] = []
    crm, mailbox = seeded()
    job = MessagingJob(
        database,
        lambda: connection(crm, mailbox, [CONTACTS, APPOINTMENTS, RECURRING_APPOINTMENTS, TASKS]),
    )
    service = SyncService(
        database, {MESSAGING: job}, listener=lambda d, t, p: told.append((d, t, p))
    )
    run_id = service.run(MESSAGING, "cli")
    percents = [done for done, total, _ in told]
    assert all(total == 100 for _, total, _ in told)
    assert percents == sorted(percents) and percents[-1] == 100
    phases = " ".join(str(p) for _, _, p in told)
    assert "Appointments: writing" in phases and "recurringappointments" not in phases
    (run,) = [r for r in recent_runs(database, limit=3) if r.id == run_id]
    assert run.outcome == "ok" and progress.percent(run.progress) == 100
    terminal = io.StringIO()
    with redirect_stderr(terminal):
        for done, total, phase in told:
            progress.draw_bar(done, total, phase)
    last = terminal.getvalue().split("\r")[-1]
    assert "[" + "#" * 30 + "]" in last and last.endswith("100 %")
    database.dispose()
