"""Mailbox changes within seconds for a Graph mailbox: polling the synced folders' delta links.

Graph's change notifications need a public HTTPS endpoint (or Event Hubs) that a desktop app
does not have, so the watcher polls instead: one GET of each synced folder's delta link
(delta-query-overview.md): a quiet folder costs one request a poll. Every 2 s after a change,
the pause doubling to 4 s while nothing changes, so a change made after a quiet spell is heard
in 2 s on average (bench/bench_latency.py measures it); three folders idle cost 2,700 requests
an hour, 4.5 % of what Graph allows a mailbox. Graph allows
10,000 requests per 10 minutes per app per mailbox (throttling-limits.md, Outlook service
limits); the pause is also kept long enough that polling takes at most `BUDGET_SHARE` of that,
leaving the rest to the sync itself.

Each folder's link starts from the sync's own delta link when there is one (so what changed
since the last sync is heard at once), else from a walk of the whole delta. Only *which kinds
changed* comes out: the sync reads the changes by its own links. A refused link (410 Gone) is
walked anew and reported as a change, so the sync has a look.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

from sync.graph.calendar import delta_link
from sync.graph.side import GraphSide
from sync.sides import TokenExpired
from sync.watcher import ChangeBatch

FAST = 2.0
"""Seconds between polls right after a change."""
IDLE = 4.0
"""The longest pause, reached while nothing changes."""
LIMIT_REQUESTS = 10_000
LIMIT_WINDOW = 600.0
"""Graph's Outlook limit: 10,000 requests per 10 minutes per app per mailbox."""
BUDGET_SHARE = 0.2
"""The most of that limit the watcher may use (the sync needs the rest)."""
_PAGE = {"Prefer": "odata.maxpagesize=100"}

# the sync kind of each folder the watcher may be given (sync.connect.watched_folders)
_FOLDER_KIND = {"contacts": "contacts", "tasks": "tasks", "calendar": "appointments"}  # gcal


def min_interval(folders: int) -> float:
    """The shortest pause that keeps polling `folders` within the watcher's share of the limit."""
    return folders * LIMIT_WINDOW / (LIMIT_REQUESTS * BUDGET_SHARE)


class GraphChangeStream:
    """The kinds whose folders changed, by polling delta links (`sync.watcher.ChangeStream`).

    `folders` maps a folder ("contacts", "tasks", or a mail folder: a well-known name such as
    "inbox" or a folder id) to the sync kinds it holds. `seed(kind)` gives the sync's stored
    delta link of a kind ("contacts", "tasks", "messages:<folder>"), or None.
    """

    def __init__(
        self,
        side: GraphSide,
        folders: Mapping[str, frozenset[str]],
        seed: Callable[[str], str | None] = lambda _kind: None,
        fast: float = FAST,
        idle: float = IDLE,
    ) -> None:
        self.side = side
        self.folder_kinds = dict(folders)
        self.seed = seed
        floor = min_interval(len(self.folder_kinds))
        self.fast = max(fast, floor)
        self.idle = max(idle, self.fast)
        self.pause = self.fast
        """The pause before the next poll: `fast` after a change, doubling up to `idle`."""
        self._links: dict[str, str] = {}
        self._stop = threading.Event()

    @property
    def description(self) -> str:
        return "Microsoft Graph delta polling"

    @staticmethod
    def kind_of(folder: str) -> str:
        return _FOLDER_KIND.get(folder, f"messages:{folder}")

    def _delta_path(self, folder: str) -> str:
        kind = self.kind_of(folder)
        if kind == "tasks":
            return f"me/todo/lists/{self.side.task_list}/tasks/delta"
        if kind == "contacts":
            return "me/contacts/delta"
        if kind == "appointments":  # gcal: the calendar view's delta (sync/graph/calendar.py)
            return self.side.calendar.delta_path()
        return f"me/mailFolders/{quote(folder, safe='')}/messages/delta"

    def _walk(self, link: str) -> tuple[str, bool]:
        """Follow `link` to its end: (the new delta link, whether any entry came)."""
        client = self.side.client
        changed = False
        next_link: str | None = link
        delta = link
        while next_link:
            page = client.get(next_link, _PAGE)
            changed = changed or bool(page.get("value"))
            delta = page.get("@odata.deltaLink") or delta
            next_link = page.get("@odata.nextLink")
        return delta, changed

    def open(self) -> None:
        """A delta link for each folder (the sync's, else a full walk); raises a SideError."""
        self._stop.clear()
        for folder in self.folder_kinds:
            if folder in self._links:
                continue
            stored = self.seed(self.kind_of(folder))
            if self.kind_of(folder) == "appointments":  # gcal: the link inside the sync's token
                stored = delta_link(stored)
            if stored:
                self._links[folder] = stored  # its changes are reported at the first poll
            else:
                self._links[folder] = self._walk(self._delta_path(folder))[0]

    def poll(self) -> ChangeBatch | None:
        """One look at every folder: the kinds that changed, or None."""
        kinds: set[str] = set()
        for folder, link in list(self._links.items()):
            try:
                new_link, changed = self._walk(link)
            except TokenExpired:  # 410: start again; something may have changed meanwhile
                new_link, changed = self._walk(self._delta_path(folder))[0], True
            self._links[folder] = new_link
            if changed:
                kinds |= self.folder_kinds[folder]
        if not kinds:
            self.pause = min(self.idle, self.pause * 2)
            return None
        self.pause = self.fast
        return ChangeBatch(frozenset(kinds), datetime.now(UTC))

    def changes(self) -> Iterator[ChangeBatch]:
        """Batches as polls find them, until `interrupt`; raises a SideError on failure."""
        if not self._links:
            raise RuntimeError("open() first")
        while not self._stop.is_set():
            batch = self.poll()
            if batch is not None:
                yield batch
            if self._stop.wait(self.pause):
                return

    def interrupt(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Nothing to unsubscribe; the HTTP client is closed."""
        self._links.clear()
        self.side.client.close()
