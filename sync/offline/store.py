"""The local offline store: rows, the queue of local changes, table metadata and the mode.

`OfflineStore` is what the pages and the command line use while offline: list (search, sort and
paging done by the database on the indexed `title`, so 50,000 rows stay quick), get, create
(with a GUID made here, the create's idempotency key on going online), update and delete. Each
change writes the row and appends to the queue in one transaction, so a crash leaves both or
neither. Nothing here calls the CRM.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from sync.offline.merge import same
from sync.settings import get_setting, set_setting
from sync.store.db import Database
from sync.store.models import OfflineChange, OfflineRow, OfflineTable

MODE_KEY = "offline_mode"
"""Setting: "offline" while the app works from the local copy, else online."""
POLICY_KEY = "offline_conflict_policy"
"""Setting: "server" (default) or "mine": whose value a field changed on both sides keeps."""
PENDING = ("queued", "sending")
TITLE_COLUMNS = {
    "contacts": "fullname",
    "accounts": "name",
    "leads": "fullname",
    "opportunities": "name",
    "tasks": "subject",
    "appointments": "subject",
    "phonecalls": "subject",
}
"""The primary name column of the usual tables (others: the first of name/fullname/subject)."""
SORTS = ("title", "updated")


class OfflineError(Exception):
    """A local change that cannot be made (unknown table, row gone)."""


def title_column(entity_set: str, columns: Sequence[str] = ()) -> str | None:
    if entity_set in TITLE_COLUMNS:
        return TITLE_COLUMNS[entity_set]
    return next((c for c in ("name", "fullname", "subject") if c in columns), None)


def title_of(fields: Mapping[str, Any], column: str | None) -> str:
    """The row's searchable, sortable title: its primary name, case-folded, capped."""
    value = fields.get(column) if column else None
    if column == "fullname" and not value:
        value = " ".join(str(fields.get(c) or "") for c in ("firstname", "lastname")).strip()
    return str(value or "").casefold()[:300]


@dataclass(frozen=True)
class Record:
    """An offline row as the pages show it."""

    entity_set: str
    id: str
    fields: dict[str, Any]
    state: str
    etag: str | None


@dataclass(frozen=True)
class ListPage:
    records: list[Record]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def get_mode(database: Database) -> str:
    return "offline" if get_setting(database, MODE_KEY) == "offline" else "online"


def set_mode(database: Database, mode: str) -> None:
    set_setting(database, MODE_KEY, "offline" if mode == "offline" else "online")


def get_policy(database: Database) -> str:
    value = get_setting(database, POLICY_KEY)
    return "mine" if value == "mine" else "server"


def _record(row: OfflineRow) -> Record:
    return Record(row.entity_set, row.row_id, dict(row.fields or {}), row.state, row.etag)


class OfflineStore:
    """One organization's offline rows and queue in the local database."""

    def __init__(self, database: Database, org: str) -> None:
        self.database = database
        self.org = org

    # --- metadata ----------------------------------------------------------------------------

    def tables(self) -> builtins.list[OfflineTable]:
        with self.database.session() as session:
            query = select(OfflineTable).where(OfflineTable.org == self.org)
            return list(session.scalars(query.order_by(OfflineTable.entity_set)))

    def table(self, entity_set: str) -> OfflineTable | None:
        with self.database.session() as session:
            return session.get(OfflineTable, (self.org, entity_set))

    # --- reading -----------------------------------------------------------------------------

    def list(
        self,
        entity_set: str,
        search: str = "",
        sort: str = "title",
        descending: bool = False,
        page: int = 1,
        page_size: int = 50,
    ) -> ListPage:
        """One page of the table's rows (deleted ones left out), searched by title prefix or
        substring, sorted by title or last change; the database pages, never Python."""
        page, page_size = max(1, page), max(1, min(page_size, 500))
        where = [
            OfflineRow.org == self.org,
            OfflineRow.entity_set == entity_set,
            OfflineRow.state != "deleted",
        ]
        text = search.strip().casefold()
        if text:
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(OfflineRow.title.like(f"%{escaped}%", escape="\\"))
        column = OfflineRow.updated_at if sort == "updated" else OfflineRow.title
        order = (column.desc(), OfflineRow.id.desc()) if descending else (column, OfflineRow.id)
        with self.database.session() as session:
            total = session.scalar(select(func.count()).select_from(OfflineRow).where(*where))
            rows = session.scalars(
                select(OfflineRow)
                .where(*where)
                .order_by(*order)
                .offset((page - 1) * page_size)
                .limit(page_size)
            )
            return ListPage([_record(r) for r in rows], int(total or 0), page, page_size)

    def get(self, entity_set: str, row_id: str) -> Record | None:
        with self.database.session() as session:
            row = self._row(session, entity_set, row_id)
            return _record(row) if row is not None and row.state != "deleted" else None

    def count(self, entity_set: str | None = None) -> int:
        where = [OfflineRow.org == self.org, OfflineRow.state != "deleted"]
        if entity_set:
            where.append(OfflineRow.entity_set == entity_set)
        with self.database.session() as session:
            return int(
                session.scalar(select(func.count()).select_from(OfflineRow).where(*where)) or 0
            )

    def pending(self) -> builtins.list[OfflineChange]:
        """The queue not yet replayed, in order."""
        with self.database.session() as session:
            query = select(OfflineChange).where(
                OfflineChange.org == self.org, OfflineChange.status.in_(PENDING)
            )
            return list(session.scalars(query.order_by(OfflineChange.id)))

    def _row(self, session: Session, entity_set: str, row_id: str) -> OfflineRow | None:
        return session.scalar(
            select(OfflineRow).where(
                OfflineRow.org == self.org,
                OfflineRow.entity_set == entity_set,
                OfflineRow.row_id == row_id.lower(),
            )
        )

    def _title_column(self, session: Session, entity_set: str) -> str | None:
        table = session.get(OfflineTable, (self.org, entity_set))
        if table is None:
            raise OfflineError(f"{entity_set} is not taken offline")
        return table.title_column

    # --- local changes: the row and its queue item in one transaction ------------------------

    def create(self, entity_set: str, fields: Mapping[str, Any]) -> str:
        """A new row with a GUID made here; returns the id."""
        row_id = str(uuid.uuid4())
        with self.database.session() as session:
            column = self._title_column(session, entity_set)
            values = {k: v for k, v in fields.items()}
            session.add(
                OfflineRow(
                    org=self.org,
                    entity_set=entity_set,
                    row_id=row_id,
                    title=title_of(values, column),
                    fields=values,
                    base=None,
                    etag=None,
                    state="created",
                )
            )
            session.add(self._change("create", entity_set, row_id, values, None))
        return row_id

    def update(self, entity_set: str, row_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Change fields of a row; only the values that differ are queued. Returns them."""
        with self.database.session() as session:
            column = self._title_column(session, entity_set)
            row = self._row(session, entity_set, row_id)
            if row is None or row.state == "deleted":
                raise OfflineError(f"{entity_set}({row_id}) is not in the offline data")
            current = dict(row.fields or {})
            changed = {k: v for k, v in fields.items() if current.get(k) != v}
            if not changed:
                return {}
            current.update(changed)
            row.fields = current
            row.title = title_of(current, column)
            if row.state == "clean":
                row.state = "updated"
            queued = self._queued(session, row)
            if queued is not None and queued.op in ("create", "update"):
                merged = {**(queued.changes or {}), **changed}
                if queued.op == "update":  # a field set back to its base value is no change
                    base = row.base or {}
                    merged = {k: v for k, v in merged.items() if not same(v, base.get(k))}
                if self._amend(session, queued, merged):
                    if not merged:
                        row.state = "clean"
                    return changed
            session.add(self._change("update", entity_set, row.row_id, changed, row.etag))
            return changed

    def delete(self, entity_set: str, row_id: str) -> None:
        """Delete a row locally: hidden at once, removed from the server on going online."""
        with self.database.session() as session:
            row = self._row(session, entity_set, row_id)
            if row is None or row.state == "deleted":
                raise OfflineError(f"{entity_set}({row_id}) is not in the offline data")
            queued = self._queued(session, row)
            op = queued.op if queued is not None else None
            if queued is not None and self._amend(session, queued, None) and op == "create":
                session.delete(row)  # never sent: nothing to tell the server
                return
            row.state = "deleted"
            session.add(self._change("delete", entity_set, row.row_id, {}, row.etag))

    def _queued(self, session: Session, row: OfflineRow) -> OfflineChange | None:
        """The row's change still waiting in the queue (not being sent), if any."""
        found: OfflineChange | None = session.scalar(
            select(OfflineChange)
            .where(
                OfflineChange.org == self.org,
                OfflineChange.entity_set == row.entity_set,
                OfflineChange.row_id == row.row_id,
                OfflineChange.status == "queued",
            )
            .order_by(OfflineChange.id.desc())
        )
        return found

    def _amend(
        self, session: Session, queued: OfflineChange, changes: Mapping[str, Any] | None
    ) -> bool:
        """Fold a new change into the row's queued one (None or nothing left: drop it), so
        each row has one pending change whose `If-Match` is the downloaded ETag and whose merge
        base is the downloaded snapshot. Only while it is still "queued": a replay that took it
        meanwhile wins, and the caller queues a new change instead."""
        guard = (OfflineChange.id == queued.id, OfflineChange.status == "queued")
        if changes:
            done = session.execute(
                update(OfflineChange).where(*guard).values(changes=dict(changes))
            )
        else:
            done = session.execute(sql_delete(OfflineChange).where(*guard))
        session.expunge(queued)
        return bool(getattr(done, "rowcount", 0) == 1)

    def _change(
        self, op: str, entity_set: str, row_id: str, changes: Mapping[str, Any], etag: str | None
    ) -> OfflineChange:
        return OfflineChange(
            org=self.org,
            op=op,
            entity_set=entity_set,
            row_id=row_id,
            changes=dict(changes),
            base_etag=etag,
            status="queued",
        )

    def forget(self) -> None:
        """Drop the organization's offline data (rows, done queue items, tables)."""
        with self.database.session() as session:
            session.execute(delete(OfflineRow).where(OfflineRow.org == self.org))
            session.execute(delete(OfflineTable).where(OfflineTable.org == self.org))
            session.execute(
                delete(OfflineChange).where(
                    OfflineChange.org == self.org, OfflineChange.status.not_in(PENDING)
                )
            )
