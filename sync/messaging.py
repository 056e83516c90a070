"""The messaging job: one engine run per kind, between the synchronizing org and the mailbox.

The job knows the engine, the kinds and the store; *how* the two sides are reached (Dataverse
client, EWS or POP3, tokens, TLS) is a `Connector`'s business (`sync.connect`), so tests can run
the job over in-memory sides and the app over the real adapters with the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.auth import SIGN_IN_ALERT, SignInRequired
from sync.engine import begin_run, sync_kind
from sync.engine.apply import KindResult
from sync.engine.options import EngineSettings
from sync.kinds.base import Kind
from sync.mail.links import MailLinks
from sync.mail.track_run import Tracker, TrackingStage
from sync.messages import N_, NP_, Msg, from_json, joined, kind_word, to_json
from sync.progress import DONE, FAILED, SKIPPED, WAITING
from sync.runs import RunRecorder, raise_alert, resolve_alerts
from sync.setup.mailbox import ACT_ALERT, METHOD_ALERT_SUBJECTS, act_method_problem, method_problem
from sync.sides import AuthError, Side, SideError
from sync.store.db import Database
from sync.store.linkstore import SqlLinkStore

log = logging.getLogger(__name__)


@dataclass
class OutgoingStage:
    """What the messaging job needs to send the user's pending CRM email (sync.connect)."""

    outbox: Any
    """sync.mail.outgoing.Outbox (the CRM's pending email)."""
    sender: Any
    """sync.mail.outgoing.MailSender (EWS or SMTP)."""
    journal: Any
    """sync.mail.outgoing.Journal (the send journal in the local database)."""
    tracking_token: Callable[[Any], str] | None = None
    outgoing_method: Callable[[], int | None] | None = None
    """Reads the mailbox record's `outgoingemaildeliverymethod` (None: not checked)."""


class NotReady(Exception):
    """Messaging sync cannot run now; the message says why and what to do (run is skipped)."""


@dataclass
class Connection:
    """What one messaging run works with."""

    org_id: str
    crm: Side
    mailbox: Side
    settings: EngineSettings
    kinds: Sequence[Kind]
    """In the order they run (the appointment kinds need the CRM's party resolver)."""
    close: Callable[[], None] = lambda: None
    extra: dict[str, Any] = field(default_factory=dict)
    act_method: Callable[[], int | None] | None = None
    """Reads the CRM mailbox record's method for appointments, contacts and tasks (one small
    request; None: the user has no record); called once a run. None: not checked (sides in
    memory, tests)."""
    tracking: TrackingStage | None = None
    """Email tracking, run after the kinds (None: not set up, or nothing to track)."""
    outgoing: OutgoingStage | None = None
    """CRM email in Pending Send sent through the mailbox (None: the user did not choose it)."""


Connector = Callable[[], Connection]
"""Builds the connection from the stored profile; raises NotReady when setup is incomplete."""

ACT_KINDS = frozenset({"contacts", "appointments", "recurringappointments", "tasks"})
"""The engine kinds of the mailbox record's "appointments, contacts and tasks" workload."""


def _counts(result: KindResult) -> dict[str, Any]:
    data = result.as_dict()
    data.pop("kind", None)
    return data


_UNREAD = object()
"""The mailbox record could not be read this run (what was said is recorded)."""


@dataclass
class _StageReport:
    """Where an email stage says why it did not run: its counts entry, the run's problems."""

    key: str
    label: str
    recorder: RunRecorder
    counts: dict[str, Any]
    problems: list[Msg | str]

    def __call__(self, message: Msg | str) -> None:
        self.counts[self.key] = _said(message)
        self.problems.append(_about(self.label, message))
        self.recorder.counts(self.counts)

    def method(self, read: Callable[[], int | None] | None) -> Any:
        """The workload's delivery method from the CRM mailbox record (1: not checked), or
        _UNREAD when the record could not be read; AuthError is left to the caller."""
        try:
            return read() if read is not None else 1
        except AuthError:
            raise
        except SideError as error:
            log.warning("the CRM mailbox record could not be read: %s", error)
            self(_reading_record(error))
            return _UNREAD


# --- progress (sync/progress.py) ----------------------------------------------------------
def _plan_progress(
    recorder: RunRecorder, connection: Connection, kinds: Sequence[Kind], refused: bool
) -> None:
    """Every kind and stage of this run in the progress model, waiting, so the bar counts
    each from the start; kinds refused this run are shown as not run."""
    if refused:
        for kind in connection.kinds:
            if kind.name in ACT_KINDS:
                recorder.progress(0, 0, SKIPPED, kind=kind.name)
    for kind in kinds:
        recorder.progress(0, 0, WAITING, kind=kind.name)
    if connection.tracking is not None:
        recorder.progress(0, 0, WAITING, kind="email")
    if connection.outgoing is not None:
        recorder.progress(0, 0, WAITING, kind="outgoing")


def _stage_ended(recorder: RunRecorder, key: str, counts: dict[str, Any]) -> None:
    """An email stage's end in the progress model: done, or not run when it only said why."""
    entry = counts.get(key)
    said_only = entry is None or set(entry) <= {"message", "message_msg"}
    recorder.progress(0, 0, SKIPPED if said_only else DONE, kind=key)


def _about(what: str, problem: Msg | str) -> Msg:
    """One problem of a run, with the kind or stage it is about."""
    return N_("%(what)s: %(problem)s", what=kind_word(what), problem=problem)


def _items_failed(errors: int) -> Msg:
    return NP_(
        "%(num)d item failed (retried later)", "%(num)d items failed (retried later)", errors
    )


def _said(message: Msg | str) -> dict[str, Any]:
    """A counts entry that says why a kind or stage did not run (English and its id)."""
    return {"message": str(message), "message_msg": to_json(message)}


def _reading_record(error: SideError) -> Msg:
    return N_("reading the CRM mailbox record: %(error)s", error=error.message or str(error))


def _refused_entry(error: AuthError) -> dict[str, Any]:
    refused = isinstance(error, SignInRequired)
    return _said(N_("sign-in required") if refused else N_("sign-in refused"))


# --- [offline2] messaging holds its CRM writes while offline (issue 12 item 2) ---------------

OFFLINE_HOLD = N_("Held while you work offline: mailbox changes go to the CRM after you go online.")


def held_offline(database: Database) -> bool:
    """Whether a messaging run is held: the app works offline (`sync.offline.store` mode).

    Held how: the run does not start, so it makes no CRM call and saves no token. A mailbox
    change made meanwhile stays after the mailbox side's saved sync token (EWS SyncFolderItems
    state, Graph delta link) and the first run after "Go online" reads and writes it, once, as
    any change (the link table makes it an update of the same record). That can never lose a
    change: a token is saved only after everything it covers is applied (DESIGN.md §2.1 step 5)
    and nothing is read while held. Copying the changes into the offline queue instead would need
    the mailbox read (and its token saved) before the CRM write: a crash in between, or a
    queue item the replay refuses, would lose the change with the token already past it. (A
    token that expires meanwhile means a full read, which the three-way compare handles.)"""
    from sync.offline.store import get_mode

    return get_mode(database) == "offline"


# --- [/offline2] ------------------------------------------------------------------------------


class MessagingJob:
    """The body of the messaging job for `SyncService` (see `sync.service.Job`)."""

    def __init__(self, database: Database, connect: Connector) -> None:
        self.database = database
        self.connect = connect

    def __call__(self, recorder: RunRecorder) -> tuple[str, Msg | str | None]:
        if held_offline(self.database):  # [offline2] no CRM call while offline: see there
            return "skipped", OFFLINE_HOLD
        try:
            connection = self.connect()
        except NotReady as reason:
            said = reason.args[0] if reason.args else None
            return "skipped", said if isinstance(said, Msg) else str(reason)
        except AuthError as error:  # e.g. the mailbox connection's first token
            return self._refused(error, "connecting")
        except SideError as error:  # the sign-in service or a server down: say so, no traceback
            log.warning("messaging sync could not connect: %s", error)
            return "failed", error.message or type(error).__name__
        try:
            return self._run(connection, recorder)
        except AuthError as error:  # outside a kind, e.g. the start of the run
            return self._refused(error, "starting")
        finally:
            connection.close()

    def _refused(self, error: AuthError, where: str) -> tuple[str, Msg]:
        """Open the alert a refused sign-in deserves; the failed run's outcome and message.

        SignInRequired (msal: the refresh token is gone) gets its own alert, titled for what to
        do; it is resolved by signing in again (webapp/signin.py) or by the next good run."""
        message = error.message or str(error)
        if isinstance(error, SignInRequired):
            action = (
                N_(
                    "Open the Sign-in page (/signin, also linked from Setup → Organization) and "
                    "sign in as %(user)s again. Syncing resumes at the next run; changes made "
                    "meanwhile are kept and synced then.",
                    user=error.username,
                )
                if error.username
                else N_(
                    "Open the Sign-in page (/signin, also linked from Setup → Organization) and "
                    "sign in again. Syncing resumes at the next run; changes made meanwhile are "
                    "kept and synced then."
                )
            )
            raise_alert(
                self.database,
                SIGN_IN_ALERT,
                N_("Sign in again"),
                message,
                action,
                severity="error",
            )
            return "failed", N_(
                "%(what)s: sign-in required (%(error)s)", what=kind_word(where), error=message
            )
        raise_alert(
            self.database,
            "auth-failed",
            N_("Sign-in refused"),
            message,
            N_("Sign in again on the Sign-in page, or check the mailbox password."),
            severity="error",
        )
        return "failed", N_(
            "%(what)s: sign-in refused (%(error)s)", what=kind_word(where), error=message
        )

    def _act_refusal(self, connection: Connection) -> Msg | None:
        """Why appointments, contacts and tasks do not sync this run (None: they do).

        Checked at every run, not only in the wizard: an administrator may hand the workload
        to server-side sync at any time, and two clients syncing one mailbox make everything
        twice. Raises SideError when the record cannot be read."""
        if connection.act_method is None or not any(
            kind.name in ACT_KINDS for kind in connection.kinds
        ):
            return None
        return act_method_problem(self.database, connection.act_method())

    def _run(self, connection: Connection, recorder: RunRecorder) -> tuple[str, Msg | str | None]:
        store = SqlLinkStore(self.database, connection.org_id)
        counts: dict[str, Any] = {}
        problems: list[Msg | str] = []
        try:
            refusal = self._act_refusal(connection)
        except AuthError:
            raise  # a refused sign-in: its alert is raised by __call__
        except SideError as error:
            log.warning("the CRM mailbox record could not be read: %s", error)
            return "failed", _reading_record(error)
        kinds = list(connection.kinds)
        if refusal is not None:
            for kind in kinds:
                if kind.name in ACT_KINDS:
                    counts[kind.name] = _said(refusal)
            recorder.counts(counts)
            kinds = [kind for kind in kinds if kind.name not in ACT_KINDS]
            if not kinds and connection.tracking is None and connection.outgoing is None:
                return "skipped", refusal
            problems.append(refusal)
        _plan_progress(recorder, connection, kinds, refused=refusal is not None)
        begin_run(connection.crm, connection.mailbox)
        for kind in kinds:

            def progress(done: int, total: int, phase: str, kind: Kind = kind) -> None:
                recorder.progress(done, total, phase, kind=kind.name)

            try:
                result = sync_kind(
                    kind, connection.crm, connection.mailbox, store, connection.settings, progress
                )
            except AuthError as error:
                counts[kind.name] = _refused_entry(error)
                recorder.counts(counts)
                return self._refused(error, kind.name)
            except SideError as error:
                log.warning("%s sync failed: %s", kind.name, error)
                counts[kind.name] = {"message": f"{type(error).__name__}: {error.message}"}
                problems.append(_about(kind.name, error.message or type(error).__name__))
                recorder.counts(counts)
                recorder.progress(0, 0, FAILED, kind=kind.name)
                continue
            counts[kind.name] = _counts(result)
            recorder.counts(counts)
            recorder.progress(0, 0, FAILED if result.stopped else DONE, kind=kind.name)
            if result.stopped:
                said = from_json(result.message_msg) or result.message or result.stopped
                problems.append(_about(kind.name, said))
            elif result.errors:
                problems.append(_about(kind.name, _items_failed(result.errors)))
        if connection.tracking is not None:
            try:
                self._track(connection, store.org, recorder, counts, problems)
                _stage_ended(recorder, "email", counts)
            except AuthError as error:
                counts["email"] = _refused_entry(error)
                recorder.counts(counts)
                return self._refused(error, "email")
        if connection.outgoing is not None:
            try:
                self._send(connection.outgoing, recorder, counts, problems)
                _stage_ended(recorder, "outgoing", counts)
            except AuthError as error:
                counts["outgoing"] = _refused_entry(error)
                recorder.counts(counts)
                return self._refused(error, "outgoing email")
        resolve_alerts(self.database, "auth-failed")
        resolve_alerts(self.database, SIGN_IN_ALERT)  # the sign-in works again
        if problems:
            if (
                refusal is not None
                and problems == [refusal]
                and not kinds
                and "email" not in counts
                and "outgoing" not in counts
            ):
                return "skipped", refusal
            return "partial", joined(problems)
        total = sum(
            sum(counts[k].get(side, {}).get(a, 0) for side in ("crm", "mailbox") for a in
                ("created", "updated", "deleted"))
            + counts[k].get("tracked", 0) + counts[k].get("linked", 0) + counts[k].get("sent", 0)
            for k in counts
        )  # fmt: skip
        if not total:
            return "ok", N_("Nothing changed.")
        return "ok", NP_("%(num)d change", "%(num)d changes", total)

    def _send(
        self,
        stage: OutgoingStage,
        recorder: RunRecorder,
        counts: dict[str, Any],
        problems: list[Msg | str],
    ) -> None:
        """The outgoing stage, last: only while outgoing email is this client's (checked every
        run, like incoming email: two senders would send every email twice)."""
        from sync.mail.outgoing import send_pending

        say = _StageReport("outgoing", "outgoing email", recorder, counts, problems)
        method = say.method(stage.outgoing_method)
        if method is _UNREAD:
            return
        refusal = method_problem(self.database, "outgoing", method)
        if refusal is not None:
            say(refusal)
            return

        def progress(done: int, total: int, phase: str) -> None:
            recorder.progress(done, total, phase, kind="outgoing")

        result = send_pending(
            stage.outbox,
            stage.sender,
            stage.journal,
            progress=progress,
            tracking_token=stage.tracking_token,
        )
        counts["outgoing"] = result.as_counts()
        recorder.counts(counts)
        if result.stopped:
            problems.append(
                _about("outgoing email", from_json(result.message_msg) or result.message or "")
            )
        elif result.errors or result.failed:
            problems.append(
                _about(
                    "outgoing email",
                    NP_(
                        "%(num)d email not sent",
                        "%(num)d emails not sent",
                        result.errors + result.failed,
                    ),
                )
            )

    def _track(
        self,
        connection: Connection,
        org: str,
        recorder: RunRecorder,
        counts: dict[str, Any],
        problems: list[Msg | str],
    ) -> None:
        """The tracking stage, after the kinds: only while incoming email is this client's
        (checked every run: server-side sync may take it over at any time, and two clients
        would track every message twice). AuthError is left to the caller."""
        stage = connection.tracking
        assert stage is not None
        say = _StageReport("email", "email", recorder, counts, problems)
        method = say.method(stage.incoming_method)
        if method is _UNREAD:
            return
        if not stage.chosen and method != 1:
            # the category alone, and incoming email is not ours: nothing to say or do
            resolve_alerts(self.database, ACT_ALERT, METHOD_ALERT_SUBJECTS["incoming"])
            return
        refusal = method_problem(self.database, "incoming", method)
        if refusal is not None:
            say(refusal)
            return

        def progress(done: int, total: int, phase: str) -> None:
            # the tracker's phases are the folders it reads, then "done" (the stage ends later)
            recorder.progress(done, total, "read" if phase == DONE else phase, kind="email")

        tracker = Tracker(
            stage.directory, stage.mailbox, MailLinks(self.database, org), stage.settings, progress
        )
        try:
            result = tracker.run()
        except SideError as error:
            if isinstance(error, AuthError):
                raise
            log.warning("email tracking failed: %s", error)
            say(f"{type(error).__name__}: {error.message}")  # the server's words
            return
        counts["email"] = result.counts()
        recorder.counts(counts)
        if result.stopped:
            problems.append(_about("email", from_json(result.message_msg) or result.message or ""))
        elif result.errors:
            problems.append(
                _about(
                    "email",
                    NP_(
                        "%(num)d message failed (retried later)",
                        "%(num)d messages failed (retried later)",
                        result.errors,
                    ),
                )
            )
