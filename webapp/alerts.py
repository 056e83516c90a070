"""Alerts: what went wrong or needs the user, with what to do; dismiss when dealt with."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from werkzeug.wrappers import Response

from sync.connect import CONFIRM_EMPTIED
from sync.runs import dismiss_alert, open_alerts
from sync.service import MESSAGING
from sync.settings import set_setting
from sync.setup.signin import acknowledge_unencrypted_cache
from webapp import state

bp = Blueprint("alerts", __name__)


@bp.get("/alerts")
def index() -> str:
    return render_template("alerts.html", alerts=open_alerts(state.database()))


@bp.post("/alerts/<int:alert_id>/dismiss")
def dismiss(alert_id: int) -> Response:
    dismiss_alert(state.database(), alert_id)
    return redirect(url_for("alerts.index"))


@bp.post("/alerts/<int:alert_id>/confirm-emptied")
def confirm_emptied(alert_id: int) -> Response:
    """The user says the empty side is intended: the next run applies (once), starting now."""
    database = state.database()
    set_setting(database, CONFIRM_EMPTIED, True)
    dismiss_alert(database, alert_id)
    sched = state.scheduler()
    if sched is not None:
        sched.sync_now(MESSAGING)
    return redirect(url_for("alerts.index"))


@bp.post("/alerts/<int:alert_id>/keep-unencrypted")
def keep_unencrypted(alert_id: int) -> Response:
    """The user keeps the unencrypted token cache knowingly: the alert goes for good."""
    database = state.database()
    acknowledge_unencrypted_cache(database)
    dismiss_alert(database, alert_id)
    return redirect(url_for("alerts.index"))
