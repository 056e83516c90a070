"""The Offline page: Go offline / Go online with progress, per record type a list (search, sort,
paging done by the database) and a form built from the table's metadata to create, edit and
delete rows while offline (issue 12; DESIGN.md §1.4).

Going offline or online runs in a background thread (one at a time: the offline lock) and the
page polls its progress with htmx. Everything else reads and writes the local store only, so
the pages work with no connection at all. The service is `app.extensions["mailbox_sync.offline"]`
(made from the profile on first use; tests put one connected to the sandbox there).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from werkzeug.wrappers import Response

from sync.offline.filters import LISTED
from sync.offline.service import OfflineService, OfflineUnavailable
from sync.offline.store import OfflineError, OfflineStore, get_mode
from sync.service import MESSAGING
from sync.setup.messages import N_, Msg
from webapp import i18n, state

bp = Blueprint("offline", __name__, url_prefix="/offline")

SERVICE_KEY = "mailbox_sync.offline"
TASK_KEY = "mailbox_sync.offline_task"
PAGE_SIZE = 25
PHASES: dict[str, Msg] = {
    "metadata": N_("Reading table definitions"),
    "rows": N_("Downloading records"),
    "replay": N_("Sending offline changes"),
    "refresh": N_("Updating local data"),
}


def service() -> OfflineService:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    found: OfflineService | None = app.extensions.get(SERVICE_KEY)
    if found is None:
        from sync.offline.connect import offline_service
        from webapp import sandbox_info

        found = offline_service(state.database(), app.config["DATA_DIR"], lambda: sandbox_info(app))
        app.extensions[SERVICE_KEY] = found
    return found


def table_label(entity_set: str) -> str:
    label = LISTED.get(entity_set)
    return i18n.translate(label) if label is not None else entity_set


@bp.app_context_processor
def _offline_globals() -> dict[str, Any]:
    return {"offline_nav_shown": offline_nav_shown}


def offline_nav_shown() -> bool:
    """The navigation offers Offline once an offline filter is chosen or data is offline."""
    if not session.get("signed_in"):
        return False
    try:
        svc = service()
        return svc.is_set_up() or bool(svc.status().tables)
    except Exception:  # the link is a convenience: never break a page for it
        return False


# --- the background task (go offline / go online) ---------------------------------------------


class Task:
    """One go-offline or go-online running in a thread, with its last progress step."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.phase = ""
        self.done = 0
        self.total = 0
        self.finished = False
        self.error: str | None = None
        self.summary: dict[str, Any] = {}

    def progress(self, phase: str, done: int, total: int) -> None:
        self.phase, self.done, self.total = phase, done, total

    @property
    def percent(self) -> int:
        return min(100, 100 * self.done // self.total) if self.total else 0


def _run(task: Task, svc: OfflineService, after_online: Any = None) -> None:
    try:
        if task.action == "offline":
            result = svc.go_offline(task.progress)
            task.summary = {"rows": sum(result.rows.values())}
        else:
            replayed, refreshed = svc.go_online(task.progress)
            task.summary = {
                "replayed": replayed.done,
                "conflicts": replayed.conflicts,
                "failed": replayed.failed,
                "online": refreshed is not None,
            }
            if refreshed is not None and after_online is not None:
                after_online()  # [offline2] messaging's held mailbox changes go now
    except Exception as error:  # shown on the page; the queue and data stay as they were
        task.error = str(error) or type(error).__name__
    finally:
        task.finished = True


def current_task() -> Task | None:
    task: Task | None = current_app.extensions.get(TASK_KEY)
    return task


@bp.post("/go/<action>")
def go(action: str) -> Response | str:
    if action not in ("offline", "online"):
        abort(404)
    task = current_task()
    if task is None or task.finished:
        task = Task(action)
        current_app.extensions[TASK_KEY] = task
        svc = service()
        sched = state.scheduler()
        after = (lambda: sched.sync_now(MESSAGING)) if sched is not None else None  # [offline2]
        threading.Thread(target=_run, args=(task, svc, after), daemon=True, name="offline").start()
    if request.headers.get("HX-Request"):
        return render_template("offline/_progress.html", task=task, phases=PHASES)
    return redirect(url_for("offline.index"))


@bp.get("/progress")
def progress() -> str:
    return render_template("offline/_progress.html", task=current_task(), phases=PHASES)


# --- pages -----------------------------------------------------------------------------------


@bp.get("/")
def index() -> str:
    svc = service()
    status = svc.status()
    return render_template(
        "offline/index.html",
        status=status,
        set_up=svc.is_set_up(),
        chosen=sorted(svc.filters()),
        task=current_task(),
        phases=PHASES,
        table_label=table_label,
    )


def _store() -> OfflineStore:
    try:
        return service().store()
    except OfflineUnavailable:
        abort(404)


@bp.get("/<entity_set>")
def records(entity_set: str) -> str:
    store = _store()
    table = store.table(entity_set)
    if table is None:
        abort(404)
    search = request.args.get("q", "")[:100]
    sort = request.args.get("sort", "title")
    descending = request.args.get("dir") == "desc"
    try:
        page_no = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page_no = 1
    page = store.list(entity_set, search, sort, descending, page_no, PAGE_SIZE)
    template = "offline/_list.html" if request.headers.get("HX-Request") else "offline/list.html"
    return render_template(
        template,
        entity_set=entity_set,
        table=table,
        page=page,
        search=search,
        sort=sort,
        descending=descending,
        table_label=table_label,
        mode=get_mode(state.database()),
    )


# --- the form ----------------------------------------------------------------------------------


def _zone() -> ZoneInfo:
    return ZoneInfo(i18n.select_timezone())


def shown_value(column: dict[str, Any], value: Any) -> Any:
    """A stored value as the form's input shows it (date-times in the user's time zone)."""
    if value is None:
        return ""
    if column["type"] == "datetime" and isinstance(value, str) and len(value) > 10:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(_zone()).strftime("%Y-%m-%dT%H:%M")
    if column["type"] == "bool":
        return "true" if value else "false"
    return value


class BadValue(ValueError):
    def __init__(self, column: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.column = column


def parsed_value(column: dict[str, Any], text: str) -> Any:
    """A form input as the value to store (as the Web API gives it)."""
    text = text.strip()
    if text == "":
        if column.get("required"):
            raise BadValue(column, gettext("This field is required."))
        return None
    kind = column["type"]
    try:
        if kind in ("int", "option"):
            return int(text)
        if kind in ("number", "money"):
            return float(text)
    except ValueError:
        raise BadValue(column, gettext("Enter a number.")) from None
    if kind == "bool":
        return text == "true"
    if kind == "datetime":
        try:
            local = datetime.fromisoformat(text)
        except ValueError:
            raise BadValue(column, gettext("Enter a date and time.")) from None
        if len(text) == 10:
            return text
        moment = local.replace(tzinfo=_zone()) if local.tzinfo is None else local
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return text


def lookup_choices(store: OfflineStore, column: dict[str, Any]) -> list[tuple[str, str]]:
    """The offline rows a lookup may point to (its single target table, when offline)."""
    from sync.offline.replay import _bind_set

    targets = column.get("targets") or []
    if len(targets) != 1:
        return []
    target = store.table(_bind_set(str(targets[0])))
    if target is None:
        return []
    rows = store.list(target.entity_set, page_size=500).records
    title = target.title_column or ""
    return [(r.id, str(r.fields.get(title) or r.id)) for r in rows]


def _editable(column: dict[str, Any], new: bool, store: OfflineStore) -> bool:
    if not column.get("create" if new else "update", True):
        return False
    if column["type"] == "lookup":
        return bool(lookup_choices(store, column))
    return True


@bp.route("/<entity_set>/new", methods=["GET", "POST"])
@bp.route("/<entity_set>/<row_id>", methods=["GET", "POST"])
def edit(entity_set: str, row_id: str | None = None) -> Response | str | tuple[str, int]:
    store = _store()
    table = store.table(entity_set)
    if table is None:
        abort(404)
    record = store.get(entity_set, row_id) if row_id else None
    if row_id and record is None:
        abort(404)
    new = record is None
    columns = [c for c in table.columns or []]
    values = dict(record.fields) if record is not None else {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        changed: dict[str, Any] = {}
        for column in columns:
            if not _editable(column, new, store) or column["name"] not in request.form:
                continue
            try:
                value = parsed_value(column, request.form.get(column["name"], ""))
            except BadValue as bad:
                errors[column["name"]] = str(bad)
                continue
            # as shown: a date-time input holds minutes, so an untouched one is no change
            if new or shown_value(column, values.get(column["name"])) != shown_value(column, value):
                changed[column["name"]] = value
            values[column["name"]] = value
        if not errors:
            try:
                if new:
                    row_id = store.create(entity_set, {k: v for k, v in changed.items()})
                    flash(gettext("Record created offline."), "ok")
                elif changed:
                    assert row_id is not None
                    store.update(entity_set, row_id, changed)
                    flash(gettext("Changes saved offline."), "ok")
            except OfflineError as error:
                errors[""] = str(error)
            else:
                return redirect(url_for("offline.records", entity_set=entity_set))
    return render_template(
        "offline/edit.html",
        entity_set=entity_set,
        table=table,
        record=record,
        new=new,
        columns=columns,
        values=values,
        errors=errors,
        editable=lambda c: _editable(c, new, store),
        shown=shown_value,
        choices=lambda c: lookup_choices(store, c),
        table_label=table_label,
    ), (400 if errors else 200)


@bp.post("/<entity_set>/<row_id>/delete")
def delete(entity_set: str, row_id: str) -> Response:
    store = _store()
    try:
        store.delete(entity_set, row_id)
    except OfflineError:
        abort(404)
    flash(gettext("Record deleted offline."), "ok")
    return redirect(url_for("offline.records", entity_set=entity_set))


# [offline2] the wizard's own offline filters: their routes hang on this blueprint
from webapp import offline_filters as _offline_filters  # noqa: E402,F401
