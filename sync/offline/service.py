"""Offline as a service: go offline, go online, refresh, status — for the job, pages and CLI.

Every step that writes offline data holds the "offline" job lock (`sync.store.lock`), so the
scheduled refresh, a page's button and `run.py offline` never replay or download at once. While
the mode is "offline" nothing here calls the CRM but `go_online` (the user's word).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from sync.crm.client import DataverseClient
from sync.offline.download import Downloader, DownloadResult, Filters, Progress, offline_filters
from sync.offline.replay import Fault, Replayer, ReplayResult
from sync.offline.store import OfflineStore, get_mode, get_policy, set_mode
from sync.setup.odata import OFFLINE_PREFIX
from sync.store.db import Database
from sync.store.lock import hold, lock_directory
from sync.store.models import ConflictRecord, Organization

JOB = "offline"


@dataclass
class OfflineConnection:
    """What offline work needs of the CRM: the organization, the user, a client."""

    org: str
    me: str
    client: DataverseClient
    timezone: str = "UTC"
    close: Callable[[], None] = field(default=lambda: None)


Connect = Callable[[], OfflineConnection]


class OfflineUnavailable(Exception):
    """Offline cannot work yet (no organization, nothing chosen); the text says what to do."""


def current_org(database: Database) -> str | None:
    """The organization offline data belongs to: the synchronizing one (else the first)."""
    with database.session() as session:
        rows = list(session.scalars(select(Organization).order_by(Organization.added_at)))
    for row in rows:
        if row.role == "synchronizing":
            return row.id
    return rows[0].id if rows else None


@dataclass
class OfflineStatus:
    mode: str
    org: str | None
    rows: dict[str, int]
    pending: int
    conflicts: int
    tables: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "organization": self.org,
            "rows": self.rows,
            "pending": self.pending,
            "conflicts": self.conflicts,
            "tables": self.tables,
        }


class OfflineService:
    def __init__(self, database: Database, connect: Connect, wait: float = 0) -> None:
        self.database = database
        self.connect = connect
        self.wait = wait

    def is_set_up(self) -> bool:
        """Whether any offline filter is chosen (the job is scheduled only then)."""
        return bool(offline_filters(self.database))

    def filters(self) -> Filters:
        return offline_filters(self.database)

    def store(self) -> OfflineStore:
        org = current_org(self.database)
        if org is None:
            raise OfflineUnavailable("Connect an organization first (the setup wizard).")
        return OfflineStore(self.database, org)

    def status(self) -> OfflineStatus:
        org = current_org(self.database)
        rows: dict[str, int] = {}
        pending = conflicts = 0
        tables: list[str] = []
        if org is not None:
            store = OfflineStore(self.database, org)
            tables = [t.entity_set for t in store.tables()]
            rows = {t: store.count(t) for t in tables}
            pending = len(store.pending())
            with self.database.session() as session:
                conflicts = int(
                    session.scalar(
                        select(func.count())
                        .select_from(ConflictRecord)
                        .where(
                            ConflictRecord.org == org,
                            ConflictRecord.kind.startswith(OFFLINE_PREFIX),
                            ConflictRecord.reversed_at.is_(None),
                        )
                    )
                    or 0
                )
        return OfflineStatus(get_mode(self.database), org, rows, pending, conflicts, tables)

    def _hold(self, what: str) -> Any:
        return hold(lock_directory(self.database.url), JOB, self.wait, what)

    def go_offline(self, progress: Progress | None = None) -> DownloadResult:
        """Download the chosen rows, then work from them: the mode becomes offline."""
        filters = self.filters()
        if not filters:
            raise OfflineUnavailable(
                "Choose at least one offline filter first (the wizard's What to sync step)."
            )
        with self._hold("going offline"):
            connection = self.connect()
            try:
                if get_mode(self.database) == "online":
                    self._replay(connection, progress, None)  # left from an interrupted go-online
                result = Downloader(
                    self.database,
                    connection.org,
                    connection.client,
                    connection.me,
                    connection.timezone,
                    progress,
                ).go_offline(filters)
            finally:
                connection.close()
            set_mode(self.database, "offline")
            return result

    def go_online(
        self, progress: Progress | None = None, fault: Fault | None = None
    ) -> tuple[ReplayResult, DownloadResult | None]:
        """Replay the queue, then (when it all went) refresh by change tracking and work online."""
        with self._hold("going online"):
            connection = self.connect()
            try:
                replayed = self._replay(connection, progress, fault)
                if OfflineStore(self.database, connection.org).pending():
                    return replayed, None
                set_mode(self.database, "online")
                refreshed = self._refresh(connection, progress)
            finally:
                connection.close()
            return replayed, refreshed

    def refresh(self, progress: Progress | None = None) -> DownloadResult | None:
        """The scheduled job's work: while online, bring the local copy up to date (None while
        offline: no CRM call)."""
        if get_mode(self.database) == "offline":
            return None
        with self._hold("refreshing offline data"):
            connection = self.connect()
            try:
                self._replay(connection, progress, None)
                return self._refresh(connection, progress)
            finally:
                connection.close()

    def _replay(
        self, connection: OfflineConnection, progress: Progress | None, fault: Fault | None
    ) -> ReplayResult:
        return Replayer(
            self.database,
            connection.org,
            connection.client,
            get_policy(self.database),
            progress,
            fault,
        ).replay()

    def _refresh(self, connection: OfflineConnection, progress: Progress | None) -> DownloadResult:
        return Downloader(
            self.database,
            connection.org,
            connection.client,
            connection.me,
            connection.timezone,
            progress,
        ).refresh(self.filters())


def counts_of(result: DownloadResult | None, replayed: ReplayResult | None) -> Mapping[str, Any]:
    """A run's counts for the dashboard: rows per table, replayed changes, conflicts."""
    out: dict[str, Any] = {}
    if result is not None:
        out["rows"] = dict(result.rows)
        out["requests"] = result.requests
    if replayed is not None:
        out["replayed"] = replayed.done
        out["conflicts"] = replayed.conflicts
        out["errors"] = replayed.failed
    return out
