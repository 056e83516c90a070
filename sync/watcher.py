"""The change watcher: while the app runs, a mailbox change starts a sync within seconds.

The scheduled sync (every minute by default) stays the fallback: the watcher only asks for an
earlier run (`on_change`, the scheduler's "sync now" with trigger "change"). A stream is a
protocol's way of hearing about changes (EWS streaming notifications today,
sync/mailbox/ews_stream.py); the watcher holds it open, reconnects when the server closes it,
subscribes anew with backoff when it drops, and after a gap asks for one run to catch up. Its
state is kept in the settings (`watch_status.<name>`) for the dashboard ("watching for changes", the
last change) and an alert says when it has been down for a while.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sync.messages import N_
from sync.runs import raise_alert, resolve_alerts
from sync.settings import get_setting, set_setting
from sync.store.db import Database

log = logging.getLogger(__name__)

STATUS_KEY = "watch_status"
ALERT = "watcher-down"
BACKOFF: Sequence[float] = (1, 2, 5, 15, 30, 60)
"""Seconds before subscribing again after the n-th failure in a row (then the last)."""
ALERT_AFTER = 3
"""Failures in a row before the user is told (one dropped connection is normal)."""


@dataclass(frozen=True)
class ChangeBatch:
    """What one notification says: which sync kinds changed, and when the latest change was."""

    kinds: frozenset[str]
    at: datetime | None = None


class ChangeStream(Protocol):
    """A protocol's change notifications for the synced folders."""

    @property
    def description(self) -> str: ...

    def open(self) -> None:
        """Subscribe; raises a `SideError` when the server refuses."""

    def changes(self) -> Iterator[ChangeBatch]:
        """Batches while one connection lasts; returns when the server ends it normally."""

    def interrupt(self) -> None:
        """End a blocking `changes` from another thread."""

    def close(self) -> None:
        """Unsubscribe, best effort."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def status_key(name: str) -> str:
    """The setting that holds the state of the watcher `name` ("mailbox", "crm")."""
    return f"{STATUS_KEY}.{name}"


def read_status(database: Database, name: str) -> dict[str, Any]:
    value = get_setting(database, status_key(name))
    return dict(value) if isinstance(value, dict) else {}


class WatchStatus:
    """One watcher's state as the dashboard reads it (a setting of its own, small writes)."""

    def __init__(self, database: Database, name: str) -> None:
        self.database = database
        self.name = name

    def read(self) -> dict[str, Any]:
        return read_status(self.database, self.name)

    def _write(self, **changes: Any) -> None:
        status = self.read()
        status.update(changes)
        set_setting(self.database, status_key(self.name), status)

    def watching(self, how: str) -> None:
        self._write(state="watching", since=_now(), how=how, reason="")

    def down(self, reason: str) -> None:
        self._write(state="down", since=_now(), reason=reason)

    def off(self, reason: str = "") -> None:
        self._write(state="off", since=_now(), reason=reason)

    def changed(self, batch: ChangeBatch) -> None:
        at = (batch.at or datetime.now(UTC)).isoformat(timespec="seconds")
        self._write(last_change_at=at, last_change_kinds=sorted(batch.kinds))


class ChangeWatcher:
    """Runs a stream in a daemon thread; `on_change(kinds)` for each batch of changes."""

    def __init__(
        self,
        database: Database,
        make_stream: Callable[[], ChangeStream | None],
        on_change: Callable[[frozenset[str]], None],
        backoff: Sequence[float] = BACKOFF,
        idle_check: float = 60.0,
        name: str = "mailbox",
    ) -> None:
        self.name = name
        self.database = database
        self.make_stream = make_stream
        self.on_change = on_change
        self.backoff = tuple(backoff)
        self.idle_check = idle_check
        """Seconds between looks at the profile while there is nothing to watch."""
        self.status = WatchStatus(database, name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: ChangeStream | None = None
        self._lock = threading.Lock()
        self._failures = 0
        """Failures in a row: the backoff, the alert, and whether to catch up once back."""

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"change-watcher-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.interrupt()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                stream = self.make_stream()
            except Exception as error:  # noqa: BLE001 (a profile or sign-in problem: say it)
                self._failed(error)
                continue
            if stream is None:
                self.status.off()
                self._stop.wait(self.idle_check)
                continue
            with self._lock:
                self._stream = stream
            try:
                self._watch(stream)
            except Exception as error:  # noqa: BLE001 (dropped: subscribe again, with backoff)
                if not self._stop.is_set():
                    self._failed(error)
            finally:
                with self._lock:
                    self._stream = None
                stream.close()
        self.status.off()

    def _watch(self, stream: ChangeStream) -> None:
        stream.open()
        self.status.watching(stream.description)
        resolve_alerts(self.database, ALERT, self.name)
        if self._failures:  # changes made while nobody listened are read by one run
            self.on_change(frozenset())
        self._failures = 0
        while not self._stop.is_set():
            for batch in stream.changes():
                self.status.changed(batch)
                log.info("%s changed: %s", self.name, ", ".join(sorted(batch.kinds)))
                self.on_change(batch.kinds)
                if self._stop.is_set():
                    return

    def _failed(self, error: BaseException) -> None:
        self._failures += 1
        failures = self._failures
        reason = getattr(error, "message", "") or str(error) or type(error).__name__
        log.warning("%s change watcher down (%d in a row): %s", self.name, failures, reason)
        self.status.down(reason)
        if failures >= ALERT_AFTER:
            crm = self.name == "crm"
            raise_alert(
                self.database,
                ALERT,
                N_("Changes in the CRM are not seen at once")
                if crm
                else N_("Changes in the mailbox are not seen at once"),
                N_(
                    "Changes are not heard as they happen: %(reason)s. They are still synced "
                    "by the schedule.",
                    reason=reason,
                ),
                N_("Nothing to do if it passes; otherwise check the connection to Dynamics 365.")
                if crm
                else N_("Nothing to do if it passes; otherwise check the connection to Exchange."),
                severity="info",
                subject=self.name,
            )
        self._stop.wait(self.backoff[min(failures, len(self.backoff)) - 1])
