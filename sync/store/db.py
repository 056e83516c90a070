"""Opening the local database: where it lives, SQLite's durability settings, migrations at start.

SQLite runs in WAL mode with `synchronous=FULL`: a link or token written is on disk before the
next remote write goes out, so an interruption at worst re-sends (DESIGN.md §5, Durability).
The URL is configurable, so PostgreSQL works the same (the pragmas apply to SQLite only).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import platformdirs
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

APP_NAME = "mailbox-sync"
DB_FILE = "mailbox-sync.db"
MIGRATIONS = Path(__file__).with_name("migrations")


def default_data_dir() -> Path:
    """The platform's per-user data folder (e.g. ~/.local/share/mailbox-sync on Linux)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DB_FILE}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, synchronous=FULL and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (an older database upgrades itself at start)."""
    command.upgrade(alembic_config(engine), revision)


class Database:
    """The local database of one data directory: an engine and a session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success, rolled back on error."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def upgrade(self) -> None:
        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(data_dir: Path, url: str | None = None) -> Database:
    """Open (and migrate) the database of `data_dir`; `url` overrides the SQLite file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    database = Database(url or sqlite_url(data_dir))
    database.upgrade()
    return database
