"""Conflicts: both values side by side, the value kept and why, and a button to take the other.

The records are named as people know them (a contact's full name), the fields by their labels
(webapp/labels.py), the reason in sentences (sync.conflicts.explain). The navigation shows how
many conflicts are new since the page was last opened.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, session, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from sync.conflicts import ReverseError, list_conflicts, mark_seen, new_conflicts
from sync.sides import SideError
from webapp import state
from webapp.labels import field_label, kind_name

bp = Blueprint("conflicts", __name__)


@bp.app_context_processor
def _navigation() -> dict[str, Any]:
    def conflicts_new() -> int:
        """New conflicts since the page was last opened (0 before sign-in: nothing to read)."""
        if not session.get("signed_in"):
            return 0
        return new_conflicts(state.database())

    return {"conflicts_new": conflicts_new}


@bp.get("/conflicts")
def index() -> str:
    database = state.database()
    conflicts = list_conflicts(database)
    seen_before = mark_seen(database, conflicts)  # the navigation's count is read afterwards
    return render_template(
        "conflicts.html",
        conflicts=conflicts,
        seen_before=seen_before,
        field_label=field_label,
        kind_name=kind_name,
    )


@bp.post("/conflicts/<int:conflict_id>/reverse")
def reverse(conflict_id: int) -> Response:
    try:
        winner = state.service().reverse_conflict(conflict_id)
    except (ReverseError, SideError) as error:
        flash(str(error) or type(error).__name__, "error")
    else:
        message = (
            gettext("Conflict #%(id)s reversed: the CRM value is kept now.", id=conflict_id)
            if winner == "crm"
            else gettext(
                "Conflict #%(id)s reversed: the mailbox value is kept now.", id=conflict_id
            )
        )
        flash(message, "ok")
    return redirect(url_for("conflicts.index"))
