"""In-memory CRM and mailbox sides that behave like the real servers, for tests and benchmarks.

Each keeps, per kind, its records with versions and a change log; a token is a position in that
log, so a delta returns what changed since, deduplicated, as the current state (or a deletion).
A stale version gives `Conflict`, a missing record `NotFound`, an expired token `TokenExpired`.
A failure hook can answer any write with an error (throttling, outages) or raise to simulate the
process dying before or after the remote write.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.sides import (
    Change,
    Conflict,
    CreateOp,
    Deleted,
    DeleteOp,
    Duplicate,
    KnownVersions,
    NotFound,
    Page,
    Result,
    SideError,
    TokenExpired,
    UpdateOp,
    Upsert,
    WriteOp,
    Written,
)


class Crash(Exception):
    """A simulated process death in the middle of a write (never caught by the engine)."""


FailureHook = Callable[[str, str, WriteOp], SideError | None]
"""hook(point, kind, op) with point "before" or "after" the remote write. Return an error to
answer the op with it instead of applying it (before only); raise (e.g. Crash) to die there."""


@dataclass
class Record:
    id: str
    version: str
    fields: dict[str, Any]
    key: str | None = None


@dataclass
class _Table:
    records: dict[str, Record] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    epoch: int = 0
    born: dict[str, int] = field(default_factory=dict)
    """Where in the log each record first appeared."""


class MemorySide:
    """The common behaviour of both in-memory sides."""

    name = "memory"
    forgets_short_lived = False
    """Like Exchange's SyncFolderItems: a record made and deleted after a token is not reported."""

    def __init__(self, page_size: int = 100) -> None:
        self.page_size = page_size
        self.tables: dict[str, _Table] = {}
        self.hook: FailureHook | None = None
        self.calls: Counter[str] = Counter()
        self._versions = itertools.count(1)
        self._ids = itertools.count(1)

    # --- direct access: what a user or another client does ---------------------------------

    def table(self, kind: str) -> _Table:
        return self.tables.setdefault(kind, _Table())

    def records(self, kind: str) -> dict[str, Record]:
        return self.table(kind).records

    def _version(self) -> str:
        return f"v{next(self._versions)}"

    def _touch(self, kind: str, record_id: str) -> None:
        table = self.table(kind)
        table.born.setdefault(record_id, len(table.log))
        table.log.append(record_id)

    def put(
        self,
        kind: str,
        fields: Mapping[str, Any],
        record_id: str | None = None,
        key: str | None = None,
    ) -> Record:
        """Create a record as a user would (no idempotency checks)."""
        record_id = record_id or self._new_id()
        record = Record(record_id, self._version(), self._defaults(dict(fields)), key)
        self.records(kind)[record_id] = record
        self._touch(kind, record_id)
        return record

    def edit(self, kind: str, record_id: str, changes: Mapping[str, Any]) -> Record:
        record = self.records(kind)[record_id]
        record.fields.update(changes)
        record.version = self._version()
        self._touch(kind, record_id)
        return record

    def remove(self, kind: str, record_id: str) -> None:
        del self.records(kind)[record_id]
        self._touch(kind, record_id)

    def expire_tokens(self, kind: str) -> None:
        """Every token given so far for `kind` is now refused (a lost sync state)."""
        self.table(kind).epoch += 1

    def _new_id(self) -> str:
        return f"{self.name}-{next(self._ids)}"

    def _defaults(self, fields: dict[str, Any]) -> dict[str, Any]:
        return fields

    def _upsert(self, record: Record) -> Upsert:
        return Upsert(record.id, record.version, dict(record.fields), record.key)

    # --- the Side interface -------------------------------------------------------------------

    def read_changes(
        self, kind: str, token: str | None, known: KnownVersions | None = None
    ) -> Iterator[Page]:
        self.calls["read_changes"] += 1
        table = self.table(kind)
        end = len(table.log)
        changes: list[Change]
        if token is None:
            changes = [self._upsert(r) for r in list(table.records.values())]
        else:
            start = self._position(kind, token)
            changes = []
            for record_id in dict.fromkeys(table.log[start:end]):
                record = table.records.get(record_id)
                if record is None and self.forgets_short_lived and table.born[record_id] >= start:
                    continue
                changes.append(self._upsert(record) if record else Deleted(record_id))
            if known is not None:
                versions = {c.id: c.version for c in changes if isinstance(c, Upsert) and c.version}
                same = set(known(versions))
                changes = [c for c in changes if isinstance(c, Deleted) or c.id not in same]
        final = f"{kind}:{table.epoch}:{end}"
        if not changes:
            yield Page([], final, last=True)
            return
        for start_at in range(0, len(changes), self.page_size):
            chunk = changes[start_at : start_at + self.page_size]
            last = start_at + self.page_size >= len(changes)
            if start_at:
                self.calls["read_changes"] += 1
            yield Page(chunk, final if last else None, last=last)

    def _position(self, kind: str, token: str) -> int:
        table = self.table(kind)
        parts = token.split(":")
        if len(parts) != 3 or parts[0] != kind or not (parts[1] + parts[2]).isdigit():
            raise TokenExpired(f"token {token!r} is not for {kind}", code="bad-token")
        if int(parts[1]) != table.epoch or int(parts[2]) > len(table.log):
            raise TokenExpired("the sync state is no longer valid", code="expired")
        return int(parts[2])

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        self.calls["read"] += 1
        records = self.records(kind)
        return {i: self._upsert(records[i]) for i in ids if i in records}

    def find_by_key(self, kind: str, keys: Sequence[str]) -> dict[str, Upsert]:
        self.calls["find_by_key"] += 1
        wanted = set(keys)
        return {
            r.key: self._upsert(r)
            for r in self.records(kind).values()
            if r.key is not None and r.key in wanted
        }

    def write(self, kind: str, ops: Sequence[WriteOp]) -> list[Result]:
        self.calls["write"] += 1
        results: list[Result] = []
        for op in ops:
            if self.hook is not None:
                answer = self.hook("before", kind, op)
                if answer is not None:
                    results.append(answer)
                    continue
            results.append(self._apply(kind, op))
            if self.hook is not None:
                self.hook("after", kind, op)
        return results

    def _apply(self, kind: str, op: WriteOp) -> Result:
        records = self.records(kind)
        if isinstance(op, CreateOp):
            return self._create(kind, op)
        record = records.get(op.id)
        if record is None:
            return NotFound(f"{op.id} does not exist", code="not-found")
        if op.version is not None and op.version != record.version:
            return Conflict("the version does not match", code="stale")
        if isinstance(op, DeleteOp):
            self.remove(kind, op.id)
            return Written(op.id, None)
        assert isinstance(op, UpdateOp)
        record = self.edit(kind, op.id, op.fields)
        return Written(record.id, record.version, dict(record.fields))

    def _create(self, kind: str, op: CreateOp) -> Result:
        record = self.put(kind, op.fields, key=op.key)
        return Written(record.id, record.version, dict(record.fields))


def _bound(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level `<nav>@odata.bind: "/set(id)"` as the lookup column `_<column>_value`, the way
    Dataverse stores it (the column is the navigation's name up to its first `_`)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name.endswith("@odata.bind") and isinstance(value, str) and "(" in value:
            column = name.removesuffix("@odata.bind").split("_")[0]
            out[f"_{column}_value"] = value[value.index("(") + 1 : value.rindex(")")].lower()
        else:
            out[name] = value
    return out


class MemoryCrm(MemorySide):
    """A Dataverse organization: the record id is the key we chose; new rows are owned by `me`.
    Reads by id expand the collections in `COLLECTIONS`, as the Dataverse side's `$expand`."""

    name = "crm"
    COLLECTIONS: Mapping[str, tuple[str, str, str]] = {
        "recurringappointmentmasters": (
            "recurringappointmentmaster_appointment",
            "appointments",
            "_seriesid_value",
        ),
    }
    """parent kind → (navigation, child kind, the child's lookup column to the parent)."""

    def __init__(self, me: str = "user-me", page_size: int = 100) -> None:
        super().__init__(page_size)
        self.me = me

    def _defaults(self, fields: dict[str, Any]) -> dict[str, Any]:
        fields = _bound(fields)
        fields.setdefault("_ownerid_value", self.me)
        fields.setdefault("statecode", 0)
        return fields

    def edit(self, kind: str, record_id: str, changes: Mapping[str, Any]) -> Record:
        return super().edit(kind, record_id, _bound(changes))

    def _expanded(self, kind: str, found: dict[str, Upsert]) -> dict[str, Upsert]:
        if kind not in self.COLLECTIONS or not found:
            return found
        navigation, child_kind, column = self.COLLECTIONS[kind]
        children: dict[str, list[dict[str, Any]]] = {}
        for child in self.records(child_kind).values():
            parent = child.fields.get(column)
            if parent in found:
                children.setdefault(parent, []).append({"activityid": child.id, **child.fields})
        return {
            i: Upsert(u.id, u.version, {**u.fields, navigation: children.get(i, [])}, u.key)
            for i, u in found.items()
        }

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        return self._expanded(kind, super().read(kind, ids))

    def _create(self, kind: str, op: CreateOp) -> Result:
        if set(op.fields) == {"CreateException"}:
            return self._create_exception(op.key, op.fields["CreateException"])
        if op.key in self.records(kind):
            return Duplicate("Cannot insert duplicate key.", code="0x80040237")
        record = self.put(kind, op.fields, record_id=op.key)
        return Written(record.id, record.version, dict(record.fields))

    # A series' occurrences as Dataverse keeps them (sync/kinds/exceptions.py): updating an
    # instance makes it an exception, deleting one lists its original start on the master,
    # and the CreateException message does either for an occurrence without a row.

    def _apply(self, kind: str, op: WriteOp) -> Result:
        record = self.records(kind).get(getattr(op, "id", ""))
        result = super()._apply(kind, op)
        if kind == "appointments" and record is not None and isinstance(result, Written):
            if isinstance(op, DeleteOp):
                self._list_deleted(record.fields)
            elif record.fields.get("instancetypecode") == 2:
                super().edit(kind, record.id, {"instancetypecode": 3})
        return result

    def _list_deleted(self, fields: Mapping[str, Any]) -> None:
        series = str(fields.get("_seriesid_value") or "")
        master = self.records("recurringappointmentmasters").get(series)
        if master is None or not fields.get("originalstartdate"):
            return
        listed = str(master.fields.get("deletedexceptionslist") or "").split()
        text = "\n".join([*listed, str(fields["originalstartdate"])])
        self.edit("recurringappointmentmasters", master.id, {"deletedexceptionslist": text})

    def _create_exception(self, key: str, parameters: Mapping[str, Any]) -> Result:
        target = {k: v for k, v in parameters["Target"].items() if not k.startswith("@odata.")}
        fields = {**_bound(target), "originalstartdate": parameters["OriginalStartDate"]}
        if parameters["IsDeleted"]:
            self._list_deleted(fields)
            return Written(key, None)
        record = self.put("appointments", {**fields, "instancetypecode": 3}, record_id=key)
        return Written(record.id, None)

    def find_by_key(self, kind: str, keys: Sequence[str]) -> dict[str, Upsert]:
        self.calls["find_by_key"] += 1
        records = self.records(kind)
        return self._expanded(kind, {k: self._upsert(records[k]) for k in keys if k in records})


class MemoryMailbox(MemorySide):
    """A mailbox: ids are made by the server; our items carry the CRM id as their key."""

    name = "mailbox"
    forgets_short_lived = True

    def __init__(self, page_size: int = 100) -> None:
        super().__init__(page_size)
        self.untracked: dict[str, set[str]] = {}
        """The untracked marks kept "in the mailbox" (they outlive a local database)."""

    def load_untracked(self, kind: str) -> set[str]:
        self.calls["load_untracked"] += 1
        return set(self.untracked.get(kind, ()))

    def save_untracked(self, kind: str, crm_ids: Collection[str]) -> None:
        self.calls["save_untracked"] += 1
        self.untracked[kind] = set(crm_ids)


class GraphDeltaMailbox(MemoryMailbox):
    """A mailbox whose change reads behave like Microsoft Graph's delta queries.

    What it models, from the delta pages of microsoft-graph-docs-contrib (contact-delta.md,
    event-delta.md, message-delta.md, todotask-delta.md): pages followed by a next link until
    the last one gives a delta link (the only token worth saving); deletions come as `@removed`
    entries, also for items made and deleted since the last delta link (Graph does not hide
    them, unlike EWS's SyncFolderItems); the same item may come again on a later page; and a
    delta or next link the service no longer accepts is answered `410 Gone`, which a side
    raises as `TokenExpired` — at the first request, or in the middle of the paging
    (`expire_while_paging`), where nothing read so far may be saved.
    """

    forgets_short_lived = False

    def __init__(self, page_size: int = 100) -> None:
        super().__init__(page_size)
        self.repeat_across_pages = True
        """Report the last item of each page again at the head of the next."""
        self.expire_while_paging = False
        """The next paged read answers 410 after its first page (once)."""

    def read_changes(
        self, kind: str, token: str | None, known: KnownVersions | None = None
    ) -> Iterator[Page]:
        pages = list(super().read_changes(kind, token, known))
        previous: Change | None = None
        for index, page in enumerate(pages):
            if index and self.expire_while_paging:
                self.expire_while_paging = False
                self.expire_tokens(kind)
                raise TokenExpired("the delta link expired while paging", code="syncStateNotFound")
            changes = list(page.changes)
            if previous is not None and self.repeat_across_pages:
                changes.insert(0, previous)
            previous = changes[-1] if changes else None
            yield Page(changes, page.token, last=page.last)
