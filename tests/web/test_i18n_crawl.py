"""No English left on a Japanese page (issue 11 point 10).

The store is filled by the real functions with runs and alerts of every kind this test knows
(a sync that changed things, one that changed nothing, skipped, failed, partial, interrupted,
busy; the mailbox-method alerts, sign-in, side emptied, items failing, unencrypted secrets,
the lost claim, a reversed conflict), recorded while nobody reads them in any language. Then
every page reachable from the navigation (and the fragments they load) is read in Japanese
through the Flask test client, and any English word left in the visible text fails the test:
but product and protocol names, URLs, e-mail addresses and the user's own data.

A catalog not merged yet can be checked with I18N_CRAWL_TRANSLATIONS=<translations dir>.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete

from sync.auth import SignInRequired
from sync.conflicts import reverse_conflict
from sync.engine.options import EngineSettings
from sync.engine.state import Batch, ConflictRow, ItemFailure
from sync.kinds import CONTACTS, TASKS
from sync.mail.links import MailLinks
from sync.memory import MemoryCrm, MemoryMailbox
from sync.messages import N_, joined
from sync.messaging import Connection, MessagingJob, NotReady
from sync.runs import RunRecorder, close_interrupted_runs, open_alerts, recent_runs
from sync.service import MESSAGING, SyncService
from sync.setup.mailbox import method_problem
from sync.setup.signin import note_unencrypted_cache
from sync.sides import AuthError, Unavailable
from sync.store.db import Database
from sync.store.linkstore import SqlLinkStore
from sync.store.lock import Busy
from sync.store.models import Run, SyncToken
from tests.helpers import signed_in
from webapp.i18n import local_zone

ME, ORG = "user-me", "org-1"

# product, service and protocol names, as Japanese pages write them too; the exception
# names a failed run quotes as they are
_NAMES = """
Mailbox Sync Dynamics Microsoft Exchange EWS CRM Outlook POP3 SMTP IMAP POP NTLM OK OAuth SSL TLS
STARTTLS URL URI ID UTC Entra Dataverse Office Power Apps Web API JSON htmx English Windows GNOME
Keyring KWallet libsecret PyGObject keyring signin RuntimeError Unavailable SideError
Graph Online
"""
ALLOWED = set(_NAMES.split())
"""Words that are not English left untranslated."""

USER_DATA = {"Ann", "Lee", "Call", "Bob", "Kato", "laptop", "desk", "PC"}
"""What this test's CRM, mailbox and errors say: the user's own data, shown as it is."""


def _seed_runs(database: Database) -> None:
    """Runs ended by the messaging job, the service and start-up, as they end for real."""
    crm = MemoryCrm(me=ME)
    for i in range(2):
        crm.put("contacts", {"firstname": f"Ann{i}", "lastname": "Lee"})
        crm.put("tasks", {"subject": f"Call {i}"})
    mailbox = MemoryMailbox()

    def connection(act: int | None = 0) -> Connection:
        return Connection(
            ORG,
            crm,
            mailbox,
            EngineSettings(me=ME),
            [CONTACTS, TASKS],
            act_method=(lambda: act) if act != -1 else None,
        )

    def run(connect: object) -> None:
        job = MessagingJob(database, connect)  # type: ignore[arg-type]
        SyncService(database, {MESSAGING: job}).run(MESSAGING, "now")

    run(lambda: connection())  # "4 changes"
    run(lambda: connection())  # "Nothing changed."
    run(lambda: connection(1))  # skipped: server-side sync has the workload
    run(lambda: connection(None))  # skipped: no mailbox record

    def unreadable() -> int | None:
        raise Unavailable("ネットワークに接続できません")

    conn = connection()
    conn.act_method = unreadable
    run(lambda: conn)  # failed: the record cannot be read

    def not_ready() -> Connection:
        raise NotReady(N_("Sign in first (the wizard's first step)."))

    run(not_ready)
    # the mailbox emptied (a full read lists nothing): the kind stops, the run is partial
    for item in list(mailbox.records("contacts")):
        mailbox.records("contacts").pop(item)
    with database.session() as session:
        session.execute(delete(SyncToken))
    emptied = connection()
    emptied.settings = EngineSettings(me=ME, emptied_threshold=1)
    run(lambda: emptied)

    def signed_out() -> Connection:
        raise SignInRequired("トークンの有効期限切れ", username="bob@contoso.example")

    run(signed_out)

    def refused() -> Connection:
        raise AuthError("パスワードが違います")

    run(refused)

    def broken(recorder: RunRecorder) -> tuple[str, str | None]:
        raise RuntimeError("壊れました")

    SyncService(database, {MESSAGING: broken}).run(MESSAGING, "schedule")  # failed, with words

    busy = RunRecorder(database, MESSAGING, "now")
    busy.finish("skipped", Busy(MESSAGING, None).msg)
    several = RunRecorder(database, MESSAGING, "schedule")
    several.finish(
        "partial",
        joined(
            [
                N_("%(what)s: %(problem)s", what=N_("tasks"), problem=N_("sign-in required")),
                N_("Nothing changed."),
            ]
        ),
    )
    gone = RunRecorder(database, MESSAGING, "schedule")
    with database.session() as session:  # its process is long gone: start-up ends it
        stored = session.get(Run, gone.run_id)
        assert stored is not None
        stored.pid = 2**22 + 12345
    assert gone.run_id in close_interrupted_runs(database)


def _seed_alerts_and_conflicts(database: Database) -> None:
    now = datetime.now(UTC)
    for workload in ("incoming", "outgoing"):
        method_problem(database, workload, 2)
    note_unencrypted_cache(database, "sudo apt install gnome-keyring")
    store = SqlLinkStore(database, ORG)
    for _ in range(store.alert_after):  # an item that keeps failing
        failure = ItemFailure("crm-1", None, "mailbox", "create", "容量が足りません")
        store.commit_batch("contacts", Batch(failures=[failure]), now)
    links = MailLinks(database, ORG)
    for _ in range(links.alert_after):
        links.park("msg-1", "inbox", "track", "容量が足りません", 0, now)
    conflicts = [
        ConflictRow("c1", "m1", "telephone1", "111", "222", "crm", "policy", "Ann Lee"),
        ConflictRow("c2", "m2", "subject", "Call 1", "Call 2", "mailbox", "direction", "Call 1"),
    ]
    store.commit_batch("contacts", Batch(conflicts=conflicts), now)
    (first, *_) = store.conflicts("contacts")
    assert first.id is not None
    reverse_conflict(database, first.id, lambda row: None)


def _strings(value: object) -> Iterator[str]:
    """Every text a value holds (the fake mailbox's subjects, senders, folder names)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _strings(item)
    elif hasattr(value, "__dataclass_fields__"):
        yield from _strings(vars(value))


# --- reading the pages ------------------------------------------------------------------------


class _Page(HTMLParser):
    """The visible text of a page and the links a user (or htmx) follows from it."""

    HIDDEN = {"script", "style", "template", "title", "code"}
    """Not read: scripts, and <code> (identifiers shown as they are: an item's id, a command)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[str] = []
        self._hidden: list[str] = []
        self._option: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if tag in self.HIDDEN or "log" in classes and tag == "pre":  # the raw log is support's
            self._hidden.append(tag)
        for name in ("href", "hx-get"):
            if found.get(name):
                self.links.append(str(found[name]))
        for name in ("placeholder", "title", "aria-label", "alt"):
            if found.get(name):
                self.text.append(str(found[name]))
        if tag == "input" and found.get("type") in ("submit", "button") and found.get("value"):
            self.text.append(str(found["value"]))
        self._option = found.get("value") if tag == "option" else None

    def handle_endtag(self, tag: str) -> None:
        if self._hidden and self._hidden[-1] == tag:
            self._hidden.pop()

    def handle_data(self, data: str) -> None:
        if self._option is not None and data.strip() == self._option:
            return  # an identifier offered as it is (a time zone name)
        if not self._hidden:
            self.text.append(data)


_NOT_WORDS = re.compile(
    r"https?://\S+|[\w.+-]+@[\w-]+(\.[\w-]+)+|/[\w/.-]+|\b[\w-]+\.(example|com|net|org)\b"
    r"|`[^`]*`|\b[0-9a-f]{8}-[0-9a-f-]{27}\b"
    r"|\b\w+(?:[._]\w+)+\b"  # identifiers: EWS.AccessAsUser.All, user_impersonation
    r"|\bfor Dynamics 365\b|\bDynamics 365 for Outlook\b|\bOffice 365 Exchange Online\b"
    r"|\bExchange Server\b|\bTracked to Dynamics 365\b",  # names: a product, a category
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’]+")


def english_words(text: str, allowed: set[str]) -> set[str]:
    """The Latin-letter words of `text` that are not names, addresses or allowed data."""
    words = set(_WORD.findall(_NOT_WORDS.sub(" ", text)))
    return {w for w in words if w not in allowed and w.rstrip("0123456789") not in allowed}


def _local(base: str, link: str) -> str | None:
    """The page a link leads to on this app (None: elsewhere, an anchor, a file, sign-out)."""
    url = urlparse(urljoin(base, link))
    if url.netloc not in ("", "localhost") or url.scheme not in ("", "http"):
        return None
    path = url.path
    if path.startswith("/static") or path in ("/logout", "/signout") or "lang=" in url.query:
        return None
    return path + (f"?{url.query}" if url.query else "")


def crawl(client: FlaskClient, start: str = "/", limit: int = 60) -> Iterator[tuple[str, str]]:
    """(path, visible text) of every page reachable from `start` by GET."""
    seen, queue = {start}, [start]
    while queue:
        path = queue.pop(0)
        response = client.get(path, headers={"Accept-Language": "ja"})
        if response.status_code in (301, 302, 303):
            target = _local(path, response.headers["Location"])
            if target and target not in seen:
                seen.add(target)
                queue.append(target)
            continue
        assert response.status_code in (200, 204, 404, 405), (path, response.status_code)
        if response.status_code != 200 or "html" not in response.content_type:
            continue
        page = _Page()
        page.feed(response.get_data(as_text=True))
        yield path, " ".join(page.text)
        for link in page.links:
            target = _local(path, link)
            if target and target not in seen and len(seen) < limit:
                seen.add(target)
                queue.append(target)


@pytest.fixture
def ja_app(data_dir: Path) -> Iterator[Flask]:
    from webapp import create_app

    config = {"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token", "SETUP_REDIRECT": False}
    if os.environ.get("I18N_CRAWL_TRANSLATIONS"):
        config["BABEL_TRANSLATION_DIRECTORIES"] = os.environ["I18N_CRAWL_TRANSLATIONS"]
    app = create_app(config)
    yield app
    app.extensions["mailbox_sync.database"].dispose()


def test_every_page_in_japanese_has_no_english_word_left(ja_app: Flask) -> None:
    database = ja_app.extensions["mailbox_sync.database"]
    _seed_runs(database)
    _seed_alerts_and_conflicts(database)
    outcomes = {r.outcome for r in recent_runs(database, limit=50)}
    assert outcomes >= {"ok", "skipped", "failed", "partial", "interrupted"}
    codes = {a.code for a in open_alerts(database)}
    assert len(codes) >= 6, codes

    client = signed_in(ja_app)
    client.get("/?lang=ja")
    pages = dict(crawl(client))
    assert {"/", "/alerts", "/conflicts", "/settings", "/log"} <= set(pages), sorted(pages)
    # this computer's name and zone are the user's too
    here = set(_WORD.findall(f"{socket.gethostname()} {local_zone()}"))
    left = {
        path: sorted(words)
        for path, text in pages.items()
        if (words := english_words(text, ALLOWED | USER_DATA | here))
    }
    assert not left, f"English left on Japanese pages: {left}"


def test_a_set_up_profile_in_japanese_has_no_english_word_left(data_dir: Path) -> None:
    """The same once the wizard is done: the dashboard's cards, Mail, the summary."""
    from sync.settings import set_setting
    from sync.setup.memory import demo_world, memory_ports
    from sync.setup.vault import PLAINTEXT_CONSENT
    from tests.mail.fake_facade import FakeMailFacade
    from tests.web.test_wizard import ALICE, Wizard
    from webapp import create_app
    from webapp.mail import FACADE_KEY
    from webapp.wizard import PORTS_KEY

    config = {"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token"}
    if os.environ.get("I18N_CRAWL_TRANSLATIONS"):
        config["BABEL_TRANSLATION_DIRECTORIES"] = os.environ["I18N_CRAWL_TRANSLATIONS"]
    app = create_app(config)
    facade = FakeMailFacade()
    app.extensions[FACADE_KEY] = lambda: facade
    world = demo_world()
    app.extensions[PORTS_KEY] = memory_ports(world, ALICE)
    database = app.extensions["mailbox_sync.database"]
    set_setting(database, "account_upn", ALICE)
    set_setting(database, PLAINTEXT_CONSENT, True)
    try:
        wizard = Wizard(signed_in(app), world)
        wizard.organization()
        wizard.mailbox()
        wizard.instance("yes")
        wizard.choices()
        assert wizard.post("/setup/done", {}).status_code == 303
        _seed_runs(database)
        _seed_alerts_and_conflicts(database)
        wizard.client.get("/?lang=ja")
        pages = dict(crawl(wizard.client))
        assert {"/", "/alerts", "/conflicts", "/settings", "/log"} <= set(pages), sorted(pages)
        here = set(_WORD.findall(f"{socket.gethostname()} {local_zone()}"))
        # the user's own: the demo CRM's names, the mailbox's messages and folders
        data = USER_DATA | {"Alice", "Wong", "Contoso", "Fabrikam", "Sandbox"}
        data |= {w for text in _strings(vars(facade)) for w in _WORD.findall(text)}
        left = {
            path: sorted(words)
            for path, text in pages.items()
            if (words := english_words(text, ALLOWED | data | here))
        }
        assert not left, f"English left on Japanese pages: {left}"
    finally:
        database.dispose()


def test_a_run_recorded_in_english_reads_in_japanese(ja_app: Flask) -> None:
    """The message is stored as its id: the page translates it when it is read, whatever the
    language was then; an old row (plain text only) is shown as it is."""
    database = ja_app.extensions["mailbox_sync.database"]
    with ja_app.test_request_context("/?lang=en"):
        recorder = RunRecorder(database, MESSAGING, "now")
        recorder.finish("ok", N_("Nothing changed."))
    old = RunRecorder(database, MESSAGING, "now")
    old.finish("ok", "227 changes")  # as rows were written before messages had ids
    client = signed_in(ja_app)
    html = client.get("/log?lang=ja").get_data(as_text=True)
    assert "Nothing changed." not in html and "変更はありません" in html
    assert "227 changes" in html
    (newest, first) = recent_runs(database, limit=2)
    assert first.message == "Nothing changed." and first.message_msg == {"id": "Nothing changed."}
    assert newest.message_msg is None
