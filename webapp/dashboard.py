"""The dashboard: runs from the store (refreshed by htmx) and the Sync now button."""

from __future__ import annotations

import threading

from flask import Blueprint, render_template, request
from werkzeug.wrappers import Response

from sync.runs import open_alerts, recent_runs
from sync.service import MESSAGING
from webapp import state

bp = Blueprint("dashboard", __name__)


def _runs_fragment() -> str:
    runs = recent_runs(state.database(), limit=15)
    running = any(run.outcome == "running" for run in runs)
    sched = state.scheduler()
    next_run = sched.next_run(MESSAGING) if sched is not None else None
    return render_template("partials/_runs.html", runs=runs, running=running, next_run=next_run)


@bp.get("/")
def index() -> str:
    return render_template(
        "dashboard.html", runs_fragment=_runs_fragment(), alerts=open_alerts(state.database())
    )


@bp.get("/runs")
def runs() -> Response:
    response = Response(_runs_fragment())
    response.headers["Vary"] = "HX-Request"
    return response


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
        return Response(_runs_fragment())
    return Response(status=303, headers={"Location": "/"})
