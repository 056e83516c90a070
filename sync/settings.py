"""The profile's settings: typed accessors over the `settings` table with defaults."""

from __future__ import annotations

from typing import Any

from sync.store.db import Database
from sync.store.models import Setting

DEFAULTS: dict[str, Any] = {
    "interval_seconds": 60,
    "offline_interval_seconds": 300,
    "mode": None,  # "sandbox" | "tenant" once chosen
    "kinds": ["contacts", "appointments", "tasks"],
}


def get_setting(database: Database, key: str) -> Any:
    with database.session() as session:
        row = session.get(Setting, key)
        return row.value if row is not None else DEFAULTS.get(key)


def set_setting(database: Database, key: str, value: Any) -> None:
    with database.session() as session:
        row = session.get(Setting, key)
        if row is None:
            session.add(Setting(key=key, value=value))
        else:
            row.value = value


def all_settings(database: Database) -> dict[str, Any]:
    with database.session() as session:
        values = dict(DEFAULTS)
        values.update({row.key: row.value for row in session.query(Setting)})
        return values
