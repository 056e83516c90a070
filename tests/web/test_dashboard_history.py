"""Issue 11 point 7: the dashboard's history and per-workload status.

No run from before setup finished; consecutive quiet runs in one row, failures and runs with
changes in their own; triggers in words; a chart with y ticks, a time axis and a legend; each
workload of the CRM mailbox record (Incoming email, Outgoing email, Appointments contacts and
tasks, Offline) as Success, Failure or Not run, with the reason and the fix."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from sync.dashboard_data import nice_step, scaled_chart
from sync.messages import N_
from sync.runs import RunRecorder, raise_alert, recent_runs
from sync.settings import set_setting
from sync.setup.mailbox import ACT_ALERT
from sync.store.models import Run, Setting

QUIET = N_("Nothing changed.")
CHANGES = {"contacts": {"mailbox": {"created": 7}, "crm": {"updated": 2}}}


def _database(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["mailbox_sync.database"]


def _run(
    app: Flask, trigger: str, outcome: str, message=QUIET, counts=None, at: datetime | None = None
) -> int:  # type: ignore[no-untyped-def]
    recorder = RunRecorder(_database(app), "messaging", trigger)
    if counts is not None:
        recorder.counts(counts)
    recorder.finish(outcome, message)
    if at is not None:
        with _database(app).session() as session:
            run = session.get(Run, recorder.run_id)
            assert run is not None
            run.started_at, run.finished_at = at, at + timedelta(seconds=3)
    return recorder.run_id


def _rows(html: str) -> list[str]:
    return re.findall(r'data-testid="(run-row|quiet-row)"', html)


def test_no_run_from_before_setup_finished(app: Flask, client: FlaskClient) -> None:
    now = datetime.utcnow()
    early = _run(app, "now", "failed", "Sign-in refused", at=now - timedelta(hours=2))
    set_setting(_database(app), "choices_saved", True)
    with _database(app).session() as session:
        row = session.get(Setting, "choices_saved")
        assert row is not None
        row.updated_at = now - timedelta(hours=1)
    later = _run(app, "schedule", "ok", counts=CHANGES)
    html = client.get("/").get_data(as_text=True)
    assert f'data-run-id="{later}"' in html and f'data-run-id="{early}"' not in html
    log = client.get("/log").get_data(as_text=True)
    assert f'data-run-id="{later}"' in log and f'data-run-id="{early}"' not in log


def test_quiet_runs_collapse_failures_and_changes_stay(app: Flask, client: FlaskClient) -> None:
    start = datetime(2026, 12, 4, 10, 2)
    moments = (start + timedelta(minutes=i) for i in range(20))
    for _ in range(5):
        _run(app, "schedule", "ok", at=next(moments))
    failed = _run(app, "now", "failed", "The mailbox refused", at=next(moments))
    for _ in range(3):
        _run(app, "schedule", "ok", at=next(moments))
    changed = _run(app, "cli", "ok", N_("%(num)s changes", num=9), CHANGES, at=next(moments))
    html = client.get("/").get_data(as_text=True)
    assert _rows(html) == ["run-row", "quiet-row", "run-row", "quiet-row"]
    assert f'data-run-id="{changed}"' in html and f'data-run-id="{failed}"' in html
    quiet = re.findall(r"Quiet since ([^,]+, [\d:]+), (\d+) runs", html)
    assert [n for _, n in quiet] == ["3", "5"]
    assert "10:02" in quiet[1][0]  # the oldest quiet run of the group
    # triggers in words
    triggers = re.findall(r'data-testid="run-trigger">([^<]*)<', html)
    assert triggers == ["Command line", "Sync now"]
    assert ">schedule<" not in html and ">now<" not in html and ">cli<" not in html


def test_chart_has_scales_and_a_legend(app: Flask, client: FlaskClient) -> None:
    start = datetime(2026, 12, 4, 9, 0)
    _run(app, "schedule", "ok", counts=CHANGES, at=start)
    _run(app, "schedule", "failed", "x", at=start + timedelta(minutes=30))
    _run(app, "schedule", "ok", at=start + timedelta(minutes=60))
    html = client.get("/").get_data(as_text=True)
    y = [int(v) for v in re.findall(r'data-testid="y-tick">(\d+)<', html)]
    assert y[0] == 0 and y[-1] >= 9 and y == sorted(y) and len(y) >= 3
    x = re.findall(r'data-testid="x-tick">([^<]+)<', html)
    assert x[0] == "09:00" and x[-1] == "10:00" and len(x) == 5
    legend = re.search(r'data-testid="chart-legend">(.*?)</figcaption>', html, re.S)
    assert legend is not None and "ok" in legend.group(1) and "failed" in legend.group(1)
    assert "(most:" not in html


def test_bars_stand_on_the_scale() -> None:
    assert [nice_step(n) for n in (0, 1, 4, 9, 23, 230)] == [1, 1, 1, 5, 10, 100]

    class FakeRun:
        def __init__(self, i: int, changes: int) -> None:
            self.id, self.outcome, self.message, self.message_msg = i, "ok", None, None
            self.started_at = datetime(2026, 12, 4, 9, i)
            self.finished_at = self.started_at
            self.counts = {"contacts": {"mailbox": {"created": changes}}}

    chart = scaled_chart([FakeRun(0, 10), FakeRun(1, 5)])  # type: ignore[list-item]
    top = chart.y_ticks[-1]
    full, half = chart.bars
    assert top.value == 10 and abs(full.y - top.at) < 0.01  # 10 reaches the "10" tick
    assert abs((full.height / half.height) - 2) < 0.01
    assert full.x < half.x  # oldest on the left


def test_workloads_success_failure_not_run(app: Flask, client: FlaskClient) -> None:
    database = _database(app)
    set_setting(database, "kinds", ["contacts", "tasks"])
    html = client.get("/").get_data(as_text=True)
    state = dict(re.findall(r'data-testid="workload-(\w+)-state">([^<]+)<', html))
    assert state == {
        "incoming": "Not run",
        "outgoing": "Not run",
        "act": "Not run",
        "offline": "Not run",
    }
    assert "No sync has done it yet." in html and "Not chosen in the setup." in html
    _run(app, "schedule", "ok", counts=CHANGES)
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'data-testid="workload-act-state">Success<', html)
    # the administrator hands the workload to server-side sync: the run says why, the alert
    # says what to do
    refusal = N_("The mailbox record sets Server-Side Synchronization.")
    raise_alert(
        database,
        ACT_ALERT,
        N_("Not synced"),
        refusal,
        N_("Ask your administrator to set it to this client."),
    )
    _run(
        app,
        "schedule",
        "skipped",
        refusal,
        {"contacts": {"message": str(refusal), "message_msg": {"id": refusal.text}}},
    )
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'data-testid="workload-act-state">Failure<', html)
    assert re.search(r'data-testid="workload-act-reason">The mailbox record sets Server', html)
    assert re.search(r'data-testid="workload-act-fix">Ask your administrator', html)
    assert len(recent_runs(database)) == 2


def test_the_dashboard_says_changes_are_watched_and_how_soon_the_last_was_synced(
    app: Flask, client: FlaskClient
) -> None:
    """Issue 9 part 4: "watching for changes" and the delay of the last change, from the
    watchers' state (sync/watcher.py) and the first run that ended after that change."""
    from sync.watcher import status_key

    database = _database(app)
    assert 'data-testid="watching"' not in client.get("/").get_data(as_text=True)
    changed = datetime.utcnow() - timedelta(minutes=5)
    set_setting(
        database,
        status_key("mailbox"),
        {"state": "watching", "last_change_at": changed.isoformat() + "+00:00"},
    )
    set_setting(database, status_key("crm"), {"state": "down", "reason": "unreachable"})
    _run(app, "schedule", "ok", at=changed - timedelta(minutes=1))  # before: not it
    run = _run(app, "change", "ok", counts=CHANGES, at=changed + timedelta(seconds=1))
    html = client.get("/").get_data(as_text=True)
    line = re.search(r'data-testid="watching">(.*?)</p>', html, re.S)
    assert line is not None
    text = re.sub(r"<[^>]+>|\s+", " ", line.group(1))
    assert "Watching for changes (mailbox)" in text
    assert "Not watching for changes now (CRM): the schedule syncs meanwhile." in text
    assert "synced 4.0 s later" in text  # 1 s to start, 3 s to run
    row = re.search(rf'data-run-id="{run}".*?</tr>', html, re.S)
    assert row is not None and "Change seen" in row.group(0)
