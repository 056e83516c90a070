"""Near real time with `run.py serve` (issue 9 part 4): a contact's job title changed in the
mailbox is in the CRM seconds later, and one changed in the CRM is in the mailbox seconds later,
each by a run a change watcher asked for (EWS streaming notifications; CRM change tracking
polled) — the schedule is an hour here, so no scheduled run can be what brought them. Against the sandbox's EWS (streaming notifications) and
Dataverse, over real HTTP, in a server process of its own; no browser is needed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveApp, SandboxProcess, start_app

from sync.runs import recent_runs
from sync.store.db import open_database
from sync.watcher import read_status
from tests.sandbox_process import set_up_by_cli

ALICE = "alice@contoso.example"
LAST_NAME = f"Watched-{uuid.uuid4().hex[:8]}"


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)
    return found


@pytest.fixture(scope="module")
def alice_app(
    shared_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    data_dir = tmp_path_factory.mktemp("alice-watch")
    set_up_by_cli(shared_sandbox, data_dir, ALICE, "--interval", "3600")
    with shared_sandbox.crm(ALICE) as crm:  # one contact of Alice's for the first run to copy
        crm.post("contacts", json={"firstname": "Wanda", "lastname": LAST_NAME}).raise_for_status()
    app = start_app(data_dir, sandbox_json=shared_sandbox.json_file)
    yield app
    app.stop()


def test_a_mailbox_change_reaches_the_crm_by_a_run_the_watcher_asked_for(
    shared_sandbox: SandboxProcess, alice_app: LiveApp
) -> None:
    database = open_database(alice_app.data_dir)
    try:

        def finished(trigger: str) -> list[Any]:
            return [
                r
                for r in recent_runs(database, job="messaging")
                if r.trigger == trigger and r.finished_at is not None
            ]

        wait_for(lambda: finished("schedule"))  # the run at start
        for name in ("mailbox", "crm"):
            wait_for(lambda n=name: read_status(database, n).get("state") == "watching")
        mailbox = shared_sandbox.mailbox(ALICE)
        (copy,) = mailbox.contacts.filter(surname=LAST_NAME)  # put there by that run
        title = f"Watched {uuid.uuid4().hex[:8]}"
        copy.job_title = title
        copy.save(update_fields=["job_title"])

        def in_crm() -> list[dict[str, Any]]:
            with shared_sandbox.crm(ALICE) as crm:
                answer = crm.get("contacts", params={"$filter": f"jobtitle eq '{title}'"}).json()
            return list(answer["value"])

        try:
            (contact,) = wait_for(in_crm, timeout=45)
        except AssertionError:
            runs = [(r.trigger, r.outcome, r.message, r.counts) for r in recent_runs(database)]
            raise AssertionError(
                f"{runs}\n{read_status(database, 'mailbox')}\n{''.join(alice_app.output)}"
            ) from None
        assert contact["lastname"] == LAST_NAME
        # the CRM row changes before its run ends: wait for that run to be recorded
        try:
            wait_for(lambda: finished("change"), timeout=30)
        except AssertionError:
            raise AssertionError("the change came by the schedule, not by the watcher") from None
        assert len(finished("schedule")) == 1  # the run at start only: the hour has not passed
        status = read_status(database, "mailbox")
        assert status["last_change_kinds"] == ["contacts"]

        # and the other way: a change in the CRM is in the mailbox seconds later
        changes_before = len(finished("change"))
        crm_title = f"Polled {uuid.uuid4().hex[:8]}"
        with shared_sandbox.crm(ALICE) as crm:
            crm.patch(
                f"contacts({contact['contactid']})", json={"jobtitle": crm_title}
            ).raise_for_status()
        wait_for(lambda: mailbox.contacts.get(id=copy.id).job_title == crm_title, timeout=45)
        # the mailbox copy changes before its run ends: wait for that run to be recorded
        wait_for(lambda: len(finished("change")) > changes_before, timeout=30)
        assert "contacts" in read_status(database, "crm")["last_change_kinds"]
    finally:
        database.dispose()


def test_the_watcher_is_not_running_where_nothing_is_set_up(tmp_path: Path) -> None:
    """Before the wizard, nothing is watched (and nothing fails)."""
    app = start_app(tmp_path / "fresh")
    try:
        database = open_database(app.data_dir)
        try:
            for name in ("mailbox", "crm"):
                wait_for(lambda n=name: read_status(database, n).get("state") == "off")
        finally:
            database.dispose()
    finally:
        app.stop()
