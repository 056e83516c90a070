"""The Mail page: recent messages of the Inbox, Sent Items and tracked folders, with Track,
Untrack and Set Regarding, and the tracked-folder list (issue 8 part 6).

The page knows only `sync.mail.facade.MailFacade`, taken from `app.extensions["mail_facade"]`
(a zero-argument callable returning a facade, or None while email is not set up). Every action
is a plain form post that works without JavaScript (post, then back to the page, or the page
again with the error beside the row); with htmx the same post swaps just the message's row or
the folder panel, so the user's place on the page and the other rows stay as they are.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from sync.mail.facade import (
    SEARCHABLE,
    TRACKED_FOLDERS_MAX,
    FolderRow,
    MailError,
    MailFacade,
    MessageRow,
    RecordRef,
)
from sync.setup.messages import N_, Msg
from webapp import i18n

bp = Blueprint("mail", __name__)

FACADE_KEY = "mail_facade"
"""app.extensions key: a zero-argument callable returning the `MailFacade`, or None when email
is not set up (the integrator wires `sync.mail.service`; the tests put a fake there)."""
RECENT = 50
SEARCH_LIMIT = 25
STANDARD_FOLDERS = ("inbox", "sentitems")

TYPE_LABELS: dict[str, Msg] = {
    "contacts": N_("Contact"),
    "accounts": N_("Account"),
    "leads": N_("Lead"),
    "opportunities": N_("Opportunity"),
}
"""What a Regarding record is, in words (the tables "Set Regarding" searches)."""
FOLDER_LABELS: dict[str, Msg] = {"inbox": N_("Inbox"), "sentitems": N_("Sent Items")}

# The dashboard's email cards (templates/partials/_status.html) translate these values of
# sync.dashboard_data (count keys and their ACTION_LABELS); listed here for extraction.
DASHBOARD_TEXTS = (
    N_("linked"),
    N_("untracked"),
    N_("attachments skipped"),
    N_("already sent"),
    N_("not sent (refused)"),
    N_("In total"),
)

BAD_RECORD = N_("Choose a record from the list.")
UNKNOWN_FOLDER = N_("This folder is not tracked any more; the Inbox is shown instead.")


def facade() -> MailFacade | None:
    """The app's facade, or None while email tracking is not set up."""
    factory = current_app.extensions.get(FACADE_KEY)
    if factory is None:
        return None
    made: MailFacade | None = factory()
    return made


def dom_id(prefix: str, item_id: str) -> str:
    """A stable HTML id for a mailbox id (EWS ids hold `/`, `+` and `=`)."""
    return f"{prefix}-{hashlib.sha256(item_id.encode()).hexdigest()[:16]}"


def _error_text(error: MailError) -> str:
    """The facade's message in the page's language (a `Msg`, or text the catalog may know)."""
    message = error.args[0] if error.args else ""
    if isinstance(message, Msg):
        return i18n.translate(message)
    return i18n.translate(str(message)) if message else type(error).__name__


def _received(value: str) -> datetime | None:
    """An ISO 8601 moment as the naive UTC datetime the date filters expect."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


@dataclass
class Search:
    """A Set Regarding panel's state: open, what was typed, what was found or went wrong."""

    query: str = ""
    records: Sequence[RecordRef] | None = None
    error: str | None = None


@dataclass
class ShownMessage:
    row: MessageRow
    folder: str
    error: str | None = None
    search: Search | None = None
    """Set: the row's Set Regarding panel is open (a search without JavaScript, or an error)."""

    @property
    def dom_id(self) -> str:
        return dom_id("m", self.row.id)

    @property
    def received(self) -> datetime | None:
        return _received(self.row.received)


@dataclass
class ShownFolder:
    row: FolderRow
    error: str | None = None
    search: Search | None = None

    @property
    def dom_id(self) -> str:
        return dom_id("f", self.row.id)


@dataclass
class FolderPanel:
    folders: list[ShownFolder] = field(default_factory=list)
    error: str | None = None

    @property
    def tracked(self) -> list[FolderRow]:
        return [f.row for f in self.folders if f.row.tracked]


def type_label(record: RecordRef | None) -> str:
    if record is None or record.entity_set not in TYPE_LABELS:
        return ""
    return i18n.translate(TYPE_LABELS[record.entity_set])


@bp.app_context_processor
def _mail_globals() -> dict[str, Any]:
    return {
        "mail_nav_shown": mail_nav_shown,
        "mail_type_label": type_label,
        "mail_search_limit": SEARCH_LIMIT,
    }


def mail_nav_shown() -> bool:
    """The navigation offers Mail once setup is complete (before, the wizard comes first)."""
    if not session.get("signed_in"):
        return False
    from webapp.wizard import current_profile

    return current_profile().is_complete()


# --- reading the form ----------------------------------------------------------------------


def _parse_record(value: str) -> RecordRef:
    """A search result's value `entity_set|id|name`, checked: only the searchable tables and a
    GUID (the id goes into an `@odata.bind` path, so nothing else may pass)."""
    entity_set, _, rest = value.partition("|")
    record_id, _, name = rest.partition("|")
    try:
        record_id = str(uuid.UUID(record_id))
    except ValueError:
        raise MailError(BAD_RECORD) from None
    if entity_set not in SEARCHABLE:
        raise MailError(BAD_RECORD)
    return RecordRef(entity_set, record_id, name.strip()[:200])


def _wanted_folder(value: str | None, panel: FolderPanel) -> tuple[str, str | None]:
    """The folder to list: a standard one or a tracked folder; else the Inbox, with a note."""
    folder = value or "inbox"
    if folder in STANDARD_FOLDERS or any(f.id == folder for f in panel.tracked):
        return folder, None
    if panel.error is not None:  # the folders could not be read: trust the link
        return folder, None
    return "inbox", i18n.translate(UNKNOWN_FOLDER)


def _search(mail: MailFacade, query: str) -> Search:
    query = query.strip()[:100]
    if not query:
        return Search(query, None)
    try:
        return Search(query, list(mail.search_records(query, SEARCH_LIMIT))[:SEARCH_LIMIT])
    except MailError as error:
        return Search(query, None, _error_text(error))


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


# --- the page --------------------------------------------------------------------------------


def _folder_panel(mail: MailFacade) -> FolderPanel:
    try:
        return FolderPanel([ShownFolder(row) for row in mail.folders()])
    except MailError as error:
        return FolderPanel([], _error_text(error))


def _page(
    mail: MailFacade | None,
    folder: str | None = None,
    message: ShownMessage | None = None,
    panel: FolderPanel | None = None,
    status: int = 200,
) -> tuple[str, int]:
    """The whole page; `message` replaces its row (an error or an open search beside it),
    `panel` the folder panel."""
    if mail is None:
        return render_template("mail.html", mail_on=False), status
    panel = panel or _folder_panel(mail)
    folder, note = _wanted_folder(folder, panel)
    messages: list[ShownMessage] = []
    messages_error = None
    try:
        messages = [ShownMessage(row, folder) for row in mail.recent(folder, RECENT)]
    except MailError as error:
        messages_error = _error_text(error)
    if message is not None:
        if message.error and all(m.row.id != message.row.id for m in messages):
            note = message.error  # the message is gone from the list: say it at the top
        messages = [message if m.row.id == message.row.id else m for m in messages]
    tabs = _tabs(panel)
    return render_template(
        "mail.html",
        mail_on=True,
        folder=folder,
        folder_name=next((name for key, name in tabs if key == folder), folder),
        note=note,
        tabs=tabs,
        messages=messages,
        messages_error=messages_error,
        panel=panel,
        max_folders=TRACKED_FOLDERS_MAX,
    ), status


def _tabs(panel: FolderPanel) -> list[tuple[str, str]]:
    tabs = [(key, i18n.translate(label)) for key, label in FOLDER_LABELS.items()]
    return tabs + [(f.id, f.name) for f in panel.tracked]


@bp.get("/mail")
def index() -> tuple[str, int] | Response:
    from webapp.wizard import current_profile

    if not current_profile().is_complete():
        return redirect(url_for("wizard.start"))  # the wizard first, as the navigation says
    try:
        mail = facade()
    except MailError as error:
        return render_template("mail.html", mail_on=False, setup_error=_error_text(error)), 503
    return _page(mail, request.args.get("folder"))


# --- message actions -----------------------------------------------------------------------


def _row_placeholder(message_id: str, folder: str, mail: MailFacade) -> MessageRow:
    """The row as listed now, to show an error beside it (a minimal row if it is gone)."""
    try:
        for row in mail.recent(folder, RECENT):
            if row.id == message_id:
                return row
    except MailError:
        pass
    return MessageRow(message_id, folder, "", "", "", tracked=False)


def _message_answer(shown: ShownMessage, mail: MailFacade, status: int = 303) -> Response:
    """htmx: the row alone. Without it: back to the page after a change (303), else the page
    with the row's error or search in place (`status`)."""
    if _is_htmx():
        return Response(render_template("partials/_mail_row.html", m=shown))
    if status == 303:
        target = url_for("mail.index", folder=shown.folder) + "#" + shown.dom_id
        return redirect(target, code=303)
    html, status = _page(mail, shown.folder, message=shown, status=status)
    return Response(html, status=status)


def _act(action: str) -> Response:
    mail = facade()
    if mail is None:
        return redirect(url_for("mail.index"), code=303)
    message_id, folder = request.form.get("message_id", ""), request.form.get("folder") or "inbox"
    if not message_id:  # every form of the page sends it: this post is not from the page
        return Response(render_template("partials/_mail_gone.html"), status=400)
    try:
        if action == "track":
            row = mail.track(message_id)
        elif action == "untrack":
            row = mail.untrack(message_id)
        elif request.form.get("record"):
            row = mail.set_regarding(message_id, _parse_record(request.form["record"]))
        elif request.form.get("clear"):
            row = mail.set_regarding(message_id, None)
        else:  # Search (or Enter in the search field): the row again with the matches
            search = _search(mail, request.form.get("q", ""))
            row = _row_placeholder(message_id, folder, mail)
            return _message_answer(ShownMessage(row, folder, search=search), mail, status=200)
    except MailError as error:
        row = _row_placeholder(message_id, folder, mail)
        open_search = Search(request.form.get("q", "")) if action == "regarding" else None
        shown = ShownMessage(row, folder, error=_error_text(error), search=open_search)
        return _message_answer(shown, mail, status=422)
    return _message_answer(ShownMessage(row, folder), mail)


@bp.post("/mail/track")
def track() -> Response:
    return _act("track")


@bp.post("/mail/untrack")
def untrack() -> Response:
    return _act("untrack")


@bp.post("/mail/regarding")
def regarding() -> Response:
    """Set Regarding: a picked record, "clear", or (neither) a search for records."""
    return _act("regarding")


@bp.get("/mail/search")
def search() -> str | tuple[str, int]:
    """The first matches as the user types (htmx, `input changed delay:300ms`): buttons that
    submit the enclosing Set Regarding form with the record picked."""
    mail = facade()
    if mail is None:
        return "", 404
    return render_template(
        "partials/_mail_results.html",
        search=_search(mail, request.args.get("q", "")),
    )


# --- tracked folders ---------------------------------------------------------------------


def _folder_answer(mail: MailFacade, panel: FolderPanel, status: int = 303) -> Response:
    """htmx: the folder panel (and, out of band, the tabs). Without it: back to the page after
    a change (303), else the page with the folder's error or search in place (`status`)."""
    if _is_htmx():
        html = render_template(
            "partials/_mail_folders.html",
            panel=panel,
            tabs=_tabs(panel),
            folder=request.form.get("folder", "inbox"),
            max_folders=TRACKED_FOLDERS_MAX,
            oob_tabs=True,
        )
        return Response(html)
    if status == 303:
        target = url_for("mail.index", folder=request.form.get("folder") or None) + "#folders"
        return redirect(target, code=303)
    html, status = _page(mail, request.form.get("folder"), panel=panel, status=status)
    return Response(html, status=status)


def _replace(panel: FolderPanel, shown: ShownFolder) -> FolderPanel:
    folders = [shown if f.row.id == shown.row.id else f for f in panel.folders]
    return FolderPanel(folders, panel.error)


def _folder_action(change: str) -> Response:
    mail = facade()
    if mail is None:
        return redirect(url_for("mail.index"), code=303)
    folder_id = request.form.get("folder_id", "")
    if not folder_id:
        return Response(render_template("partials/_mail_gone.html"), status=400)
    try:
        if change == "tracking":
            mail.set_folder_tracking(folder_id, request.form.get("tracked") == "yes")
        elif request.form.get("record"):
            mail.set_folder_tracking(folder_id, True, _parse_record(request.form["record"]))
        elif request.form.get("clear"):
            mail.set_folder_tracking(folder_id, True, None)
        else:  # Search without JavaScript
            panel = _folder_panel(mail)
            current = next((f for f in panel.folders if f.row.id == folder_id), None)
            if current is not None:
                search = _search(mail, request.form.get("q", ""))
                panel = _replace(panel, ShownFolder(current.row, search=search))
            return _folder_answer(mail, panel, status=200)
    except MailError as error:
        panel = _folder_panel(mail)
        current = next((f for f in panel.folders if f.row.id == folder_id), None)
        if current is None:
            return _folder_answer(mail, FolderPanel(panel.folders, _error_text(error)), 422)
        open_search = Search(request.form.get("q", "")) if change == "regarding" else None
        shown = ShownFolder(current.row, error=_error_text(error), search=open_search)
        return _folder_answer(mail, _replace(panel, shown), status=422)
    return _folder_answer(mail, _folder_panel(mail))


@bp.post("/mail/folders/track")
def folder_tracking() -> Response:
    return _folder_action("tracking")


@bp.post("/mail/folders/regarding")
def folder_regarding() -> Response:
    return _folder_action("regarding")
