"""Go online: replay the offline queue in order, merging with what changed on the server.

Each queue item is journalled: its status becomes "sending" (committed) before the call, and
"done" / "conflict" / "failed" together with the row's new state after it, in one transaction.
A crash between the two leaves "sending", and the next replay makes the call again in a way
that cannot repeat its effect: a create uses the GUID made offline (found by a read, or refused
as a duplicate, instead of made twice); an update meets its own earlier write as a 412 and the
merge finds nothing left to write; a delete meets a 404. So nothing is duplicated or dropped.

Conflicts (DESIGN.md §1.4): an update whose `If-Match` meets a newer row (412) is merged field
by field against the base (`sync.offline.merge`); a field changed on both sides is recorded as a
conflict (kind "offline:<entity set>"; `crm_value` the server's, `mailbox_value` mine; winner
"crm" or "mailbox" = mine) decided by `offline_conflict_policy`. An edit of a row the server
deleted keeps the local copy and records a conflict; a delete of a row the server changed is not
made (conflict), and the server's row comes back locally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sync.crm.client import DataverseClient
from sync.messages import N_
from sync.offline.download import Progress, row_fields
from sync.offline.merge import three_way
from sync.offline.store import PENDING, title_of
from sync.setup.odata import OFFLINE_PREFIX
from sync.sides import Conflict, Duplicate, Invalid, NotFound
from sync.store.db import Database
from sync.store.models import ConflictRecord, OfflineChange, OfflineRow, OfflineTable

log = logging.getLogger(__name__)

Fault = Callable[[str, OfflineChange], None]
"""Test hook: called at "before-call" and "after-call" of each item (may raise, as a crash)."""
REASON_KEPT_CRM = N_(
    "Both sides changed this field while you were offline. Your setting keeps the CRM value."
)
REASON_KEPT_MINE = N_(
    "Both sides changed this field while you were offline. Your setting keeps your offline value."
)
REASON_DELETED = N_(
    "The record was deleted in the CRM while you edited it offline. Your offline copy is kept."
)
REASON_CHANGED = N_(
    "The record changed in the CRM while you deleted it offline, so it was not deleted."
)
"""Why a conflict was decided, stored as the message id (the Conflicts page translates it)."""
MAX_MERGES = 3
"""412s met in a row while writing a merged patch (someone keeps writing) before giving up."""


@dataclass
class ReplayResult:
    done: int = 0
    conflicts: int = 0
    failed: int = 0
    merged: int = 0
    """Changes that met a newer server row (412) and were merged with it field by field."""
    messages: list[str] = field(default_factory=list)


@dataclass
class _Outcome:
    status: str
    server: dict[str, Any] | None = None
    """The server's row after the call (None: gone)."""
    etag: str | None = None
    conflicts: list[tuple[str, Any, Any, str, str]] = field(default_factory=list)
    """(field, server value, my value, winner, reason)"""
    message: str | None = None
    keep_local: bool = False
    """The local row stays as it is (an edit of a row the server deleted)."""
    merged: bool = False
    """The row had changed on the server too: the write was merged against it."""


def _bind_set(logical_name: str) -> str:
    """A table's entity set from its logical name (Dataverse's plural rule for the usual ones)."""
    if logical_name.endswith("y") and not logical_name.endswith(("ay", "ey", "oy", "uy")):
        return logical_name[:-1] + "ies"
    if logical_name.endswith(("s", "x", "ch", "sh")):
        return logical_name + "es"
    return logical_name + "s"


def write_body(table: OfflineTable, changes: Mapping[str, Any], create: bool) -> dict[str, Any]:
    """The changed fields as the Web API takes them: only columns the service lets this write
    set (IsValidForCreate/Update), a single-target lookup as `name@odata.bind`."""
    columns = {c["name"]: c for c in table.columns or []}
    body: dict[str, Any] = {}
    for name, value in changes.items():
        column = columns.get(name)
        if column is None or not column.get("create" if create else "update", True):
            continue
        if column["type"] == "lookup":
            targets = column.get("targets") or []
            if value and len(targets) == 1:
                body[f"{column['attribute']}@odata.bind"] = f"/{_bind_set(targets[0])}({value})"
            continue
        body[name] = value
    return body


class Replayer:
    """Replays one organization's queue against its Dataverse."""

    def __init__(
        self,
        database: Database,
        org: str,
        client: DataverseClient,
        policy: str = "server",
        progress: Progress | None = None,
        fault: Fault | None = None,
    ) -> None:
        self.database = database
        self.org = org
        self.client = client
        self.policy = policy
        self.progress = progress
        self.fault = fault

    def replay(self) -> ReplayResult:
        """Replay every pending item in order. A failure of the service itself (unreachable,
        throttled, signed out) stops the replay and leaves the rest queued for the next one."""
        result = ReplayResult()
        with self.database.session() as session:
            query = select(OfflineChange.id).where(
                OfflineChange.org == self.org, OfflineChange.status.in_(PENDING)
            )
            ids = list(session.scalars(query.order_by(OfflineChange.id)))
        for index, item_id in enumerate(ids):
            if self.progress is not None:
                self.progress("replay", index, len(ids))
            with self.database.session() as session:
                item = session.get(OfflineChange, item_id)
                assert item is not None
                retry = item.status == "sending"
                item.status = "sending"  # the journal: committed before the call
                session.flush()
                session.expunge(item)
            if self.fault is not None:
                self.fault("before-call", item)
            outcome = self._call(item, retry)
            if self.fault is not None:
                self.fault("after-call", item)
            self._record(item, outcome, result)
        if self.progress is not None:
            self.progress("replay", len(ids), len(ids))
        return result

    # --- the call ----------------------------------------------------------------------------

    def _state(self, item: OfflineChange) -> tuple[OfflineTable, OfflineRow]:
        with self.database.session() as session:
            table = session.get(OfflineTable, (self.org, item.entity_set))
            row = _row(session, self.org, item.entity_set, item.row_id)
            if table is None or row is None:
                raise LookupError(f"offline data of {item.entity_set}({item.row_id}) is gone")
            session.expunge_all()
            return table, row

    def _read(self, entity_set: str, row_id: str) -> tuple[dict[str, Any], str | None] | None:
        try:
            row = self.client.get(entity_set, row_id)
        except NotFound:
            return None
        return row_fields(row), row.get("@odata.etag")

    def _call(self, item: OfflineChange, retry: bool) -> _Outcome:
        try:
            table, row = self._state(item)
        except LookupError as gone:
            return _Outcome("failed", message=str(gone), keep_local=True)
        try:
            if item.op == "create":
                return self._create(item, table, retry)
            if item.op == "update":
                return self._update(item, table, row)
            return self._delete(item, row)
        except Invalid as refused:  # this change is wrong for the service: the rest goes on
            return _Outcome("failed", message=refused.message, keep_local=True)

    def _create(self, item: OfflineChange, table: OfflineTable, retry: bool) -> _Outcome:
        found = self._read(item.entity_set, item.row_id) if retry else None
        if found is None:
            body = write_body(table, item.changes or {}, create=True)
            with suppress(Duplicate):  # made before a crash: the GUID is the idempotency key
                _, etag, row = self.client.create(
                    item.entity_set, body, id=item.row_id, key=table.key, return_representation=True
                )
                if row:  # the service's row in the create's answer: no read back
                    found = row_fields(row), row.get("@odata.etag") or etag
        if found is None:
            found = self._read(item.entity_set, item.row_id)
        if found is None:
            return _Outcome("failed", message="the created row cannot be read back")
        return _Outcome("done", server=found[0], etag=found[1])

    def _patch(
        self, entity_set: str, row_id: str, body: Mapping[str, Any], etag: str | None
    ) -> tuple[dict[str, Any], str | None]:
        headers = {"Prefer": "return=representation", "If-Match": etag or "*"}
        response = self.client.request(
            "PATCH", f"{entity_set}({row_id})", headers=headers, json_body=dict(body)
        )
        row = response.json() if response.content else None
        if row:
            return row_fields(row), row.get("@odata.etag") or response.headers.get("ETag")
        found = self._read(entity_set, row_id)
        if found is None:
            raise NotFound(f"{entity_set}({row_id}) disappeared")
        return found

    def _update(self, item: OfflineChange, table: OfflineTable, row: OfflineRow) -> _Outcome:
        changes = dict(item.changes or {})
        body = write_body(table, changes, create=False)
        etag = row.etag
        base = dict(row.base or {})
        met_newer = False
        conflicts: list[tuple[str, Any, Any, str, str]] = []
        for _ in range(MAX_MERGES):
            try:
                if not body:
                    found = self._read(item.entity_set, item.row_id)
                    if found is None:
                        raise NotFound("gone")
                    server, new_etag = found
                else:
                    server, new_etag = self._patch(item.entity_set, item.row_id, body, etag)
                status = "conflict" if conflicts else "done"
                return _Outcome(
                    status, server=server, etag=new_etag, conflicts=conflicts, merged=met_newer
                )
            except NotFound:
                return _Outcome(
                    "conflict",
                    conflicts=[("*", None, changes, "mailbox", REASON_DELETED.text)],
                    keep_local=True,
                    message="The record was deleted on the server; your offline copy is kept.",
                )
            except Conflict:
                found = self._read(item.entity_set, item.row_id)
                if found is None:
                    continue  # deleted meanwhile: the next round says so
                server, etag = found
                merged = three_way(base, changes, server, self.policy)
                winner = "mailbox" if self.policy == "mine" else "crm"
                reason = (REASON_KEPT_MINE if winner == "mailbox" else REASON_KEPT_CRM).text
                conflicts = [(c.field, c.server, c.mine, winner, reason) for c in merged.conflicts]
                body = write_body(table, merged.patch, create=False)
                base = server
                met_newer = True
        return _Outcome("failed", message="the row kept changing on the server", keep_local=True)

    def _delete(self, item: OfflineChange, row: OfflineRow) -> _Outcome:
        try:
            self.client.delete(item.entity_set, item.row_id, if_match=row.etag or "*")
        except NotFound:
            return _Outcome("done")
        except Conflict:
            found = self._read(item.entity_set, item.row_id)
            if found is None:
                return _Outcome("done")
            return _Outcome(
                "conflict",
                server=found[0],
                etag=found[1],
                conflicts=[("*", "changed", "deleted", "crm", REASON_CHANGED.text)],
                message="The record changed on the server, so it was not deleted.",
            )
        return _Outcome("done")

    # --- the journal's second half -----------------------------------------------------------

    def _record(self, item: OfflineChange, outcome: _Outcome, result: ReplayResult) -> None:
        with self.database.session() as session:
            stored = session.get(OfflineChange, item.id)
            assert stored is not None
            stored.status = outcome.status
            stored.message = outcome.message
            row = _row(session, self.org, item.entity_set, item.row_id)
            table = session.get(OfflineTable, (self.org, item.entity_set))
            later = session.scalar(
                select(func.count())
                .select_from(OfflineChange)
                .where(
                    OfflineChange.org == self.org,
                    OfflineChange.entity_set == item.entity_set,
                    OfflineChange.row_id == item.row_id,
                    OfflineChange.status.in_(PENDING),
                    OfflineChange.id > item.id,
                )
            )
            title = _shown_title(session, row) if row is not None else item.row_id
            for name, server_value, mine, winner, reason in outcome.conflicts:
                session.add(
                    ConflictRecord(
                        org=self.org,
                        kind=OFFLINE_PREFIX + item.entity_set,
                        crm_id=item.row_id,
                        title=title[:300],
                        field=name,
                        crm_value=server_value,
                        mailbox_value=mine,
                        winner=winner,
                        reason=reason,
                    )
                )
            self._settle(session, row, table, item, outcome, bool(later))
        result.merged += outcome.merged
        if outcome.status == "done":
            result.done += 1
        elif outcome.status == "conflict":
            result.conflicts += 1
        else:
            result.failed += 1
            result.messages.append(f"{item.op} {item.entity_set}({item.row_id}): {outcome.message}")

    def _settle(
        self,
        session: Session,
        row: OfflineRow | None,
        table: OfflineTable | None,
        item: OfflineChange,
        outcome: _Outcome,
        later: bool,
    ) -> None:
        """The local row after the call: the server's version becomes its base and ETag; its
        fields too unless later local changes still wait."""
        if row is None or outcome.keep_local:
            return
        if outcome.server is None:  # deleted (by us, or already by someone)
            if not later:
                session.delete(row)
            return
        row.base = dict(outcome.server)
        row.etag = outcome.etag
        if later:
            return
        row.fields = dict(outcome.server)
        row.state = "clean"
        row.title = title_of(row.fields, table.title_column if table else None)


def _row(session: Session, org: str, entity_set: str, row_id: str) -> OfflineRow | None:
    found: OfflineRow | None = session.scalar(
        select(OfflineRow).where(
            OfflineRow.org == org, OfflineRow.entity_set == entity_set, OfflineRow.row_id == row_id
        )
    )
    return found


def _shown_title(session: Any, row: OfflineRow) -> str:
    """[offline2] The row's name as the user wrote it (the `title` column is case-folded for
    search): the table's title column, else the folded title."""
    table = session.get(OfflineTable, (row.org, row.entity_set))
    column = table.title_column if table is not None else None
    value = (row.fields or {}).get(column) if column else None
    return str(value or row.title or row.row_id)
