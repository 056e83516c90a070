"""CRM changes heard within seconds: change tracking polled with the sync's own tokens.

Dataverse has no push a desktop app can receive, so the watcher (sync/watcher.py) polls: for
each synced kind, the delta link (or modifiedon watermark) the last sync saved is read for one
row (`Prefer: odata.maxpagesize=1`): an empty answer costs one small request; any row means
the kind changed and a sync is asked for. Nothing is saved here — the sync reads the changes
itself and saves the token — and a token already reported is not reported again, so a change
asks for one run, not one per poll until that run ends. The pace quickens to `fastest` after a
change and slows by half again each quiet poll up to `slowest`: 6 to 20 requests a minute per
kind, far inside Dataverse's 6,000 requests per 5 minutes per user (service protection API
limits), and a CRM edit reaches the mailbox in seconds, not in the 5 to 15 minutes of a
server-side sync cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from sync.crm.side import DataverseSide
from sync.sides import TokenExpired
from sync.watcher import ChangeBatch

FASTEST, SLOWEST = 3.0, 10.0
SESSION_SECONDS = 600.0
"""`changes` returns after this long, as a server closes a stream: the watcher reads again."""


class CrmChangePoll:
    """A `ChangeStream` over the CRM: `tokens(kind)` gives the token the sync saved."""

    def __init__(
        self,
        side: DataverseSide,
        kinds: Sequence[str],
        tokens: Callable[[str], str | None],
        fastest: float = FASTEST,
        slowest: float = SLOWEST,
        session_seconds: float = SESSION_SECONDS,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self.side = side
        self.kinds = tuple(kinds)
        self.tokens = tokens
        self.fastest, self.slowest = fastest, min(max(slowest, fastest), 300.0)
        self.session_seconds = session_seconds
        self._close = close
        self._pause = fastest
        self._reported: dict[str, str] = {}
        self._interrupted = threading.Event()

    @property
    def description(self) -> str:
        return "CRM change tracking, polled"

    def open(self) -> None:
        self._interrupted.clear()

    def changes(self) -> Iterator[ChangeBatch]:
        until = datetime.now(UTC).timestamp() + self.session_seconds
        while not self._interrupted.is_set() and datetime.now(UTC).timestamp() < until:
            changed = frozenset(k for k in self.kinds if self._changed(k))
            if changed:
                self._pause = self.fastest
                yield ChangeBatch(changed, datetime.now(UTC))
            else:
                self._pause = min(self._pause * 1.5, self.slowest)
            self._interrupted.wait(self._pause)

    def _changed(self, kind: str) -> bool:
        token = self.tokens(kind)
        if token is None or self._reported.get(kind) == token:
            return False  # never synced (the first run reads all), or already asked for
        try:
            page = next(iter(self.side.read_changes(kind, token)), None)
        except TokenExpired:
            changed = True  # the sync will read everything again
        else:
            changed = page is not None and bool(page.changes)
        if changed:
            self._reported[kind] = token
        return changed

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        self._close()
