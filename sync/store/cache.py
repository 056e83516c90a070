"""Values kept across processes in the settings table, under keys of their own.

For what is costly to ask again and safe to reuse for a while (an organization's table
definitions: sync/crm/metadata.py). The keys never clash with the profile's (they carry a
prefix such as `crm-metadata:`), and no new table is needed.
"""

from __future__ import annotations

from typing import Any

from sync.store.db import Database
from sync.store.models import Setting


class SettingsCache:
    """The `MetadataStore` of sync/crm/metadata.py over one local database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def load(self, key: str) -> Any:
        with self.database.session() as session:
            row = session.get(Setting, key)
            return row.value if row is not None else None

    def save(self, key: str, value: Any) -> None:
        with self.database.session() as session:
            row = session.get(Setting, key)
            if row is None:
                session.add(Setting(key=key, value=value))
            else:
                row.value = value

    def drop(self, key: str) -> None:
        with self.database.session() as session:
            row = session.get(Setting, key)
            if row is not None:
                session.delete(row)
