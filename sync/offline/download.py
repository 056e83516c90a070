"""Go offline and refresh: download the rows the offline filters choose, with each row's ETag, a
base snapshot and the table's metadata, and keep the change-tracking delta link per table.

Change tracking refuses `$filter` (DESIGN.md §3), so the rows are read by change tracking and
the offline filters applied here (`sync.engine.filters`), as the messaging engine does; that
one read also yields the delta link a refresh starts from. A table whose change tracking is
refused is read with the filter as `$filter` instead, and read again in full on each refresh.
Rows with local changes not yet replayed are never overwritten or dropped by a refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select

from sync.crm.client import ChangeTrackingRefused, DataverseClient
from sync.engine.filters import in_filter
from sync.offline.metadata import read_table
from sync.offline.store import title_column, title_of
from sync.setup.odata import OFFLINE_PREFIX, to_odata
from sync.sides import TokenExpired
from sync.store.db import Database
from sync.store.models import OfflineRow, OfflineTable, SyncFilter

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Told (phase, done, total) as the download goes."""
Filters = dict[str, list[list[dict[str, Any]]]]
"""Per entity set, the enabled offline filters (any of them takes a row; each: all conditions)."""


@dataclass
class DownloadResult:
    rows: dict[str, int] = field(default_factory=dict)
    """Rows kept per entity set."""
    removed: int = 0
    requests: int = 0


def offline_filters(database: Database) -> Filters:
    """The enabled offline filters by entity set (SyncFilter rows of kind "offline:<set>")."""
    found: Filters = {}
    with database.session() as session:
        query = select(SyncFilter).where(
            SyncFilter.enabled.is_(True), SyncFilter.kind.startswith(OFFLINE_PREFIX)
        )
        for row in session.scalars(query.order_by(SyncFilter.id)):
            entity_set = row.kind.removeprefix(OFFLINE_PREFIX)
            found.setdefault(entity_set, []).append([dict(c) for c in row.conditions or []])
    return found


def row_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's data without annotations (ETag, formatted values): what is kept and merged."""
    return {k: v for k, v in row.items() if "@" not in k}


def _nothing(_phase: str, _done: int, _total: int) -> None:
    return None


class Downloader:
    """Reads offline tables of one organization into the local database."""

    def __init__(
        self,
        database: Database,
        org: str,
        client: DataverseClient,
        me: str,
        timezone: str = "UTC",
        progress: Progress | None = None,
    ) -> None:
        self.database = database
        self.org = org
        self.client = client
        self.me = me
        self.timezone = timezone
        self.progress = progress or _nothing
        self.now = datetime.now(UTC)

    def go_offline(self, filters: Filters) -> DownloadResult:
        """Download every table of `filters` afresh (metadata, rows, delta link)."""
        result = DownloadResult()
        start = self.client.request_count
        totals = {s: self._estimate(s, f) for s, f in filters.items()}
        total, done = sum(totals.values()), 0
        self.progress("metadata", 0, total)
        tables = {s: self._table(s, f) for s, f in filters.items()}
        for entity_set, conditions in filters.items():
            kept = self._full(tables[entity_set], conditions, done, total)
            result.rows[entity_set] = kept
            done += totals[entity_set]
            self.progress("rows", done, total)
        self._drop_unchosen(set(filters))
        result.requests = self.client.request_count - start
        return result

    def refresh(self, filters: Filters) -> DownloadResult:
        """Bring the clean local rows up to date by change tracking (a table new to the
        filters, or whose delta link was refused, is read in full)."""
        result = DownloadResult()
        start = self.client.request_count
        with self.database.session() as session:
            known = {
                t.entity_set: t
                for t in session.scalars(select(OfflineTable).where(OfflineTable.org == self.org))
            }
        for index, (entity_set, conditions) in enumerate(filters.items()):
            self.progress("refresh", index, len(filters))
            table = known.get(entity_set)
            if table is None:
                table = self._table(entity_set, conditions)
                result.rows[entity_set] = self._full(table, conditions, 0, 0)
                continue
            if not table.delta_link:
                result.rows[entity_set] = self._full(table, conditions, 0, 0)
                continue
            try:
                changed = 0
                for page in self.client.track_changes(entity_set, table.delta_link):
                    changed += self._apply(table, conditions, page.rows, page.deleted, None)
                    if page.last:
                        self._save_link(entity_set, page.delta_link)
                result.rows[entity_set] = changed
            except TokenExpired:
                log.info("offline %s: delta link refused, reading it again", entity_set)
                result.rows[entity_set] = self._full(table, conditions, 0, 0)
        self._drop_unchosen(set(filters))
        self.progress("refresh", len(filters), len(filters))
        result.requests = self.client.request_count - start
        return result

    # --- steps -------------------------------------------------------------------------------

    def _estimate(self, entity_set: str, conditions: Sequence[Sequence[Any]]) -> int:
        """How many rows the filters choose (the size estimate the progress bar runs to)."""
        total = 0
        for condition in conditions:
            total += self.client.count(
                entity_set, to_odata(condition, self.me, self.now, self.timezone) or None
            )
        return total

    def _table(self, entity_set: str, conditions: Sequence[Any]) -> OfflineTable:
        described = read_table(self.client, entity_set)
        names = [c["name"] for c in described.columns]
        with self.database.session() as session:
            table = session.get(OfflineTable, (self.org, entity_set))
            if table is None:
                table = OfflineTable(org=self.org, entity_set=entity_set)
                session.add(table)
            table.logical_name = described.logical_name
            table.key = described.key
            table.title_column = title_column(entity_set, names)
            table.columns = described.columns
            table.row_filter = " or ".join(
                f"({to_odata(c, self.me, self.now, self.timezone)})" for c in conditions
            )
        return table

    def _full(self, table: OfflineTable, conditions: Sequence[Any], done: int, total: int) -> int:
        """Read the whole table; rows no longer chosen (and clean) are dropped locally."""
        seen: set[str] = set()
        kept = 0
        try:
            for page in self.client.track_changes(table.entity_set):
                kept += self._apply(table, conditions, page.rows, page.deleted, seen)
                self.progress("rows", min(done + kept, total) if total else kept, total)
                if page.last:
                    self._save_link(table.entity_set, page.delta_link)
        except ChangeTrackingRefused as refused:
            log.info("offline %s: change tracking refused (%s)", table.entity_set, refused.reason)
            seen.clear()
            kept = 0
            for condition in conditions:
                query = to_odata(condition, self.me, self.now, self.timezone) or None
                for rows in self.client.iter_pages(table.entity_set, filter=query):
                    kept += self._apply(table, [], rows, [], seen)
            self._save_link(table.entity_set, None)
        self._drop_unseen(table.entity_set, seen)
        return kept

    def _apply(
        self,
        table: OfflineTable,
        conditions: Sequence[Any],
        rows: Iterable[Mapping[str, Any]],
        deleted: Iterable[str],
        seen: set[str] | None,
    ) -> int:
        """Write one page in one transaction; returns the rows kept. `conditions` empty: the
        rows were already filtered by the service."""
        kept = 0
        rows = list(rows)
        deleted = list(deleted)
        ids = [str(r.get(table.key) or "").lower() for r in rows] + deleted
        with self.database.session() as session:
            known = self._locals(session, table.entity_set, [i for i in ids if i])
            for raw in rows:
                fields = row_fields(raw)
                row_id = str(fields.get(table.key) or "").lower()
                if not row_id:
                    continue
                chosen = not conditions or in_filter(
                    fields, conditions, self.me, self.now, self.timezone
                )
                local = known.get(row_id)
                if local is not None and local.state != "clean":
                    if seen is not None:
                        seen.add(row_id)
                    continue  # local changes wait for the replay, which merges them
                if not chosen:
                    if local is not None:
                        session.delete(local)
                    continue
                if seen is not None:
                    seen.add(row_id)
                kept += 1
                if local is None:
                    local = OfflineRow(
                        org=self.org, entity_set=table.entity_set, row_id=row_id, state="clean"
                    )
                    session.add(local)
                    known[row_id] = local
                local.fields = fields
                local.base = dict(fields)
                local.etag = raw.get("@odata.etag")
                local.title = title_of(fields, table.title_column)
            for row_id in deleted:
                local = known.get(row_id)
                if local is not None and local.state == "clean":
                    session.delete(local)
        return kept

    def _locals(self, session: Any, entity_set: str, ids: list[str]) -> dict[str, OfflineRow]:
        """The local rows of a page's ids, read in chunks (one query per 500, not per row)."""
        found: dict[str, OfflineRow] = {}
        for start in range(0, len(ids), 500):
            query = select(OfflineRow).where(
                OfflineRow.org == self.org,
                OfflineRow.entity_set == entity_set,
                OfflineRow.row_id.in_(ids[start : start + 500]),
            )
            found.update({row.row_id: row for row in session.scalars(query)})
        return found

    def _save_link(self, entity_set: str, link: str | None) -> None:
        with self.database.session() as session:
            table = session.get(OfflineTable, (self.org, entity_set))
            if table is not None:
                table.delta_link = link

    def _drop_unseen(self, entity_set: str, seen: set[str]) -> None:
        """Clean rows the read did not bring: read by id only (a table of 50,000 rows loaded
        as objects, JSON and all, took a gigabyte) and deleted in chunks."""
        with self.database.session() as session:
            query = select(OfflineRow.id, OfflineRow.row_id).where(
                OfflineRow.org == self.org,
                OfflineRow.entity_set == entity_set,
                OfflineRow.state == "clean",
            )
            gone = [pk for pk, row_id in session.execute(query) if row_id not in seen]
            _delete_rows(session, gone)

    def _drop_unchosen(self, chosen: set[str]) -> None:
        """Tables no offline filter chooses any more: their clean rows and metadata go (the
        table's definition stays while changes of its rows wait for the replay)."""
        with self.database.session() as session:
            for table in session.scalars(select(OfflineTable).where(OfflineTable.org == self.org)):
                if table.entity_set in chosen:
                    continue
                query = select(OfflineRow.id, OfflineRow.state).where(
                    OfflineRow.org == self.org, OfflineRow.entity_set == table.entity_set
                )
                states = session.execute(query).all()
                _delete_rows(session, [pk for pk, state in states if state == "clean"])
                if all(state == "clean" for _, state in states):
                    session.delete(table)


def _delete_rows(session: Any, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), 500):
        session.execute(delete(OfflineRow).where(OfflineRow.id.in_(ids[start : start + 500])))
