"""One writer at a time per database: an inter-process lock for every job that writes.

Two processes syncing one data directory (the server's scheduler and a `sync --once` from
cron, or two cron runs started together) would each create the mailbox copies of the same new
CRM records: a `threading.Lock` cannot see the other process. `flock` on a file beside the
database can, and the kernel drops it when its holder dies, so a SIGKILL leaves no stale lock.

The lock is re-entrant for the thread that holds it (the command line holds it around a run
that takes it again), never for another thread: two threads of one process exclude each other
as two processes do.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sync.messages import N_, Msg
from sync.store.db import sqlite_path

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its holder wrote it into the lock file."""

    pid: int
    what: str
    since: str

    def describe(self) -> str:
        return f"{self.what} (process {self.pid}, since {self.since} UTC)"


class Busy(Exception):
    """Another process (or thread) is running a job that writes the same data."""

    def __init__(self, name: str, holder: Holder | None) -> None:
        who = holder.describe() if holder else "another process"
        super().__init__(
            f"Another Mailbox Sync job is writing this data: {who}. "
            "It was left to finish; try again when it is done."
        )
        self.name = name
        self.holder = holder

    @property
    def msg(self) -> Msg:
        """The same, as a message to translate where shown (the holder's words as they are)."""
        if self.holder is None:
            return N_(
                "Another Mailbox Sync job is writing this data. It was left to finish; try "
                "again when it is done."
            )
        return N_(
            "Another Mailbox Sync job is writing this data: %(what)s (process %(pid)s, since "
            "%(since)s UTC). It was left to finish; try again when it is done.",
            what=self.holder.what,
            pid=self.holder.pid,
            since=str(self.holder.since),
        )


def lock_directory(url: str) -> Path | None:
    """Where the locks of the database at `url` live: beside a SQLite file. None for an
    in-memory database (one process only) and for a server database, whose processes would
    need the server's own locks (not offered yet: the README says so)."""
    path = sqlite_path(url)
    return path.resolve().parent if path is not None else None


@dataclass
class _Held:
    fd: int
    owner: int
    depth: int = 1


_held: dict[Path, _Held] = {}
_registry = threading.Lock()


def _read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text() or "null")
        return Holder(int(data["pid"]), str(data["what"]), str(data["since"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def holder_of(directory: Path, name: str) -> Holder | None:
    """Who holds the lock `name` now (None when nobody does)."""
    path = directory / f"{name}.lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(path) or Holder(0, "another process", "?")
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def hold(directory: Path | None, name: str, wait: float = 0, what: str = "") -> Iterator[None]:
    """Hold the lock `name` of `directory` for the block; wait up to `wait` seconds for it,
    then raise `Busy` naming the holder. `directory` None: nothing to lock (one process)."""
    if directory is None:
        yield
        return
    path = directory / f"{name}.lock"
    me = threading.get_ident()
    with _registry:
        held = _held.get(path)
        if held is not None and held.owner == me:
            held.depth += 1
            mine = held
        else:
            mine = None
    if mine is None:
        mine = _acquire(path, wait, name, what, me)
    try:
        yield
    finally:
        with _registry:
            mine.depth -= 1
            if mine.depth == 0:
                del _held[path]
                os.ftruncate(mine.fd, 0)
                fcntl.flock(mine.fd, fcntl.LOCK_UN)
                os.close(mine.fd)


def _acquire(path: Path, wait: float, name: str, what: str, me: int) -> _Held:
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        with _registry:
            # another thread of this process holding it: flock would let a second fd of the
            # same process wait too, but the registry must not hand it over
            taken = path in _held
            fd = None if taken else _try_lock(path)
            if fd is not None:
                info = {
                    "pid": os.getpid(),
                    "what": what or name,
                    "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                }
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
                held = _Held(fd, me)
                _held[path] = held
                return held
        if time.monotonic() >= deadline:
            raise Busy(name, _read_holder(path))
        time.sleep(POLL_SECONDS)
