"""The local store: migrations at start, an older database upgrading itself, SQLite settings."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from sync.settings import get_setting, set_setting
from sync.store.db import Database, alembic_config, open_database, upgrade


def _revisions(database: Database) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config(database.engine))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_open_database_creates_schema_in_wal_mode(data_dir: Path) -> None:
    database = open_database(data_dir)
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        tables = set(sa.inspect(connection).get_table_names())
    assert {"settings", "organizations", "sync_tokens", "links", "runs", "alerts"} <= tables
    assert (data_dir / "mailbox-sync.db").exists()


def test_database_made_by_first_migration_upgrades_to_head_with_data_kept(data_dir: Path) -> None:
    database = Database(f"sqlite:///{data_dir / 'old.db'}")
    revisions = _revisions(database)
    assert len(revisions) >= 2, "the migration tree needs an upgrade path to test"
    upgrade(database.engine, revisions[0])
    with database.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO settings (key, value, updated_at) VALUES ('mode', '\"sandbox\"', '2026-01-01')"
        )
        connection.exec_driver_sql(
            'INSERT INTO runs (job, "trigger", started_at, outcome, counts, progress_done, '
            "progress_total) VALUES ('messaging', 'cli', '2026-01-01', 'ok', '{}', 0, 0)"
        )
    database.dispose()

    reopened = open_database(data_dir, f"sqlite:///{data_dir / 'old.db'}")
    with reopened.engine.connect() as connection:
        head = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        assert connection.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 1
    assert head == revisions[-1]
    assert get_setting(reopened, "mode") == "sandbox"


def test_settings_round_trip_and_defaults(data_dir: Path) -> None:
    database = open_database(data_dir)
    assert get_setting(database, "interval_seconds") == 60
    set_setting(database, "interval_seconds", 120)
    set_setting(database, "kinds", ["contacts"])
    assert get_setting(database, "interval_seconds") == 120
    assert get_setting(database, "kinds") == ["contacts"]
