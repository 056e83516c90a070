"""The change watcher (issue 9 part 4): a mailbox change asks for a sync within seconds.

Against the sandbox EWS over real HTTPS: a streaming subscription over the synced folders, a
GetStreamingEvents connection held open that delivers each change as it happens
(getstreamingevents-operation.md), read again when the server closes it after its
ConnectionTimeout (connectiontimeout.md, 1 to 30 minutes; a "minute" lasts a second here), and
a new subscription, with one catch-up run, when the server no longer knows the old one
(ErrorSubscriptionNotFound). The watcher's own rules (backoff, alert, status, stop) are
proven with a stream in memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from exchangelib.items import Contact

from sync.mailbox.ews import EwsSide
from sync.mailbox.ews_stream import EwsChangeStream
from sync.runs import open_alerts
from sync.sides import Unavailable
from sync.store.db import Database, open_database
from sync.watcher import ALERT, ChangeBatch, ChangeWatcher
from tests.mailbox.ews_helpers import ALICE, connect


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = open_database(tmp_path / "data")
    yield db
    db.dispose()


@pytest.fixture
def short_minutes(ews: Any) -> Iterator[Any]:
    ews.streaming_minute, ews.streaming_heartbeat = 1.0, 0.3
    yield ews
    ews.streaming_minute, ews.streaming_heartbeat = 60.0, 30.0


class Heard:
    """What the watcher asked for, in order."""

    def __init__(self) -> None:
        self.kinds: list[frozenset[str]] = []
        self._lock = threading.Lock()

    def __call__(self, kinds: frozenset[str]) -> None:
        with self._lock:
            self.kinds.append(kinds)

    def saw(self, kind: str) -> bool:
        with self._lock:
            return any(kind in k for k in self.kinds)


def test_a_contact_saved_in_outlook_asks_for_a_sync_of_contacts(
    short_minutes: Any, database: Database
) -> None:
    side = EwsSide(connect(short_minutes, ALICE))
    writer = EwsSide(connect(short_minutes, ALICE))  # "Outlook": another client
    stream = EwsChangeStream(
        side,
        {"contacts": frozenset({"contacts"}), "tasks": frozenset({"tasks"})},
        connection_minutes=1,
    )
    heard = Heard()
    watcher = ChangeWatcher(database, lambda: stream, heard, backoff=(0.2,))
    watcher.start()
    try:
        wait_for(lambda: watcher.status.read().get("state") == "watching")
        Contact(
            folder=writer.account.contacts, given_name="Streamed", display_name="Streamed"
        ).save()
        wait_for(lambda: heard.saw("contacts"))
        assert not heard.saw("tasks")
        status = watcher.status.read()
        assert status["last_change_kinds"] == ["contacts"]
        assert datetime.fromisoformat(status["last_change_at"]) <= datetime.now(UTC)
        # the server closes the connection after its timeout; the same subscription is read
        # again, and a change after that is heard too
        time.sleep(1.5)
        before = len(heard.kinds)
        Contact(folder=writer.account.contacts, given_name="Later", display_name="Later").save()
        wait_for(lambda: len(heard.kinds) > before and heard.saw("contacts"))
        subscribes = [e for e in short_minutes.log.snapshot() if e.target == "Subscribe"]
        assert len(subscribes) == 1
    finally:
        watcher.stop()
    assert watcher._thread is not None and not watcher._thread.is_alive()
    assert watcher.status.read()["state"] == "off"


def test_a_forgotten_subscription_is_made_again_and_a_run_catches_up(
    short_minutes: Any, database: Database
) -> None:
    side = EwsSide(connect(short_minutes, ALICE))
    stream = EwsChangeStream(side, {"tasks": frozenset({"tasks"})}, connection_minutes=1)
    heard = Heard()
    watcher = ChangeWatcher(database, lambda: stream, heard, backoff=(0.2,))
    watcher.start()
    try:
        wait_for(lambda: watcher.status.read().get("state") == "watching")
        short_minutes.subscriptions.clear()  # e.g. the server restarted
        wait_for(lambda: frozenset() in heard.kinds, timeout=30)  # the catch-up run
        subscribes = [e for e in short_minutes.log.snapshot() if e.target == "Subscribe"]
        assert len(subscribes) >= 2
        assert watcher.status.read()["state"] == "watching"
    finally:
        watcher.stop()


def test_stop_ends_a_held_connection_at_once(ews: Any, database: Database) -> None:
    """The app stopping must not wait for the connection's 29 minutes to pass."""
    side = EwsSide(connect(ews, ALICE))
    stream = EwsChangeStream(side, {"contacts": frozenset({"contacts"})})
    watcher = ChangeWatcher(database, lambda: stream, Heard(), backoff=(0.2,))
    watcher.start()
    wait_for(lambda: watcher.status.read().get("state") == "watching")
    time.sleep(0.3)  # inside GetStreamingEvents
    watcher.stop(timeout=10)
    assert watcher._thread is not None and not watcher._thread.is_alive()


# --- the watcher's rules, with a stream in memory ---------------------------------------


class FakeStream:
    """Fails `failures` times to open, then yields `batches` and waits to be interrupted."""

    description = "in memory"

    def __init__(self, failures: int, batches: list[ChangeBatch]) -> None:
        self.failures = failures
        self.batches = batches
        self.opened = 0
        self.closed = 0
        self._interrupted = threading.Event()

    def open(self) -> None:
        if self.failures:
            self.failures -= 1
            raise Unavailable("Exchange could not be reached: connection refused")
        self.opened += 1

    def changes(self) -> Iterator[ChangeBatch]:
        yield from self.batches
        self.batches = []
        self._interrupted.wait(5)
        if self._interrupted.is_set():
            raise Unavailable("interrupted")

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        self.closed += 1


def test_failures_back_off_alert_after_three_and_recover_with_a_catch_up(
    database: Database,
) -> None:
    stream = FakeStream(3, [ChangeBatch(frozenset({"email"}))])
    heard = Heard()
    watcher = ChangeWatcher(database, lambda: stream, heard, backoff=(0.05, 0.1))
    watcher.start()
    try:
        wait_for(lambda: heard.saw("email"))
        # three failures in a row told the user; coming back resolved it and caught up once
        assert heard.kinds == [frozenset(), frozenset({"email"})]
        assert [a for a in open_alerts(database) if a.code == ALERT] == []
        assert watcher.status.read()["state"] == "watching"
    finally:
        watcher.stop()
    assert stream.closed >= 4 and stream.opened == 1


def test_the_alert_stays_while_the_stream_keeps_failing(database: Database) -> None:
    stream = FakeStream(1000, [])
    watcher = ChangeWatcher(database, lambda: stream, Heard(), backoff=(0.05,))
    watcher.start()
    try:
        wait_for(lambda: any(a.code == ALERT for a in open_alerts(database)))
        status = watcher.status.read()
        assert status["state"] == "down" and "could not be reached" in status["reason"]
    finally:
        watcher.stop()


def test_nothing_to_watch_is_said_and_looked_at_again(database: Database) -> None:
    asked = []

    def nothing() -> None:
        asked.append(1)
        return None

    watcher = ChangeWatcher(database, nothing, Heard(), idle_check=0.05)
    watcher.start()
    try:
        wait_for(lambda: len(asked) >= 3)
        assert watcher.status.read()["state"] == "off"
    finally:
        watcher.stop()
