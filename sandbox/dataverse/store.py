"""In-memory tables per organization, with a global row version and a change log per table.

Rows live in dicts keyed by id. Every write takes the next global row version (the ETag and the
change-tracking watermark). Deletions are kept as (version, id) so delta links can report them.
One re-entrant lock guards everything; `transaction()` records undo steps so a failed request or
change set leaves the store exactly as it was.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sandbox.dataverse.schema import ENTITIES, EntityDef


@dataclass
class Row:
    values: dict[str, Any]
    targets: dict[str, str] = field(default_factory=dict)
    """lookup column (e.g. 'parentcustomerid') → target logical name (e.g. 'account')."""

    @property
    def version(self) -> int:
        return int(self.values["versionnumber"])

    def copy(self) -> Row:
        return Row(dict(self.values), dict(self.targets))


@dataclass
class Table:
    entity: EntityDef
    rows: dict[str, Row] = field(default_factory=dict)
    deletes: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, row_id: str) -> Row | None:
        return self.rows.get(row_id.lower())


class Store:
    """All organizations' tables. Use `lock` (or `transaction()`) around every access."""

    def __init__(self, organizations: list[str]) -> None:
        self.lock = threading.RLock()
        self.version = 1000
        self.orgs: dict[str, dict[str, Table]] = {
            org: {name: Table(entity) for name, entity in ENTITIES.items()} for org in organizations
        }
        self._undo: list[Callable[[], None]] = []
        self._depth = 0

    def table(self, org: str, entity_set: str) -> Table:
        return self.orgs[org][entity_set]

    def next_version(self) -> int:
        with self.lock:
            self.version += 1
            return self.version

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside either all stay or all vanish (on an exception), savepoint-style."""
        with self.lock:
            mark = len(self._undo)
            self._depth += 1
            try:
                yield
            except BaseException:
                while len(self._undo) > mark:
                    self._undo.pop()()
                raise
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._undo.clear()

    def _remember(self, undo: Callable[[], None]) -> None:
        if self._depth:
            self._undo.append(undo)

    def put(self, org: str, entity_set: str, row: Row) -> Row:
        """Insert or replace a row (the caller has already set its versionnumber)."""
        with self.lock:
            table = self.table(org, entity_set)
            row_id = str(row.values[table.entity.key]).lower()
            previous = table.rows.get(row_id)
            table.rows[row_id] = row

            def undo() -> None:
                if previous is None:
                    table.rows.pop(row_id, None)
                else:
                    table.rows[row_id] = previous

            self._remember(undo)
            return row

    def remove(self, org: str, entity_set: str, row_id: str) -> Row | None:
        with self.lock:
            table = self.table(org, entity_set)
            row_id = row_id.lower()
            previous = table.rows.pop(row_id, None)
            if previous is None:
                return None
            table.deletes.append((self.next_version(), row_id))
            mark = len(table.deletes) - 1

            def undo() -> None:
                table.rows[row_id] = previous
                del table.deletes[mark:]

            self._remember(undo)
            return previous
