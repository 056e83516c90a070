"""Issue 14, point 3, in the messaging job: a sign-in that only the user can renew raises one
"Sign in again" alert that says what to do; the sign-in service being down is a run that failed
with a message, not a traceback; a good run resolves the alert."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from sync.auth import SIGN_IN_ALERT, SignInRequired
from sync.engine.options import EngineSettings
from sync.kinds import CONTACTS
from sync.memory import MemoryCrm, MemoryMailbox
from sync.messaging import Connection, MessagingJob
from sync.runs import open_alerts, recent_runs
from sync.service import MESSAGING, SyncService
from sync.sides import AuthError, SideError, Unavailable
from sync.store.db import Database, open_database

ALICE = "alice@contoso.example"
EXPIRED = SignInRequired(
    "The sign-in of alice@contoso.example has expired or was revoked (AADSTS50173: The provided "
    "grant has expired due to it being revoked). Sign in again.",
    code="invalid_grant",
    username=ALICE,
)


class RefusingCrm(MemoryCrm):
    """A CRM side whose reads fail with `error` while it is set."""

    error: SideError | None = None

    def read_changes(self, *args: Any, **kwargs: Any) -> Any:
        if self.error is not None:
            raise self.error
        return super().read_changes(*args, **kwargs)


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return open_database(tmp_path / "data")


def service_over(database: Database, connect: Any) -> SyncService:
    return SyncService(database, {MESSAGING: MessagingJob(database, connect)})


def connection_to(crm: MemoryCrm) -> Connection:
    return Connection("org", crm, MemoryMailbox(), EngineSettings(me=crm.me), [CONTACTS])


def last_run(database: Database) -> Any:
    return recent_runs(database, limit=1)[0]


def test_sign_in_required_during_a_kind_raises_the_sign_in_alert(database: Database) -> None:
    crm = RefusingCrm()
    crm.error = EXPIRED
    service_over(database, lambda: connection_to(crm)).run(MESSAGING, "now")
    run = last_run(database)
    assert run.outcome == "failed" and "sign-in required" in run.message
    [alert] = open_alerts(database)
    assert alert.code == SIGN_IN_ALERT == "signin_required"
    assert alert.title == "Sign in again" and alert.severity == "error"
    assert "AADSTS50173" in alert.message
    assert "/signin" in alert.action and f"sign in as {ALICE} again" in alert.action

    crm.error = None  # the user signed in again: the next good run resolves the alert
    service_over(database, lambda: connection_to(crm)).run(MESSAGING, "now")
    assert last_run(database).outcome == "ok" and open_alerts(database) == []


def test_sign_in_required_while_connecting_raises_the_alert_not_a_traceback(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def connect() -> Connection:
        raise EXPIRED  # e.g. the mailbox connection's first token

    caplog.set_level(logging.INFO)
    service_over(database, connect).run(MESSAGING, "now")
    assert last_run(database).outcome == "failed"
    assert [a.code for a in open_alerts(database)] == [SIGN_IN_ALERT]
    assert not [r for r in caplog.records if r.exc_info]


def test_other_refusals_keep_the_sign_in_refused_alert(database: Database) -> None:
    crm = RefusingCrm()
    crm.error = AuthError("The user has no access to this organization.", "0x80040220")
    service_over(database, lambda: connection_to(crm)).run(MESSAGING, "now")
    assert [a.code for a in open_alerts(database)] == ["auth-failed"]


def test_the_sign_in_service_down_while_connecting_is_a_message(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    down = Unavailable(
        "The sign-in service at https://login.example/t is not available: it answered 503 "
        "Service Unavailable 3 times in a row. Sync tries again at the next run.",
        code="503",
    )

    def connect() -> Connection:
        raise down

    service_over(database, connect).run(MESSAGING, "now")
    run = last_run(database)
    assert run.outcome == "failed" and run.message == down.message
    assert open_alerts(database) == []
    assert not [r for r in caplog.records if r.exc_info]
