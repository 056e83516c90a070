"""Hand one SyncFolderItems read to a second reader of the same folder and sync state.

Two engine kinds read the calendar (single appointments and recurring series), each with its
own saved sync state. After a sync in which nothing was written the two states are the same, and
reading the folder twice in a row costs a second SyncFolderItems (plus GetItem) that answers the
same thing. `ReadReuse` keeps the pages of the last complete incremental read of each mailbox
kind for a short while and serves them once to the next read with the same kind and state.

Serving an earlier answer is safe because pages and sync state belong together: the changes
made after it come with the next read from the state it carries. What must not happen is a
reader getting a list that misses *our own* writes (a full read that lacks items we just made
would look like deletions), so every write through the side drops what is kept; nor a run
getting the previous run's answer (a quiet run right after another must see the user's edits),
so the side drops what is kept when a run begins (`EwsSide.begin_run`). Full reads
(no state) are never kept: their callers take the list as the folder's present content, and it
could miss what another client changed meanwhile; they are also the large ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sync.sides import Page

REUSE_SECONDS = 120.0
"""How long a read stays available: the gap between the two calendar kinds of one run."""
REUSE_MAX_CHANGES = 2_000
"""Reads with more changes are not kept (memory); the second reader then reads again."""


@dataclass(frozen=True)
class _Kept:
    token: str | None
    pages: tuple[Page, ...]
    at: float


class ReadReuse:
    """The last complete read of each mailbox kind, served at most once, dropped on writes."""

    def __init__(
        self,
        seconds: float = REUSE_SECONDS,
        max_changes: int = REUSE_MAX_CHANGES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.max_changes = max_changes
        self._clock = clock
        self._kept: dict[str, _Kept] = {}
        self._lock = threading.Lock()

    def keep(self, kind: str, token: str | None, pages: list[Page]) -> None:
        """Remember a complete read of `kind` from `token` (unless off, full or too large)."""
        too_large = sum(len(p.changes) for p in pages) > self.max_changes
        if self.seconds <= 0 or token is None or too_large:
            with self._lock:
                self._kept.pop(kind, None)
            return
        with self._lock:
            self._kept[kind] = _Kept(token, tuple(pages), self._clock())

    def take(self, kind: str, token: str | None) -> tuple[Page, ...] | None:
        """The kept read of `kind` from `token` if still fresh; it is given out only once."""
        if token is None:
            return None
        with self._lock:
            kept = self._kept.get(kind)
            if kept is None or kept.token != token:
                return None
            del self._kept[kind]
        if self._clock() - kept.at > self.seconds:
            return None
        return kept.pages

    def forget(self) -> None:
        """Drop every kept read (called on each write through the side)."""
        with self._lock:
            self._kept.clear()
