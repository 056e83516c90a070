"""The settings page (what the wizard stored, with links to change it), its "Check my setup"
button (the checks of `run.py doctor`, shown as an htmx fragment) and the log view.

The log view shows the app's recent log records from an in-memory ring buffer, after the
vault's filter has masked every known secret; nothing is written to disk by this module.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import refresh
from werkzeug.wrappers import Response

from sync.mail import settings as email_settings
from sync.redaction import RedactingFilter, protect_all_handlers
from sync.runs import open_alerts, recent_runs
from sync.setup import choices as choices_step
from sync.setup import profile as keys
from sync.setup.messages import N_, Msg
from webapp import i18n
from webapp.wizard import STEP_TITLES, current_profile

bp = Blueprint("settings_page", __name__)

LOG_LINES = 500
DOCTOR_KEY = "mailbox_sync.doctor"
"""app.extensions key of the checks "Check my setup" runs (tests put a fake there); default
sync.setup.doctor.run_doctor."""


class RingBufferHandler(logging.Handler):
    """Keeps the last `capacity` formatted records in memory, secrets masked."""

    def __init__(self, capacity: int = LOG_LINES) -> None:
        super().__init__(level=logging.INFO)
        self.records: collections.deque[tuple[datetime, str, str, str]] = collections.deque(
            maxlen=capacity
        )
        self.addFilter(RedactingFilter())
        self._records_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                line += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        except Exception:  # a bad format string must not break logging
            line = str(record.msg)
        when = datetime.fromtimestamp(record.created, UTC).replace(tzinfo=None)
        with self._records_lock:
            self.records.append((when, record.levelname, record.name, line))

    def lines(self) -> list[tuple[datetime, str, str, str]]:
        with self._records_lock:
            return list(self.records)


_handler: RingBufferHandler | None = None
_handler_lock = threading.Lock()


def log_handler() -> RingBufferHandler:
    """The process's one ring buffer, attached to the root logger on first use."""
    global _handler
    with _handler_lock:
        if _handler is None:
            _handler = RingBufferHandler()
            logging.getLogger().addHandler(_handler)
            protect_all_handlers()  # stderr too: no secret in any log
        return _handler


@bp.record_once
def _attach(_state: object) -> None:
    log_handler()


@bp.get("/settings")
def settings() -> str:
    return _settings_page()


def _settings_page(check_fragment: str = "", protocol_error: Msg | None = None) -> str:
    profile = current_profile()
    return render_template(
        "settings.html",
        profile=profile,
        org=profile.synchronizing_org(),
        connected=profile.connected_orgs(),
        mailbox=profile.mailbox(),
        has_password=bool(profile.mailbox_secrets()),
        choices=choices_step.current_choices(profile),
        tracking_options=choices_step.TRACKING_OPTIONS,
        email=email_settings.load(profile),  # [h1a] the email settings card
        step_titles=STEP_TITLES,
        zones=i18n.zone_names(),
        timezone=profile.get("timezone") or "",
        local_zone=i18n.local_zone(),
        saved=request.args.get("saved") == "1",
        check_fragment=check_fragment,
        protocol_labels=PROTOCOL_LABELS,  # graph-wire
        protocol_error=protocol_error,
    )


# --- graph-wire (issue 9): the mailbox protocol override ----------------------------------

PROTOCOL_LABELS: dict[str, Msg] = {
    "graph": N_("Exchange Online (Microsoft Graph)"),
    "exchange": N_("Exchange Server (EWS)"),
}


@bp.post("/settings/mailbox-protocol")
def mailbox_protocol() -> Any:
    """Switch an Exchange mailbox between Graph and EWS, after the same connection test as
    the wizard's; the synchronizing computer's claim moves to the new protocol's home."""
    from dataclasses import replace

    from sync.setup import instance as instance_step
    from sync.setup import mailbox as mailbox_step
    from sync.setup.messages import SetupError
    from sync.sides import SideError
    from webapp.wizard import _crm, failure, ports

    profile = current_profile()
    config = profile.mailbox()
    wanted = request.form.get("protocol", "")
    if config is None or config.type == "pop3" or wanted not in PROTOCOL_LABELS:
        return redirect(url_for("settings_page.settings"), code=303)
    new = replace(config, type=wanted)
    try:
        directory, user = _crm(profile)
        mailbox_step.save_mailbox(
            profile, directory, ports(profile).mailbox_tester(), user, new, {}
        )
        if profile.messaging_enabled and config.type != wanted:
            org = profile.synchronizing_org()
            assert org is not None
            instance_step.decide(profile, ports(profile).claims(org, new, user), None)
    except (SetupError, SideError) as refused:
        if profile.mailbox() != config and config.type != wanted:
            profile.save_mailbox(config, {})  # the test failed: keep what worked before
        return _settings_page(protocol_error=failure(refused)), 422
    current_app.logger.info("mailbox protocol set to %s", wanted)
    return redirect(url_for("settings_page.settings", saved=1), code=303)


@dataclass(frozen=True)
class _ShownFinding:
    check: str
    status: str
    message: str
    action: str


def _translated(message: Msg | None) -> str:
    """A finding's text in the page's language, its parameters too (a workload's name, a
    delivery method's: they are messages themselves)."""
    if message is None:
        return ""
    params = {
        name: i18n.translate(value) if isinstance(value, Msg) else value
        for name, value in message.params.items()
    }
    return i18n.translate(Msg(message.text, params))


@bp.get("/settings/check")
def check() -> str:
    """Check my setup: every check of `run.py doctor`, read-only, as a fragment for htmx (the
    whole settings page with the findings in it, without htmx)."""
    from sync.setup.doctor import run_doctor
    from webapp import sandbox_info

    checker: Any = current_app.extensions.get(DOCTOR_KEY, run_doctor)
    findings = checker(current_profile(), sandbox_info(current_app))
    shown = [
        _ShownFinding(f.check, f.status, _translated(f.message), _translated(f.action))
        for f in findings
    ]
    fragment = render_template(
        "partials/_doctor.html",
        findings=shown,
        missing=sum(1 for f in shown if f.status == "missing"),
    )
    if request.headers.get("HX-Request") == "true":
        return fragment
    return _settings_page(check_fragment=fragment)


@bp.post("/settings/preferences")
def preferences() -> Response:
    """Language (a cookie, per browser), time zone and this computer's name (the profile)."""
    profile = current_profile()
    zone = request.form.get("timezone", "")
    if zone == "" or zone in i18n.zone_names():
        profile.set("timezone", zone or None)
    name = request.form.get("instance_name", "").strip()
    if name:
        profile.set(keys.INSTANCE_NAME, name[:100])
    lang = request.form.get("lang", "")
    response = redirect(url_for("settings_page.settings", saved=1), code=303)
    if lang in i18n.LANGUAGES:
        response.set_cookie("lang", lang, max_age=i18n.COOKIE_AGE, samesite="Strict", httponly=True)
    response.delete_cookie("tz")  # the profile's zone wins again
    refresh()
    current_app.logger.info("preferences saved")
    return response


# --- the Log page (ui-dashboard, issue 11 point 8) ------------------------------------------
@bp.get("/log")
def log() -> str:
    """The activity in words: what each run synced, what failed and why; the raw log is a
    click away (folded below it) for support."""
    from sync.dashboard_data import (
        failed_items,
        history_rows,
        run_summary,
        setup_finished_at,
        trigger_word,
    )
    from sync.progress import percent
    from webapp import state

    database = state.database()
    since = setup_finished_at(database)
    runs = [r for r in recent_runs(database, limit=300) if since is None or r.started_at >= since]
    return render_template(
        "log.html",
        rows=history_rows(runs, limit=40),
        run_summary=run_summary,
        run_percent=percent,
        trigger_word=trigger_word,
        items=failed_items(database),
        alerts=open_alerts(database),
        lines=list(reversed(log_handler().lines())),
    )
