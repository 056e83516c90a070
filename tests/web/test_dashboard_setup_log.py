"""Issue 11 point 8: before setup is finished the dashboard offers "Finish setup" (the wizard's
current step) where the cards would be; the Log page tells what each run synced, what failed and
why (runs, open alerts, items that failed), with the raw log one click away for support."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sync.messages import N_
from sync.runs import RunRecorder, raise_alert
from sync.store.models import ItemError
from tests.helpers import page_text, signed_in


@pytest.fixture
def gated_app(data_dir: Path) -> Iterator[Flask]:
    """The app as `serve` makes it: the dashboard knows whether setup is finished."""
    from webapp import create_app

    app = create_app(
        {"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token", "SETUP_REDIRECT": True}
    )
    yield app
    app.extensions["mailbox_sync.database"].dispose()


def test_finish_setup_where_the_cards_would_be(gated_app: Flask) -> None:
    client = signed_in(gated_app)
    RunRecorder(gated_app.extensions["mailbox_sync.database"], "messaging", "now").finish("ok")
    assert client.get("/").status_code == 302  # `/` still opens the wizard first
    html = client.get("/?setup=later").get_data(as_text=True)
    link = re.search(r'href="([^"]+)" data-testid="finish-setup-link">Finish setup<', html)
    assert link is not None and link.group(1) == "/setup/organization"
    assert 'data-testid="kind-contacts"' not in html and 'data-testid="run-row"' not in html
    assert 'data-testid="workloads"' not in html
    fragment = client.get("/status").get_data(as_text=True)  # the polled part says the same
    assert 'data-testid="finish-setup"' in fragment and "Organization" in fragment


def test_log_tells_what_synced_and_what_failed(app: Flask, client: FlaskClient) -> None:
    database = app.extensions["mailbox_sync.database"]
    for _ in range(4):
        RunRecorder(database, "messaging", "schedule").finish("ok", N_("Nothing changed."))
    recorder = RunRecorder(database, "messaging", "now")
    recorder.counts(
        {
            "contacts": {"mailbox": {"created": 7}, "crm": {"updated": 2}},
            "recurringappointments": {"mailbox": {"created": 1}},
            "tasks": {"mailbox": {}, "crm": {}, "errors": 2},
            "email": {"message": "reading the CRM mailbox record: 503"},
        }
    )
    recorder.finish("partial", "tasks: 2 items failed (retried later)")
    raise_alert(database, "throttled", "Throttled by Dataverse", "Waited 30 s.", "Nothing.")
    with database.session() as session:
        session.add(
            ItemError(
                org="o",
                kind="tasks",
                side="mailbox",
                item_id="AAMk-task-1",
                operation="update",
                message="ErrorItemNotFound",
                attempts=3,
            )
        )
    logging.getLogger("sync.test").warning("a line for support")
    page = page_text(client.get("/log"))
    assert "Contacts: 7 created → mailbox" in page and "Contacts: 2 updated → CRM" in page
    assert "Appointments: 1 created → mailbox" in page  # a series, in people's words
    assert "Tasks: 2 items failed (retried later)" in page
    assert "Email tracking: not run: reading the CRM mailbox record: 503" in page
    assert "Throttled by Dataverse" in page and "What to do: Nothing." in page
    assert "AAMk-task-1" in page and "ErrorItemNotFound" in page
    assert "Quiet since" in page and "4 runs" in page
    assert "Sync now" in page  # the trigger in words
    assert "recurringappointments" not in page
    # the raw log: folded, one click away
    raw = re.search(r'<details class="raw-log" data-testid="raw-log">(.*?)</details>', page)
    assert raw is not None and "Raw log, for support" in raw.group(1)
    assert "a line for support" in raw.group(1)
