"""The dashboard: per-kind status, live progress, runs, alerts, and the Sync now button."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from flask import Blueprint, current_app, render_template, request
from flask.blueprints import BlueprintSetupState
from markupsafe import Markup
from werkzeug.wrappers import Response

from sync import progress
from sync.dashboard_data import (
    history_rows,
    kind_statuses,
    scaled_chart,
    setup_finished_at,
    side_word,
    trigger_word,
    watch_line,
    workload_statuses,
)
from sync.runs import open_alerts, recent_runs
from sync.service import MESSAGING
from sync.settings import get_setting
from sync.setup.profile import STEP_TITLES, Profile
from webapp import state

bp = Blueprint("dashboard", __name__)


@bp.record_once
def _default_gettext(setup: BlueprintSetupState) -> None:
    """Templates call `_()`; Flask-Babel installs the real one, this keeps them rendering without."""
    setup.app.jinja_env.globals.setdefault("_", lambda text, **kw: text % kw if kw else text)


HISTORY = 300
"""Runs read for the table and chart (quiet runs collapse, so many fit in a few rows)."""
CHART_RUNS = 60


def _setup_step() -> str | None:
    """The wizard step to finish while setup is not finished (None once it is). Apps made with
    SETUP_REDIRECT off (tests that look at the dashboard alone) count as set up."""
    if not current_app.config.get("SETUP_REDIRECT", True):
        return None
    profile = Profile(state.database(), current_app.config["DATA_DIR"])
    return None if profile.is_complete() else profile.current_step()


def _status_context() -> dict[str, Any]:
    database = state.database()
    setup_step = _setup_step()
    since = setup_finished_at(database)
    runs = [] if setup_step else recent_runs(database, limit=HISTORY)
    if since is not None:
        runs = [run for run in runs if run.started_at >= since]
    current = next((run for run in runs if run.outcome == "running"), None)
    sched = state.scheduler()
    enabled = get_setting(database, "kinds") or []
    return {
        "setup_step": setup_step,
        "setup_step_title": STEP_TITLES.get(setup_step or "", setup_step),
        "runs": history_rows(runs),
        "running": current is not None,
        "current": current,
        "current_rows": progress.rows(current.progress) if current is not None else [],
        "current_row": progress.current_row(current.progress) if current is not None else None,
        "current_percent": _percent(current) if current is not None else 0,
        "progress_rows": progress.rows,
        "trigger_word": trigger_word,
        "watch": None if setup_step else watch_line(database),
        "side_word": side_word,
        "next_run": sched.next_run(MESSAGING) if sched is not None else None,
        "kinds": kind_statuses(database, enabled),
        "workloads": workload_statuses(database, enabled, runs, open_alerts(database)),
        "chart": scaled_chart(runs[:CHART_RUNS]),
        "messaging_enabled": get_setting(database, "messaging_enabled") is not False,
        "messaging_disabled_reason": get_setting(database, "messaging_disabled_reason"),
        "messaging_holder": get_setting(database, "messaging_holder"),
    }


def _percent(run: Any) -> int:
    """The run's percent from its progress model; older runs from their step's counts."""
    if run.progress:
        return progress.percent(run.progress)
    return round(100 * run.progress_done / run.progress_total) if run.progress_total else 0


def _fragment(pending: bool = False) -> tuple[str, str]:
    """The live part and its fingerprint. `pending`: a run was just asked for and may not have
    started yet, so poll quickly."""
    context = _status_context()
    body = render_template("partials/_status_body.html", pending=pending, **context)
    seen = hashlib.sha256(f"{pending}{body}".encode()).hexdigest()[:16]
    html = render_template(
        "partials/_status.html", body=Markup(body), seen=seen, pending=pending, **context
    )
    return html, seen


@bp.get("/")
def index() -> str:
    return render_template(
        "dashboard.html",
        status_fragment=_fragment()[0],
        alerts=open_alerts(state.database()),
        setup_unfinished=_setup_step() is not None,
    )


@bp.get("/status")
def status() -> Response:
    """The live part of the dashboard, polled by htmx every second while a run is on (every
    ten seconds otherwise); 204 when it is as the poller last saw it: htmx swaps nothing."""
    html, seen = _fragment()
    if request.args.get("seen") == seen and request.headers.get("HX-Request"):
        return Response(status=204)
    response = Response(html)
    response.headers["Vary"] = "HX-Request"
    return response


@bp.get("/runs")
def runs() -> Response:
    return status()


@bp.post("/sync-now")
def sync_now() -> Response:
    """Move the messaging job to now; without a scheduler (tests, `create_app` alone) run it."""
    sched = state.scheduler()
    if sched is not None:
        sched.sync_now(MESSAGING)
    else:
        service = state.service()
        threading.Thread(target=service.run, args=(MESSAGING, "now"), daemon=True).start()
    if request.headers.get("HX-Request"):
        return Response(_fragment(pending=True)[0])
    return Response(status=303, headers={"Location": "/"})
