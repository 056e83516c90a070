"""The wizard on the real ports (sync.setup.adapters) against the running sandbox: Global
Discovery, Dataverse mailbox records and counts, EWS connection test and the mailbox claim.

Sign-in itself is the auth helper's (tests/auth); here the token provider is replaced by one
that hands out the sandbox user's bearer token, so everything after sign-in is real HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import sync.auth
from sandbox.launcher import RunningSandbox, start_sandbox
from sync.connect import messaging_service
from sync.runs import recent_runs
from sync.settings import get_setting, set_setting
from sync.setup.adapters import messaging_allowed
from sync.setup.profile import Profile
from tests.helpers import csrf_token_from, page_text, signed_in
from webapp import create_app

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"


class StaticTokens:
    """Stands in for sync.auth.TokenProvider: the sandbox's static token for one user."""

    def __init__(self, token: str) -> None:
        self.token = token

    def token_callable(self, scopes: Any, username: str | None = None) -> Any:
        return lambda: self.token


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with start_sandbox(tmp_path_factory.mktemp("sandbox"), demo_scale=0.05) as running:
        yield running


def make_app(
    data_dir: Path, sandbox: RunningSandbox, upn: str, monkeypatch: pytest.MonkeyPatch
) -> Flask:
    token = sandbox.tokens.static_token(upn)
    monkeypatch.setattr(sync.auth, "provider_from_config", lambda *a, **k: StaticTokens(token))
    app = create_app(
        {
            "DATA_DIR": str(data_dir),
            "LOGIN_TOKEN": "test-login-token",
            "SANDBOX_INFO": sandbox.describe(),
        }
    )
    database = app.extensions["mailbox_sync.database"]
    set_setting(database, "account_upn", upn)
    set_setting(database, "auth", {"provider": "sandbox"})
    return app


def _run_messaging(app: Flask) -> Any:
    from sync.runs import recent_runs

    database = app.extensions["mailbox_sync.database"]
    run_id = app.extensions["mailbox_sync.service"].run("messaging", "now")
    return next(run for run in recent_runs(database, limit=5) if run.id == run_id)


def _my_active_contacts(sandbox: RunningSandbox, upn: str) -> int:
    me = sandbox.describe()["users"]
    user_id = next(u for u in me if u["upn"] == upn)["systemuser_ids"]["contoso"]
    rows = sandbox.dataverse.table("contoso", "contacts").rows.values()
    return sum(
        1
        for row in rows
        if row.values.get("_ownerid_value") == user_id and row.values.get("statecode") == 0
    )


def client_of(app: Flask) -> tuple[FlaskClient, str]:
    client = signed_in(app)
    return client, csrf_token_from(client.get("/settings").get_data(as_text=True))


def up_to_the_choices(web: FlaskClient, token: str, upn: str, name: str, computer: str) -> None:
    """The wizard's first three steps: contoso, the sandbox Exchange mailbox, this computer."""
    page = page_text(web.get("/setup/organization"))
    assert "Contoso Sandbox" in page
    contoso = re.search(r'value="([0-9a-f-]{36})" id="sync-contoso"', page)
    assert contoso is not None
    answer = web.post(
        "/setup/organization", data={"csrf_token": token, "synchronizing": contoso.group(1)}
    )
    assert answer.status_code == 303

    page = page_text(web.get("/setup/mailbox"))
    assert f"CRM user: {name}" in page
    form = {"csrf_token": token, "type": "exchange", "email": upn, "auth": "oauth"}
    tested = page_text(web.post("/setup/mailbox", data={**form, "action": "test"}))
    assert "Connection works." in tested
    assert web.post("/setup/mailbox", data={**form, "action": "save"}).status_code == 303

    page = page_text(web.get("/setup/instance"))
    assert 'data-state="none"' in page or 'data-state="mine"' in page
    web.post(
        "/setup/instance",
        data={"csrf_token": token, "take_over": "yes", "instance_name": computer},
    )


def test_wizard_end_to_end_on_the_sandbox(
    sandbox: RunningSandbox, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(data_dir, sandbox, ALICE, monkeypatch)
    try:
        web, token = client_of(app)
        assert "Fabrikam Sandbox" in page_text(web.get("/setup/organization"))  # Alice's 2 orgs
        up_to_the_choices(web, token, ALICE, "Alice Wong", "desk-pc")
        assert "Not this client" not in page_text(web.get("/setup/mailbox"))  # methods set
        page = page_text(web.get("/setup/choices"))
        assert re.search(r'data-testid="count-my-active-contacts">\s*\d+ records', page)
        assert "? records" not in page
        done = web.post(
            "/setup/choices",
            data={
                "csrf_token": token,
                "filters": ["my-active-contacts"],
                "interval_seconds": "300",
            },
        )
        assert done.status_code == 303
        with app.app_context():
            profile = Profile(app.extensions["mailbox_sync.database"], data_dir)
            assert profile.is_complete()
            assert messaging_allowed(profile, sandbox.describe())
            # no EWS address typed: the sandbox's Autodiscover service found it, once
            config = profile.mailbox()
            assert config is not None and config.ews_url == ""
            assert config.found_ews_url == sandbox.ews.url
        assert "(found by autodiscover)" in page_text(web.get("/settings"))
        # the messaging job now syncs the chosen contacts into the sandbox mailbox
        wanted = _my_active_contacts(sandbox, ALICE)
        run = _run_messaging(app)
        assert run.outcome == "ok", run.message
        assert run.counts["contacts"]["mailbox"]["created"] == wanted > 0
        assert sandbox.ews.mailbox(ALICE).counts()["contacts"] >= wanted
        again = _run_messaging(app)
        assert again.outcome == "ok" and again.message == "Nothing changed."
        # a quiet run of the app: one request per entity set and per folder, the claim
        # check (one GetFolder of the hidden folder by its id) and the mailbox record's
        # delivery methods (one GET: server-side sync may take a workload over at any
        # time); folders are not looked up again. Alice's incoming email is this client's,
        # so the Inbox and Sent Items are read too: the tracked category works by hand
        # even with no automatic tracking chosen (issue 8).
        sandbox.log.clear()
        assert _run_messaging(app).message == "Nothing changed."
        assert sorted((e.service, e.target) for e in sandbox.log) == [
            ("dataverse", "contacts"), ("dataverse", "mailboxes"), ("ews", "GetFolder"),
            ("ews", "SyncFolderItems"), ("ews", "SyncFolderItems"), ("ews", "SyncFolderItems"),
        ]  # fmt: skip
    finally:
        app.extensions["mailbox_sync.database"].dispose()

    # a second computer of the same user takes over; the first stops on its next check
    laptop_dir = tmp_path / "laptop"
    laptop_dir.mkdir()
    laptop = make_app(laptop_dir, sandbox, ALICE, monkeypatch)
    try:
        web, token = client_of(laptop)
        page = page_text(web.get("/setup/organization"))
        contoso = re.search(r'value="([0-9a-f-]{36})" id="sync-contoso"', page)
        assert contoso is not None
        web.post(
            "/setup/organization", data={"csrf_token": token, "synchronizing": contoso.group(1)}
        )
        form = {"csrf_token": token, "type": "exchange", "email": ALICE, "auth": "oauth"}
        assert web.post("/setup/mailbox", data={**form, "action": "save"}).status_code == 303
        page = page_text(web.get("/setup/instance"))
        assert "Another computer (desk-pc) is the synchronizing computer." in page
        web.post(
            "/setup/instance",
            data={"csrf_token": token, "take_over": "yes", "instance_name": "laptop"},
        )
        assert get_setting(laptop.extensions["mailbox_sync.database"], "messaging_enabled")
    finally:
        laptop.extensions["mailbox_sync.database"].dispose()

    first = make_app(data_dir, sandbox, ALICE, monkeypatch)  # the first computer, restarted
    try:
        profile = Profile(first.extensions["mailbox_sync.database"], data_dir)
        assert not messaging_allowed(profile, sandbox.describe())
        run = _run_messaging(first)
        assert run.outcome == "skipped" and "laptop" in (run.message or "")
        web, _ = client_of(first)
        assert "Another computer (laptop) is now the synchronizing computer." in page_text(
            web.get("/")
        )
    finally:
        first.extensions["mailbox_sync.database"].dispose()


def test_bobs_wizard_refuses_alices_mailbox(
    sandbox: RunningSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(data_dir, sandbox, BOB, monkeypatch)
    try:
        web, token = client_of(app)
        page = page_text(web.get("/setup/organization"))
        contoso = re.search(r'value="([0-9a-f-]{36})" id="sync-contoso"', page)
        assert contoso is not None
        web.post(
            "/setup/organization", data={"csrf_token": token, "synchronizing": contoso.group(1)}
        )
        refused = web.post(
            "/setup/mailbox",
            data={"csrf_token": token, "type": "exchange", "email": ALICE, "action": "save"},
        )
        assert refused.status_code == 422
        assert "already used by another CRM user, Alice Wong" in page_text(refused)
    finally:
        app.extensions["mailbox_sync.database"].dispose()


def _due_soon_open_tasks(sandbox: RunningSandbox, upn: str, days: int) -> int:
    users = sandbox.describe()["users"]
    user_id = next(u for u in users if u["upn"] == upn)["systemuser_ids"]["contoso"]
    limit = datetime.combine(date.today() + timedelta(days=days), time(0), tzinfo=UTC)
    rows = sandbox.dataverse.table("contoso", "tasks").rows.values()
    return sum(
        1
        for row in rows
        if row.values.get("_ownerid_value") == user_id
        and row.values.get("statecode") == 0
        and row.values.get("scheduledend")
        and datetime.fromisoformat(row.values["scheduledend"].replace("Z", "+00:00")) <= limit
    )


def test_a_filter_of_ones_own_counts_and_syncs_just_its_records(
    sandbox: RunningSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(data_dir, sandbox, BOB, monkeypatch)
    try:
        web, token = client_of(app)
        up_to_the_choices(web, token, BOB, "Bob Kelly", "bobs-pc")
        new = {"csrf_token": token, "filter_kind": "tasks", "filter_name": "Due this week"}
        refused = web.post("/setup/choices/filters", data={**new, "field_0": "scheduledend",
                           "op_0": "le", "value_0": "next friday"})  # fmt: skip
        assert refused.status_code == 422
        assert "type a date like 2026-12-31, or today, today+7" in page_text(refused)

        conditions = {
            "field_0": "_ownerid_value", "op_0": "eq", "value_0": "me",
            "field_1": "statecode", "op_1": "eq", "value_1": "Open",
            "field_2": "scheduledend", "op_2": "le", "value_2": "today+7",
        }  # fmt: skip
        assert web.post("/setup/choices/filters", data={**new, **conditions}).status_code == 303
        page = page_text(web.get("/setup/choices"))
        found = re.search(r'data-testid="filter-(user-\d+)"', page)
        assert found is not None
        slug = found.group(1)
        wanted = _due_soon_open_tasks(sandbox, BOB, 7)
        assert wanted > 0
        assert re.search(rf'data-testid="count-{slug}">\s*{wanted} records', page), wanted

        # only this filter: tasks sync, and just the tasks it takes
        done = web.post("/setup/choices", data={"csrf_token": token, "filters": [slug],
                                                "interval_seconds": "300"})  # fmt: skip
        assert done.status_code == 303
        assert get_setting(app.extensions["mailbox_sync.database"], "kinds") == ["tasks"]
        # Bob's mailbox record gives appointments, contacts and tasks to server-side sync:
        # the run stands aside, says so, and syncs once he sets them to this client
        own_tasks = sandbox.ews.mailbox(BOB).counts()["tasks"]  # his, made in Outlook
        run = _run_messaging(app)
        assert run.outcome == "skipped" and "Server-Side Synchronization" in (run.message or "")
        assert sandbox.ews.mailbox(BOB).counts()["tasks"] == own_tasks
        assert "Server-Side Synchronization" in page_text(web.get("/"))
        web.post("/setup/mailbox/methods", data={"csrf_token": token, "consent": "yes"})
        run = _run_messaging(app)
        assert run.outcome == "ok", run.message
        assert run.counts["tasks"]["mailbox"]["created"] == wanted
        assert "contacts" not in run.counts

        # `sync --once --kind K`: only those of the chosen kinds, the progress told as it goes
        steps: list[tuple[int, int, str | None]] = []
        database = app.extensions["mailbox_sync.database"]
        for only, synced in ((["contacts"], False), (["tasks"], True)):
            service = messaging_service(database, data_dir, sandbox.describe, only,
                                        lambda *step: steps.append(step))  # fmt: skip
            run_id = service.run("messaging", "cli")
            latest = next(r for r in recent_runs(database, limit=5) if r.id == run_id)
            assert latest.outcome == "ok", latest.message
            assert ("tasks" in (latest.counts or {})) is synced, (only, latest.counts)
        assert any(phase and phase.startswith("Tasks") for _d, _t, phase in steps), steps

        # deleted: nothing syncs any more, and its tasks leave the mailbox on the next run
        # (the CRM keeps them); then the kind costs nothing
        web.post(f"/setup/choices/filters/{slug.removeprefix('user-')}/delete",
                 data={"csrf_token": token})  # fmt: skip
        assert f'data-testid="filter-{slug}"' not in page_text(web.get("/setup/choices"))
        assert get_setting(app.extensions["mailbox_sync.database"], "kinds") == []
        crm_tasks = len(sandbox.dataverse.table("contoso", "tasks").rows)
        run = _run_messaging(app)
        assert run.outcome == "ok", run.message
        assert run.counts["tasks"]["mailbox"]["deleted"] == wanted
        assert sandbox.ews.mailbox(BOB).counts()["tasks"] == own_tasks
        assert len(sandbox.dataverse.table("contoso", "tasks").rows) == crm_tasks
        sandbox.log.clear()
        assert _run_messaging(app).outcome == "ok"
        assert not [e for e in sandbox.log if e.target in ("tasks", "SyncFolderItems")]
    finally:
        app.extensions["mailbox_sync.database"].dispose()
