"""The dashboard: per-kind status, live progress, runs, alerts, and the Sync now button."""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, render_template, request
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response

from sync.dashboard_data import history_chart, kind_statuses
from sync.runs import open_alerts, recent_runs
from sync.service import MESSAGING
from sync.settings import get_setting
from webapp import state

bp = Blueprint("dashboard", __name__)


@bp.record_once
def _default_gettext(setup: BlueprintSetupState) -> None:
    """Templates call `_()`; Flask-Babel installs the real one, this keeps them rendering without."""
    setup.app.jinja_env.globals.setdefault("_", lambda text, **kw: text % kw if kw else text)


def _status_context() -> dict[str, Any]:
    database = state.database()
    runs = recent_runs(database, limit=30)
    running = any(run.outcome == "running" for run in runs)
    sched = state.scheduler()
    return {
        "runs": runs[:15],
        "running": running,
        "current": next((run for run in runs if run.outcome == "running"), None),
        "next_run": sched.next_run(MESSAGING) if sched is not None else None,
        "kinds": kind_statuses(database, get_setting(database, "kinds") or []),
        "chart": history_chart(runs),
        "messaging_enabled": get_setting(database, "messaging_enabled") is not False,
        "messaging_disabled_reason": get_setting(database, "messaging_disabled_reason"),
        "messaging_holder": get_setting(database, "messaging_holder"),
    }


def _fragment(pending: bool = False) -> str:
    """`pending`: a run was just asked for and may not have started yet, so poll quickly."""
    return render_template("partials/_status.html", pending=pending, **_status_context())


@bp.get("/")
def index() -> str:
    return render_template(
        "dashboard.html", status_fragment=_fragment(), alerts=open_alerts(state.database())
    )


@bp.get("/status")
def status() -> Response:
    """The live part of the dashboard, polled by htmx every second while a run is on."""
    response = Response(_fragment())
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
        return Response(_fragment(pending=True))
    return Response(status=303, headers={"Location": "/"})
