"""The CRM side's second change reader: rows by `modifiedon`, deletions by an id-only sweep.

Change tracking needs organization-level read on a table and tracking enabled on it
(DESIGN.md §3); without either, changes are read as
`$filter=modifiedon ge <watermark - overlap>&$orderby=modifiedon asc,<key> asc`, paged. No
`Prefer: odata.track-changes`, so any query option is allowed. The sync filters are *not* put
into that query: a record that stops matching a filter must still be seen changed, so the engine
un-syncs it quietly; hidden by the query it would look deleted at the next sweep.

Such a query never reports deletions, so every `sweep_every` reads the ids alone are listed
(`$select=<key>`, the cheapest listing there is) and compared with the ids known so far: those
gone are reported deleted.

The token encodes the reader (`wm:`; change tracking's are `ct:`), the watermark, the rows
already reported at the watermark's edge (so a quiet run reports nothing), the ids known and
the reads since the last sweep. A token of the other reader is refused (TokenExpired), so
switching readers always starts with a full read.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sync.sides import Deleted, Page, TokenExpired, Upsert

PREFIX = "wm:"
OVERLAP_SECONDS = 60.0
"""Rows modified this long before the watermark are asked for again: `modifiedon` has second
precision and a write may commit a little after the moment it carries."""
DEFAULT_SWEEP_EVERY = 10
SWEEP_SETTING = "watermark_sweep_every"
"""The profile setting that overrides DEFAULT_SWEEP_EVERY (reads between two deletion sweeps)."""
MAX_SWEEP_EVERY = 10_000


def sweep_every_setting(value: Any) -> int:
    """The sweep interval a stored setting asks for: a whole number of reads from 1 to
    MAX_SWEEP_EVERY; anything else (unset, a typo) gives DEFAULT_SWEEP_EVERY, so a bad value
    can neither stop deletions from being found nor make every run list every id."""
    if isinstance(value, bool):
        return DEFAULT_SWEEP_EVERY
    try:
        number = int(str(value).strip()) if value is not None else DEFAULT_SWEEP_EVERY
    except ValueError:
        return DEFAULT_SWEEP_EVERY
    return number if 1 <= number <= MAX_SWEEP_EVERY else DEFAULT_SWEEP_EVERY


Clean = Callable[[Mapping[str, Any]], dict[str, Any]]
"""The side's row cleaner (OData control annotations off)."""


class Client(Protocol):
    """What the reader needs of sync.crm.client.DataverseClient."""

    def iter_pages(
        self,
        entity_set: str,
        select: Any = None,
        filter: str | None = None,
        orderby: str | None = None,
        top: int | None = None,
        expand: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[list[dict[str, Any]]]: ...


def _pack_ids(ids: set[str]) -> str:
    """GUIDs as 16 bytes each, compressed: a token stays small for tens of thousands of rows."""
    raw = b"".join(uuid.UUID(i).bytes for i in sorted(ids))
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode("ascii")


def _unpack_ids(text: str) -> set[str]:
    raw = zlib.decompress(base64.urlsafe_b64decode(text.encode("ascii")))
    return {str(uuid.UUID(bytes=raw[i : i + 16])) for i in range(0, len(raw), 16)}


def _moment(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _literal(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WatermarkState:
    """What a watermark token holds."""

    since: datetime | None
    """The latest `modifiedon` read (None: the table was empty)."""
    overlap: float = OVERLAP_SECONDS
    """How far before `since` the next read starts (grows with a read's own duration)."""
    edge: dict[str, str] = field(default_factory=dict)
    """id → ETag of rows read within the overlap: unchanged, they are not reported again."""
    ids: set[str] = field(default_factory=set)
    """Every id the reader reported since the last full read or sweep (and the ones before)."""
    reads: int = 0
    """Incremental reads since the last full read or sweep."""

    def encode(self) -> str:
        body = {
            "s": _literal(self.since) if self.since else None,
            "o": round(self.overlap, 3),
            "e": self.edge,
            "i": _pack_ids(self.ids),
            "n": self.reads,
        }
        packed = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 9)
        return PREFIX + base64.urlsafe_b64encode(packed).decode("ascii")

    @classmethod
    def decode(cls, token: str) -> WatermarkState:
        """Raises TokenExpired for anything that is not a watermark token of ours."""
        if not token.startswith(PREFIX):
            raise TokenExpired("not a modifiedon-reader token", code="reader-changed")
        try:
            body = json.loads(zlib.decompress(base64.urlsafe_b64decode(token[len(PREFIX) :])))
            return cls(
                since=_moment(body["s"]),
                overlap=float(body["o"]),
                edge={str(k): str(v) for k, v in dict(body["e"]).items()},
                ids=_unpack_ids(str(body["i"])),
                reads=int(body["n"]),
            )
        except (ValueError, KeyError, TypeError, zlib.error) as error:
            raise TokenExpired(f"unreadable modifiedon token: {error}", code="bad-token") from None


@dataclass
class WatermarkReader:
    """Reads one entity set's changes by `modifiedon`; see the module docstring."""

    client: Client
    entity_set: str
    key: str
    select: tuple[str, ...] | None = None
    page_size: int | None = None
    sweep_every: int = DEFAULT_SWEEP_EVERY
    clock: Callable[[], float] = time.monotonic

    def _select(self) -> list[str] | None:
        if self.select is None:
            return None  # every column: modifiedon included
        return list(dict.fromkeys([*self.select, self.key, "modifiedon"]))

    def _upsert(self, row: Mapping[str, Any], clean: Clean) -> Upsert:
        etag = row.get("@odata.etag")
        return Upsert(str(row[self.key]).lower(), str(etag) if etag else None, clean(row))

    def full(self, clean: Clean) -> Iterator[Page]:
        """Every row (ids paged, stable while rows are added); the token comes with the last."""
        started = self.clock()
        rows_seen: dict[str, tuple[datetime | None, str]] = {}
        pages = self.client.iter_pages(
            self.entity_set, select=self._select(), page_size=self.page_size
        )
        pending: list[Upsert] | None = None
        for rows in pages:
            if pending is not None:
                yield Page(pending, token=None, last=False)
            pending = []
            for row in rows:
                upsert = self._upsert(row, clean)
                rows_seen[upsert.id] = (_moment(row.get("modifiedon")), upsert.version or "")
                pending.append(upsert)
        state = self._state(rows_seen, self.clock() - started, set(rows_seen), reads=0)
        yield Page(pending or [], token=state.encode(), last=True)

    def changes(self, state: WatermarkState, clean: Clean) -> Iterator[Page]:
        """Rows modified since the watermark (less the overlap), a page at a time as they come
        (so a large change set never sits in memory at once here), and, every `sweep_every`
        reads, the known ids no longer listed as Deleted; the token comes with the last."""
        started = self.clock()
        query: str | None = None
        if state.since is not None:
            start = state.since - timedelta(seconds=state.overlap)
            query = f"modifiedon ge {_literal(start)}"
        rows_seen: dict[str, tuple[datetime | None, str]] = {}
        pending: list[Upsert] | None = None
        for rows in self.client.iter_pages(
            self.entity_set,
            select=self._select(),
            filter=query,
            orderby=f"modifiedon asc,{self.key} asc",
            page_size=self.page_size,
        ):
            if pending:
                yield Page(pending, token=None, last=False)
            pending = []
            for row in rows:
                upsert = self._upsert(row, clean)
                rows_seen[upsert.id] = (_moment(row.get("modifiedon")), upsert.version or "")
                if state.edge.get(upsert.id) != (upsert.version or ""):
                    pending.append(upsert)
        changed = pending or []
        ids = state.ids | set(rows_seen)
        deleted: list[Deleted] = []
        reads = state.reads + 1
        if reads >= self.sweep_every:
            present = self.list_ids()
            deleted = [Deleted(i) for i in sorted(ids - present)]
            ids, reads = present, 0
        new = self._state(rows_seen, self.clock() - started, ids, reads, previous=state)
        yield Page([*changed, *deleted], token=new.encode(), last=True)

    def list_ids(self) -> set[str]:
        """The ids alone (`$select=<key>`): the cheap listing the deletion sweep compares."""
        found: set[str] = set()
        for rows in self.client.iter_pages(
            self.entity_set, select=[self.key], page_size=self.page_size
        ):
            found.update(str(row[self.key]).lower() for row in rows)
        return found

    def _state(
        self,
        rows_seen: Mapping[str, tuple[datetime | None, str]],
        elapsed: float,
        ids: set[str],
        reads: int,
        previous: WatermarkState | None = None,
    ) -> WatermarkState:
        moments = [m for m, _ in rows_seen.values() if m is not None]
        since = max(moments) if moments else (previous.since if previous else None)
        # A row written while this read ran carries a moment after the read's start, which is
        # at most `elapsed` before the latest moment read: the next read starts before both.
        # Whole minutes, so the overlap (and the edge) stays the same from one quiet run to
        # the next.
        overlap = OVERLAP_SECONDS + 60.0 * math.ceil(max(0.0, elapsed) / 60.0)
        edge: dict[str, str] = {}
        if since is not None:
            floor = since - timedelta(seconds=overlap)
            edge = {i: v for i, (m, v) in rows_seen.items() if m is not None and m >= floor}
        return WatermarkState(since=since, overlap=overlap, edge=edge, ids=ids, reads=reads)
