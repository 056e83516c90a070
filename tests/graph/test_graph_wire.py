"""Exchange Online through Microsoft Graph, wired in (issue 9 points 3 and 4): the wizard's pick,
`configure --mailbox-type graph` + `sync --once`, the Settings override, an EWS 403 from
Exchange Online (the retirement alert, no endless retry) and the Graph change watcher.

All over real HTTP against an in-process sandbox (sandbox.launcher.start_sandbox). The web app
tests replace the token provider with the sandbox's static tokens (as
tests/web/test_wizard_sandbox.py); the command-line test signs in through the sandbox IdP.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

import run
import sync.auth
from sandbox.launcher import RunningSandbox, start_sandbox
from sync.connect import ProfileConnector
from sync.graph.client import GraphClient
from sync.graph.watch import GraphChangeStream
from sync.kinds.base import TRACKED_CATEGORY
from sync.runs import open_alerts, recent_runs
from sync.settings import set_setting
from sync.setup import mailbox as mailbox_step
from sync.setup import signin as _signin  # noqa: F401 (bound to the real provider first)
from sync.setup.doctor import run_doctor
from sync.setup.profile import Profile
from sync.store.db import open_database
from sync.watcher import ChangeWatcher
from tests.helpers import csrf_token_from, page_text, signed_in
from webapp import create_app

ALICE = "alice@contoso.example"
GRAPH_RESOURCE = "https://graph.microsoft.com/"


class SandboxTokens:
    """Stands in for sync.auth.TokenProvider: the sandbox's static token, or for Graph scopes
    (when `graph_refused`) a token the IdP issued without any mailbox permission."""

    def __init__(self, sandbox: RunningSandbox, upn: str, graph_refused: bool = False) -> None:
        self.static = sandbox.tokens.static_token(upn)
        self.limited = sandbox.tokens.issue(upn, scopes=frozenset({GRAPH_RESOURCE + "User.Read"}))
        self.graph_refused = graph_refused

    def token_callable(self, scopes: Any, username: str | None = None) -> Any:
        graph = any(str(s).startswith(GRAPH_RESOURCE) for s in scopes)
        token = self.limited if graph and self.graph_refused else self.static
        return lambda: token


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with start_sandbox(tmp_path_factory.mktemp("sandbox"), demo_scale=0.05) as running:
        yield running


def make_app(
    data_dir: Path,
    sandbox: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
    graph_refused: bool = False,
) -> Flask:
    tokens = SandboxTokens(sandbox, ALICE, graph_refused)
    monkeypatch.setattr(sync.auth, "provider_from_config", lambda *a, **k: tokens)
    app = create_app(
        {
            "DATA_DIR": str(data_dir),
            "LOGIN_TOKEN": "test-login-token",
            "SANDBOX_INFO": sandbox.describe(),
        }
    )
    database = app.extensions["mailbox_sync.database"]
    set_setting(database, "account_upn", ALICE)
    set_setting(database, "auth", {"provider": "sandbox"})
    return app


def client_of(app: Flask) -> tuple[FlaskClient, str]:
    client = signed_in(app)
    return client, csrf_token_from(client.get("/settings").get_data(as_text=True))


def checked_type(page: str) -> str:
    found = re.search(r'name="type" value="(\w+)" data-testid="type-\w+" checked', page)
    assert found is not None, "no mailbox type is checked"
    return found.group(1)


def graph_client(sandbox: RunningSandbox) -> GraphClient:
    token = sandbox.tokens.static_token(ALICE)
    return GraphClient(sandbox.graph.url, lambda: token, verify=sandbox.graph.ca_file)


def crm_client(sandbox: RunningSandbox) -> httpx.Client:
    api = sandbox.dataverse.api_url("contoso")
    return httpx.Client(
        base_url=api,
        headers={
            "Authorization": f"Bearer {sandbox.tokens.static_token(ALICE)}",
            "Accept": "application/json",
            "OData-Version": "4.0",
        },
        timeout=30,
    )


def messaging_run(app: Flask) -> Any:
    database = app.extensions["mailbox_sync.database"]
    run_id = app.extensions["mailbox_sync.service"].run("messaging", "now")
    return next(r for r in recent_runs(database, limit=5) if r.id == run_id)


def ews_requests(sandbox: RunningSandbox) -> int:
    return sum(1 for entry in sandbox.log.snapshot() if entry.service == "ews")


# --- the wizard's pick ----------------------------------------------------------------------


def choose_contoso(web: FlaskClient, token: str) -> None:
    page = page_text(web.get("/setup/organization"))
    contoso = re.search(r'value="([0-9a-f-]{36})" id="sync-contoso"', page)
    assert contoso is not None
    answer = web.post(
        "/setup/organization", data={"csrf_token": token, "synchronizing": contoso.group(1)}
    )
    assert answer.status_code == 303


def test_the_wizard_picks_ews_when_graph_does_not_answer_for_the_mailbox(
    sandbox: RunningSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Graph mailbox answer (`/me/mailboxSettings` refused 403 ErrorAccessDenied, as for a
    token without MailboxSettings.Read: user-get-mailboxsettings.md, permissions): the
    wizard's default is Autodiscover → EWS, and a Graph test says what is wrong."""
    app = make_app(data_dir, sandbox, monkeypatch, graph_refused=True)
    try:
        web, token = client_of(app)
        choose_contoso(web, token)
        page = page_text(web.get("/setup/mailbox"))
        assert checked_type(page) == "exchange"
        assert 'data-testid="exchange-fields"' in page
        form = {"csrf_token": token, "type": "graph", "email": ALICE, "action": "test"}
        tested = page_text(web.post("/setup/mailbox", data=form))
        assert "Microsoft Graph refused access to the mailbox" in tested
    finally:
        app.extensions["mailbox_sync.database"].dispose()


def test_graph_through_the_wizard_then_ews_blocked_and_the_switch_back(
    sandbox: RunningSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wizard picks Graph for the sandbox's online user; the choices step offers no
    appointments and no sending for it; the Settings override switches to EWS; an EWS 403
    from Exchange Online (the sandbox, told so) opens the retirement alert and stops
    messaging from trying again; the alert's button leads to the switch back to Graph."""
    app = make_app(data_dir, sandbox, monkeypatch)
    database = app.extensions["mailbox_sync.database"]
    try:
        web, token = client_of(app)
        choose_contoso(web, token)
        page = page_text(web.get("/setup/mailbox"))
        assert checked_type(page) == "graph"
        assert 'data-testid="graph-fields"' in page
        form = {"csrf_token": token, "type": "graph", "email": ALICE}
        assert "Connection works." in page_text(
            web.post("/setup/mailbox", data={**form, "action": "test"})
        )
        assert web.post("/setup/mailbox", data={**form, "action": "save"}).status_code == 303
        web.post(
            "/setup/instance",
            data={"csrf_token": token, "take_over": "yes", "instance_name": "desk-pc"},
        )
        choices = page_text(web.get("/setup/choices"))
        assert 'data-testid="graph-note"' in choices
        assert 'data-testid="filter-my-active-contacts"' in choices
        assert 'data-testid="filter-my-open-tasks"' in choices
        assert 'data-testid="filter-my-appointments"' in choices  # gcal: the calendar too
        assert 'data-testid="send-crm-email"' in choices  # Graph sends CRM email too
        done = web.post(
            "/setup/choices",
            data={
                "csrf_token": token,
                "filters": ["my-active-contacts", "my-open-tasks", "my-appointments"],
                "interval_seconds": "300",
                "email_form": "1",
                "tracking": "none",
                "send_crm_email": "1",
            },
        )
        assert done.status_code == 303
        profile = Profile(database, data_dir)
        assert profile.is_complete() and profile.mailbox().type == "graph"  # type: ignore[union-attr]
        first = messaging_run(app)
        assert first.outcome == "ok", first.message
        assert first.counts["contacts"]["mailbox"]["created"] > 0
        assert "appointments" in first.counts and "outgoing" in first.counts

        # the override: Exchange Server (EWS), tested first (autodiscover finds the sandbox's)
        assert "Exchange Online (Microsoft Graph)" in page_text(web.get("/settings"))
        switched = web.post(
            "/settings/mailbox-protocol", data={"csrf_token": token, "protocol": "exchange"}
        )
        assert switched.status_code == 303, page_text(switched)
        assert profile.mailbox().type == "exchange"  # type: ignore[union-attr]
        assert profile.messaging_enabled

        # Exchange Online turns EWS off for the tenant: HTTP 403
        profile.set(mailbox_step.EWS_ONLINE_SETTING, True)
        sandbox.ews.ews_blocked.add("*")
        try:
            blocked = messaging_run(app)
            assert blocked.outcome == "skipped"
            assert "1 October 2026" in (blocked.message or "")
            alerts = [a for a in open_alerts(database) if a.code == mailbox_step.EWS_BLOCKED_ALERT]
            assert len(alerts) == 1 and "1 April 2027" in alerts[0].message
            assert mailbox_step.ews_blocked(profile)
            before = ews_requests(sandbox)
            again = messaging_run(app)  # no retry: EWS is not asked again
            assert again.outcome == "skipped"
            assert ews_requests(sandbox) == before
            assert ProfileConnector(profile, lambda: sandbox.describe()).change_stream() is None
            shown = page_text(web.get("/alerts"))
            assert 'data-testid="switch-to-graph"' in shown
            assert "/settings#mailbox-protocol" in shown
            back = web.post(
                "/settings/mailbox-protocol", data={"csrf_token": token, "protocol": "graph"}
            )
            assert back.status_code == 303
        finally:
            sandbox.ews.ews_blocked.clear()
        assert not mailbox_step.ews_blocked(profile)
        assert not [a for a in open_alerts(database) if a.code == mailbox_step.EWS_BLOCKED_ALERT]
        resumed = messaging_run(app)
        assert resumed.outcome == "ok", resumed.message
    finally:
        database.dispose()


# --- the command line and the watcher -------------------------------------------------------


def test_configure_graph_then_sync_once_both_ways_and_the_watcher(
    sandbox: RunningSandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`configure --mailbox-type graph` + `sync --once`: CRM contacts and tasks reach the
    mailbox, a contact made in the mailbox and a task made in the CRM cross over once each,
    runs again change nothing; doctor checks the Graph token; the Graph watcher's quiet poll
    costs one request per folder and a change in the mailbox asks for a sync."""
    info = sandbox.describe()
    sandbox_json = tmp_path / "sandbox.json"
    sandbox_json.write_text(json.dumps(info))
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MBS_ALICE_PASSWORD", next(u for u in info["users"] if u["upn"] == ALICE)["password"])  # fmt: skip
    common = ["--data-dir", str(data_dir), "--sandbox-json", str(sandbox_json)]
    assert run.main(
        ["signin", *common, "--user", ALICE, "--password-env", "MBS_ALICE_PASSWORD",
         "--allow-plaintext-cache"]
    ) == 0  # fmt: skip
    assert run.main(
        ["configure", *common, "--org", "contoso", "--mailbox-type", "graph", "--email", ALICE,
         "--filters", "my-active-contacts,my-open-tasks", "--take-over", "yes", "--set-methods"]
    ) == 0, capsys.readouterr().err  # fmt: skip
    assert "Mailbox: alice@contoso.example (graph), connection tested" in capsys.readouterr().out
    assert run.main(["sync", "--once", *common]) == 0, capsys.readouterr().err

    graph = graph_client(sandbox)
    lists = graph.all("me/todo/lists")
    task_list = next(x["id"] for x in lists if x.get("wellknownListName") == "defaultList")
    contacts_before = len(graph.all("me/contacts"))
    tasks_before = len(graph.all(f"me/todo/lists/{task_list}/tasks"))
    assert contacts_before > 0 and tasks_before > 0

    # both ways: a contact tracked in the mailbox (the CRM category), a synced one changed
    # there, and a task made in the CRM
    graph.post(
        "me/contacts",
        {"givenName": "Wire", "surname": "Graphson", "categories": [TRACKED_CATEGORY]},
    )
    synced = graph.all("me/contacts")[0]
    graph.patch(f"me/contacts/{synced['id']}", {"jobTitle": "Chief Graph Officer"})
    with crm_client(sandbox) as crm:
        me = crm.get("WhoAmI").json()["UserId"]
        crm.post(
            "tasks",
            json={
                "subject": "Call about the Graph wire",
                "ownerid@odata.bind": f"/systemusers({me})",
            },
        ).raise_for_status()
    assert run.main(["sync", "--once", *common]) == 0, capsys.readouterr().err
    assert run.main(["sync", "--once", *common]) == 0
    assert "Nothing changed." in capsys.readouterr().out  # the second run: no echo, no twin
    with crm_client(sandbox) as crm:
        found = crm.get("contacts?$select=fullname&$filter=lastname eq 'Graphson'").json()
        titled = crm.get("contacts?$select=jobtitle&$filter=jobtitle eq 'Chief Graph Officer'")
    assert len(found["value"]) == 1
    assert len(titled.json()["value"]) == 1
    titles = [t.get("title") for t in graph.all(f"me/todo/lists/{task_list}/tasks")]
    assert titles.count("Call about the Graph wire") == 1
    assert len(graph.all("me/contacts")) == contacts_before + 1
    assert len(titles) == tasks_before + 1

    database = open_database(data_dir)
    try:
        profile = Profile(database, data_dir)
        findings = {f.check: f for f in run_doctor(profile, info)}
        assert findings["token:graph"].status == "ok"
        assert "token:ews" not in findings

        stream = ProfileConnector(profile, lambda: info).change_stream()
        assert isinstance(stream, GraphChangeStream)
        assert set(stream.folder_kinds) == {"contacts", "tasks"}
        stream.open()
        try:
            sent = stream.side.client.request_count
            assert stream.poll() is None  # nothing since the last sync
            assert stream.side.client.request_count - sent == 2  # one delta request a folder
            graph.post("me/contacts", {"givenName": "Second", "surname": "Graphson"})
            batch = stream.poll()
            assert batch is not None and batch.kinds == frozenset({"contacts"})
            assert stream.poll() is None
        finally:
            stream.close()

        # the watcher itself: a change in the mailbox asks for a sync of that kind
        asked: list[frozenset[str]] = []
        heard = threading.Event()

        def on_change(kinds: frozenset[str]) -> None:
            asked.append(kinds)
            if "tasks" in kinds:
                heard.set()

        def make_stream() -> GraphChangeStream | None:
            made = ProfileConnector(profile, lambda: info).change_stream()
            assert isinstance(made, GraphChangeStream)
            made.fast = made.idle = made.pause = 0.05
            return made

        watcher = ChangeWatcher(database, make_stream, on_change)
        watcher.start()
        try:
            graph.post(f"me/todo/lists/{task_list}/tasks", {"title": "Heard by the watcher"})
            assert heard.wait(30), asked
        finally:
            watcher.stop()
        assert any("tasks" in kinds for kinds in asked)
    finally:
        graph.close()
        database.dispose()


def test_the_watcher_slows_when_idle_and_stays_within_graphs_limit(
    sandbox: RunningSandbox,
) -> None:
    """2 s after a change, doubling to 4 s while quiet; never faster than the watcher's share
    (a fifth) of Graph's 10,000 requests per 10 minutes per app per mailbox
    (throttling-limits.md, Outlook service limits)."""
    from sync.graph.side import GraphSide
    from sync.graph.watch import BUDGET_SHARE, LIMIT_REQUESTS, LIMIT_WINDOW, min_interval

    side = GraphSide(graph_client(sandbox))
    stream = GraphChangeStream(side, {"contacts": frozenset({"contacts"})})
    stream.open()
    try:
        pauses = []
        for _ in range(4):
            assert stream.poll() is None
            pauses.append(stream.pause)
        assert pauses == [4.0, 4.0, 4.0, 4.0]
        side.client.post("me/contacts", {"givenName": "Pace", "surname": "Keeper"})
        assert stream.poll() is not None and stream.pause == 2.0
    finally:
        stream.close()
    # a mail folder (email tracking's Inbox): its messages' delta link
    inbox = GraphChangeStream(GraphSide(graph_client(sandbox)), {"inbox": frozenset({"email"})})
    inbox.open()
    try:
        assert inbox.poll() is None
        inbox.side.client.post(
            "me/mailFolders/inbox/messages",
            {
                "subject": "Heard in the Inbox",
                "body": {"contentType": "text", "content": "hi"},
            },  # fmt: skip
        )
        batch = inbox.poll()
        assert batch is not None and batch.kinds == frozenset({"email"})
    finally:
        inbox.close()
    many = {f"folder{i}": frozenset({"email"}) for i in range(200)}
    crowded = GraphChangeStream(GraphSide(graph_client(sandbox)), many)
    per_window = len(many) * LIMIT_WINDOW / crowded.fast
    assert crowded.fast == min_interval(200) > 2.0
    assert per_window <= LIMIT_REQUESTS * BUDGET_SHARE + 1e-6
    crowded.close()
