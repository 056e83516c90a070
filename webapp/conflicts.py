"""Conflicts: both values side by side, the value kept, and a button to take the other one."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from sync.conflicts import ReverseError, list_conflicts
from sync.sides import SideError
from webapp import state

bp = Blueprint("conflicts", __name__)


@bp.get("/conflicts")
def index() -> str:
    return render_template("conflicts.html", conflicts=list_conflicts(state.database()))


@bp.post("/conflicts/<int:conflict_id>/reverse")
def reverse(conflict_id: int) -> Response:
    try:
        winner = state.service().reverse_conflict(conflict_id)
    except (ReverseError, SideError) as error:
        flash(str(error) or type(error).__name__, "error")
    else:
        side = "CRM" if winner == "crm" else "mailbox"
        flash(f"Conflict #{conflict_id} reversed: the {side} value is kept now.", "ok")
    return redirect(url_for("conflicts.index"))
