"""The one small interface both sides of a sync offer (DESIGN.md 2.1a).

The engine knows nothing but this module and the kinds: a Dataverse organization, an EWS or
Graph mailbox, a POP3 account and the in-memory sides of the tests all look the same from here.
A side speaks in *its own* field vocabulary (Dataverse column names; the mailbox vocabulary of
`sync.mailbox.fields`); the kinds translate between the two.

Errors of single items are *values* in a write's results, so one bad item never hides the
others; errors of the whole call (the token expired, the sign-in is gone) are raised.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Fields = Mapping[str, Any]


# --- what a side reports ------------------------------------------------------------------


@dataclass(frozen=True)
class Upsert:
    """A record that exists now: its id, its version (ETag or ChangeKey) and its raw fields."""

    id: str
    version: str | None
    fields: Fields
    key: str | None = None
    """The idempotency key the record carries, if any (mailbox: the CRM id property)."""


@dataclass(frozen=True)
class Deleted:
    """A record that is gone since the token (a Dataverse `$deletedEntity`, an EWS Delete)."""

    id: str


Change = Upsert | Deleted


@dataclass(frozen=True)
class Page:
    """One page of changes and the token that is safe to save once the page is applied.

    `token` is None on a page after which resuming is not safe yet (a Dataverse page in the
    middle of a delta: only the final delta link may be saved). `last` marks the final page.
    """

    changes: Sequence[Change]
    token: str | None
    last: bool = True


# --- what the engine asks a side to do ---------------------------------------------------------


@dataclass(frozen=True)
class CreateOp:
    """Create a record. `key` is decided before the call so a retried create finds the first.

    CRM side: `key` is the GUID the record gets. Mailbox side: `key` is the CRM id, written
    into the idempotency extended property.
    """

    key: str
    fields: Fields


@dataclass(frozen=True)
class UpdateOp:
    """Change only `fields`; `version` guards against a concurrent change (None: no guard)."""

    id: str
    version: str | None
    fields: Fields
    key: str | None = None
    """The CRM id the item carries (a linked record's): where the item went if it moved."""


@dataclass(frozen=True)
class DeleteOp:
    """Delete a record. `quiet` asks a mailbox not to send meeting cancellations. `key`: as
    UpdateOp's (None for a second copy: never followed to the linked one)."""

    id: str
    version: str | None
    quiet: bool = True
    key: str | None = None


WriteOp = CreateOp | UpdateOp | DeleteOp


@dataclass(frozen=True)
class Written:
    """A successful write: the record's id and new version (None after a delete)."""

    id: str
    version: str | None
    fields: Fields = field(default_factory=dict)
    """The record's fields as the side now holds them, where the side has them at no cost."""


# --- errors ----------------------------------------------------------------------------------


class SideError(Exception):
    """Base of every error a side reports; carries the server's code and message."""

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, SideError)
            and (self.message, self.code) == (other.message, other.code)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.message, self.code))


class Conflict(SideError):
    """The version given is stale: the record changed since it was read (412, stale ChangeKey)."""


class NotFound(SideError):
    """The record does not exist (any more)."""


class Duplicate(SideError):
    """A record with the chosen key exists already."""


class Throttled(SideError):
    """The server asked us to wait; `retry_after` seconds, when it said."""

    def __init__(self, message: str = "", code: str | None = None, retry_after: float = 0) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class Invalid(SideError):
    """The server refused the data itself; retrying the same data will not help."""


class Unavailable(SideError):
    """The server could not be reached or failed (timeouts, resets, 5xx) after our retries."""


class AuthError(SideError):
    """The credentials or token were refused (401, revoked consent, wrong password)."""


class TokenExpired(SideError):
    """The change token (delta link, sync state) is no longer accepted: read everything again."""


Result = Written | SideError

Applier = Callable[[str, Any], "list[Result]"]
"""A side's write of one kind of op for a kind: (kind, ops) → one result per op."""


def write_grouped(
    kind: str, ops: Sequence[WriteOp], create: Applier, update: Applier, delete: Applier
) -> list[Result]:
    """`Side.write` for a side that writes each kind of op in batches of its own: creates, then
    updates, then deletes; one result per op, in the order given. A batch that fails as a whole
    fails each of its ops (an AuthError stops the run instead)."""
    results: list[Result | None] = [None] * len(ops)
    for op_type, apply in ((CreateOp, create), (UpdateOp, update), (DeleteOp, delete)):
        group = [(i, op) for i, op in enumerate(ops) if isinstance(op, op_type)]
        if not group:
            continue
        try:
            done = apply(kind, [op for _, op in group])
        except AuthError:
            raise
        except SideError as error:
            done = [error] * len(group)
        for (index, _), result in zip(group, done, strict=True):
            results[index] = result
    return [r if r is not None else NotFound("not applied") for r in results]


KnownVersions = Callable[[Mapping[str, str]], Collection[str]]
"""known({id: version}) → the ids the caller already holds at exactly that version."""


# --- the interface -----------------------------------------------------------------------------


@runtime_checkable
class Side(Protocol):
    """What the engine needs of either side, for each kind it syncs."""

    name: str
    """"crm" or "mailbox", for messages and the request counts."""

    def read_changes(
        self, kind: str, token: str | None, known: KnownVersions | None = None
    ) -> Iterator[Page]:
        """Stream pages of changes since `token`; None reads everything. Raises TokenExpired.

        `known`: on an incremental read a side may leave out the records the caller already
        holds at the version the change reports (our own writes coming back), sparing their
        full read. Never on a full read, where a missing record means a deleted one."""
        ...

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        """The current state of the given records; missing ones are absent from the result."""
        ...

    def find_by_key(self, kind: str, keys: Sequence[str]) -> dict[str, Upsert]:
        """The records carrying these idempotency keys, by key (a retried create's lookup)."""
        ...

    def write(self, kind: str, ops: Sequence[WriteOp]) -> list[Result]:
        """Apply `ops` (batched as the protocol allows); one result per op, in order."""
        ...


@runtime_checkable
class RunScoped(Protocol):
    """A side that keeps something for the length of one run (e.g. a read two kinds share)."""

    def begin_run(self) -> None:
        """A new run starts: nothing kept for the previous one may answer it."""
        ...


@runtime_checkable
class SelectsColumns(Protocol):
    """A side that can read only the columns a kind needs (Dataverse's `$select`): fewer bytes
    from the service and less held in memory than every column of the table."""

    def select_columns(self, kind: str, columns: Sequence[str]) -> None:
        """From now on read `kind` with these columns (the key among them)."""
        ...


@runtime_checkable
class UntrackMarks(Protocol):
    """A mailbox that keeps, beside its items, which CRM records the user untracked there.

    Untracking is deleting a synced copy in the mailbox: the CRM record stays and is not sent
    back. Kept in the mailbox (not only in the local database), a fresh install sees it too
    and does not bring the deleted copies back.
    """

    def load_untracked(self, kind: str) -> set[str]:
        """The CRM ids marked untracked for `kind` (empty when nothing is recorded)."""
        ...

    def save_untracked(self, kind: str, crm_ids: Collection[str]) -> None:
        """Replace the marks of `kind` by `crm_ids`."""
        ...


class CrmSide(Side, Protocol):
    """The CRM side (Dataverse). Marker protocol: the same shape, named for readability."""


class MailboxSide(Side, Protocol):
    """The mailbox side (EWS, Graph, POP3, memory). Marker protocol, as CrmSide."""


def update_refusal(op: UpdateOp, now: Upsert | None, noun: str) -> SideError | None:
    """Why an update cannot go ahead as read just now: the item is gone, or it changed since
    the engine read it (a stale version); None when it can."""
    if now is None:
        return NotFound(f"The {noun} {op.id} is gone.", "ErrorItemNotFound")
    if op.version is not None and now.version != op.version:
        return Conflict(f"The {noun} changed since it was read.", "ErrorIrresolvableConflict")
    return None
