"""Opening the local database: where it lives, SQLite's durability settings, migrations at start.

SQLite runs in WAL mode with `synchronous=FULL`: a link or token written is on disk before the
next remote write goes out, so an interruption at worst re-sends (DESIGN.md §5, Durability).
The URL is configurable, so PostgreSQL works the same (the pragmas apply to SQLite only).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import platformdirs
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

APP_NAME = "mailbox-sync"
DB_FILE = "mailbox-sync.db"
MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_MAGIC = b"SQLite format 3\x00"


class DataDirError(Exception):
    """The data directory or its database cannot be used; the text says which, why and what to
    do, on one line (the command line prints it and exits 3, never a traceback)."""


def default_data_dir() -> Path:
    """The platform's per-user data folder (e.g. ~/.local/share/mailbox-sync on Linux)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DB_FILE}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for an in-memory or a server database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def _where(url: str) -> str:
    """The database as the user knows it: its file, or its URL without the password."""
    path = sqlite_path(url)
    return str(path) if path is not None else make_url(url).render_as_string(hide_password=True)


def damaged(where: object, detail: object) -> DataDirError:
    return DataDirError(
        f"The database at {where} is damaged or not a Mailbox Sync database: {detail}; move it "
        "aside to start over, or restore a backup."
    )


def database_problem(url: str, error: BaseException) -> DataDirError | None:
    """What a SQLite error found while working says about the database (None: nothing, the
    error is a bug or a remote's): damaged, not writable, or unusable (disk full, I/O)."""
    orig = getattr(error, "orig", error)
    name = str(getattr(orig, "sqlite_errorname", ""))
    where = _where(url)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return damaged(where, orig)
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM")):
        return DataDirError(
            f"The database at {where} cannot be written ({orig}): make it and its directory "
            "writable for this user, or choose another data directory with --data-dir."
        )
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL")):
        return DataDirError(f"The database at {where} cannot be used: {orig}.")
    return None


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
    """The local database of one data directory: an engine and a session factory.

    `read_only_uri` (a SQLite `file:` URI) opens it read-only instead: `status` on a data
    directory this user cannot write, where WAL mode and migrations are not possible."""

    def __init__(self, url: str, read_only_uri: str | None = None) -> None:
        self.url = url
        self.read_only = read_only_uri is not None
        if read_only_uri is None:
            self.engine = make_engine(url)
        else:
            self.engine = create_engine(
                "sqlite://",
                creator=lambda: sqlite3.connect(
                    read_only_uri, uri=True, check_same_thread=False, timeout=10
                ),
            )
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


# --- opening: checks before anything is written ------------------------------------------------


@cache
def known_revisions() -> tuple[str, ...]:
    """This version's schema revisions, oldest first (the last one is head)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    return tuple(rev.revision for rev in reversed(list(script.walk_revisions())))


def _writable(path: Path) -> bool:
    """Whether this user may write `path` (a directory: create files in it)."""
    mode = os.W_OK | os.X_OK if path.is_dir() else os.W_OK
    return os.access(path, mode)


def not_writable(data_dir: Path) -> DataDirError:
    return DataDirError(
        f"The data directory {data_dir} is not writable: Mailbox Sync keeps its database, keys "
        "and locks there. Make it writable for this user, or choose another with --data-dir."
    )


def ensure_data_dir(data_dir: Path, writable: bool = True) -> bool:
    """Create the data directory (mode 0700) and say whether this user can write it; raises
    DataDirError when it cannot be created, or is read-only and `writable` is required."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataDirError(
            f"The data directory {data_dir} cannot be created ({error.strerror}); choose "
            "another with --data-dir."
        ) from None
    if not _writable(data_dir):
        if writable:
            raise not_writable(data_dir)
        return False
    try:
        os.chmod(data_dir, 0o700)  # it holds the database, the secret key and the tokens
    except OSError as error:  # another user's directory, writable to us through its group
        log.warning("Could not make %s private (mode 0700): %s", data_dir, error.strerror)
    return True


def _read_only_uri(path: Path, immutable: bool = False) -> str:
    return f"file:{quote(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")


def inspect_file(path: Path) -> tuple[str | None, str]:
    """Check the SQLite file at `path` without writing to it; returns its schema revision (None:
    a new, empty database) and a read-only URI that opens it. Raises DataDirError when it is
    not a SQLite database, is truncated, holds another program's tables, or a newer schema.

    Opening it for writing first would be too late: WAL mode rewrites the header, a migration
    would add our tables to someone else's database, and a checkpoint writes the file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError as error:
        raise DataDirError(f"The database at {path} cannot be read ({error.strerror}).") from None
    if size == 0:  # SQLite's new database: nothing to lose
        return None, _read_only_uri(path)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise damaged(path, "the file is not an SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counted = pages > 0 and header[24:28] == header[92:96]  # SQLite's rule for a valid count
    wal = path.with_name(path.name + "-wal")
    pending = wal.exists() and wal.stat().st_size > 0  # a checkpoint cut short: SQLite recovers
    if counted and size < pages * page_size and not pending:
        raise damaged(path, f"the file is truncated ({size} of {pages * page_size} bytes)")
    uri = _read_only_uri(path)
    try:
        tables, versions = _schema(uri)
    except sqlite3.Error as error:
        if not str(getattr(error, "sqlite_errorname", "")).startswith("SQLITE_READONLY"):
            raise _unusable(path, error) from None
        # a WAL database in a directory we cannot write, without its -shm file: read it as
        # it is on disk (what the last checkpoint left; nobody can write it here anyway)
        uri = _read_only_uri(path, immutable=True)
        try:
            tables, versions = _schema(uri)
        except sqlite3.Error as again:
            raise _unusable(path, again) from None
    if tables and "alembic_version" not in tables:
        names = ", ".join(sorted(tables)[:5])
        raise damaged(path, f"it holds other tables ({names}) and no Mailbox Sync schema")
    newer = [v for v in versions if v not in known_revisions()]
    if newer:
        raise DataDirError(
            f"The database at {path} was made by a newer version of Mailbox Sync (schema "
            f"{newer[0]}): update Mailbox Sync, or choose another data directory with --data-dir."
        )
    return (versions[0] if versions else None), uri


def _schema(uri: str) -> tuple[set[str], list[str]]:
    """The tables and the Alembic revision(s) of the database at `uri` (read-only)."""
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as connection:
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        versions = (
            [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
            if "alembic_version" in tables
            else []
        )
    return tables, versions


def _unusable(path: Path, error: sqlite3.Error) -> DataDirError:
    problem = database_problem(f"sqlite:///{path}", error)
    return problem or DataDirError(f"The database at {path} cannot be opened: {error}.")


def _make_private(path: Path) -> None:
    """The database and its -wal/-shm files readable by this user only (mode 0600): they hold
    the mailbox's and the CRM's data. SQLite creates -wal/-shm with the database's mode."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # no O_EXCL: two may start at once
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if file.exists() and file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
        except OSError as error:  # another user's file, writable to us: it still works
            log.warning("Could not make %s private (mode 0600): %s", file, error.strerror)


def open_database(data_dir: Path, url: str | None = None, read_only_ok: bool = False) -> Database:
    """Open (and migrate) the database of `data_dir`; `url` overrides the SQLite file.

    Raises DataDirError, before anything is written, when the directory or the database cannot
    be used. `read_only_ok` (for `status`): a database this user cannot write is opened
    read-only, as it is, instead of being refused."""
    url = url or sqlite_url(data_dir)
    dir_writable = ensure_data_dir(data_dir, writable=not read_only_ok)
    path = sqlite_path(url)
    revision: str | None = None
    read_only_uri = None
    if path is not None:
        if path.exists():
            revision, read_only_uri = inspect_file(path)
        problem = _write_problem(data_dir, dir_writable, path)
        if problem is not None:
            if not read_only_ok:
                raise problem
            return _open_read_only(url, path, revision, read_only_uri)
        _make_private(path)
    database = Database(url)
    try:
        database.upgrade()
    except DBAPIError as error:
        database.dispose()
        problem = database_problem(url, error)
        if problem is None:
            raise
        raise problem from error
    return database


def _write_problem(data_dir: Path, dir_writable: bool, path: Path) -> DataDirError | None:
    """Why the database at `path` cannot be written (None: it can)."""
    if not dir_writable:
        return not_writable(data_dir)
    if not path.parent.is_dir():
        return DataDirError(f"The directory of the database {path} does not exist.")
    if not _writable(path.parent):
        return not_writable(path.parent)
    if path.exists() and not _writable(path):
        return DataDirError(
            f"The database at {path} is not writable: make it writable for this user, or "
            "choose another data directory with --data-dir."
        )
    return None


def _open_read_only(
    url: str, path: Path, revision: str | None, read_only_uri: str | None
) -> Database:
    if read_only_uri is None or revision is None:
        raise DataDirError(
            f"There is no Mailbox Sync database at {path} yet, and its directory is not "
            "writable: run Mailbox Sync once where it can write, or choose another --data-dir."
        )
    if revision != known_revisions()[-1]:
        raise DataDirError(
            f"The database at {path} needs an upgrade to this version of Mailbox Sync, which "
            "needs write access: run a writing command (serve, sync) once where it can write."
        )
    return Database(url, read_only_uri)
