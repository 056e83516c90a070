"""Applying a plan in batches: idempotent creates, per-item results, one commit per batch.

Order of writes inside a batch, so that an interruption at worst re-sends, never duplicates:
1. the GUIDs of new CRM records are committed in pending links before the CRM is called;
2. creates are preceded by an idempotency lookup on their key, always: another writer may
   have made the copy moments ago; one found is joined to the record by the conflict rules of
   a re-link (differences recorded as conflicts), never overwritten silently;
3. the writes go out, one call per side;
4. links, parked items and conflicts of the batch are committed together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sync.engine.options import EngineSettings
from sync.engine.plan import (
    Action,
    CreateCrm,
    CreateMailbox,
    DeleteMailbox,
    DropLink,
    RemoveCopy,
    ReportCopy,
    Untrack,
    Update,
    action_crm_id,
    join,
)
from sync.engine.state import (
    DELETING,
    PENDING_CRM,
    SYNCED,
    UNTRACKED,
    Batch,
    ConflictRow,
    ItemFailure,
    LinkRow,
    LinkStore,
)
from sync.kinds.base import ChildRows, Kind
from sync.messages import N_
from sync.sides import (
    AuthError,
    CreateOp,
    DeleteOp,
    NotFound,
    Result,
    Side,
    SideError,
    Throttled,
    UpdateOp,
    Upsert,
    WriteOp,
    Written,
)

Progress = Callable[[int, int, str], None]


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    deleted: int = 0


@dataclass
class KindResult:
    """What one kind's run did, per side written to (`crm` = changes made in the CRM)."""

    kind: str
    crm: Counts = field(default_factory=Counts)
    mailbox: Counts = field(default_factory=Counts)
    untracked: int = 0
    relinked: int = 0
    copies_removed: int = 0
    """Second mailbox copies of one record removed (also counted in `mailbox.deleted`)."""
    copies_reported: int = 0
    """Second copies kept because both copies hold edits (an alert names each record)."""
    conflicts: int = 0
    errors: int = 0
    stopped: str | None = None
    """Why the run stopped without applying (e.g. "side-emptied"), else None."""
    message: str | None = None
    message_msg: Any = None
    """`message` as a message id with parameters (sync.messages.to_json), for the pages."""
    made_in_mailbox: list[str] = field(default_factory=list, repr=False, compare=False)
    """Items this run created in the mailbox, or found by key and linked (another writer's,
    made after this run's read, maybe): the next run checks them."""

    def as_dict(self) -> dict[str, Any]:
        counts = asdict(self)
        del counts["made_in_mailbox"]
        return counts

    @property
    def changed(self) -> int:
        sides = (self.crm, self.mailbox)
        return sum(c.created + c.updated + c.deleted for c in sides) + self.untracked


def _write(side: Side, kind: str, ops: Sequence[WriteOp]) -> list[Result]:
    """Write `ops`; a whole-call failure becomes that failure for each op (parked, retried)."""
    if not ops:
        return []
    try:
        results = side.write(kind, ops)
    except AuthError:
        raise
    except SideError as error:
        return [error] * len(ops)
    if len(results) != len(ops):
        raise RuntimeError(f"{side.name} answered {len(results)} results for {len(ops)} ops")
    return results


def _diff(
    kind: Kind, wanted: Mapping[str, Any], current: Mapping[str, Any], to_crm: bool, overrides: Any
) -> dict[str, Any]:
    """Fields of `wanted` that differ in `current` and may flow that way."""
    out = {}
    for name, value in wanted.items():
        direction = kind.direction(name, overrides)
        allowed = direction.to_crm if to_crm else direction.to_mailbox
        if allowed and current.get(name) != value:
            out[name] = value
    return out


def _op_name(op: WriteOp) -> str:
    return {CreateOp: "create", UpdateOp: "update", DeleteOp: "delete"}[type(op)]


def apply_actions(
    kind: Kind,
    actions: Sequence[Action],
    crm: Side,
    mailbox: Side,
    store: LinkStore,
    settings: EngineSettings,
    result: KindResult,
    progress: Progress | None = None,
) -> None:
    """Apply `actions` in batches of `settings.batch_size`, committing after each."""
    size = max(1, settings.batch_size)
    for start in range(0, len(actions), size):
        _apply_batch(kind, actions[start : start + size], crm, mailbox, store, settings, result)
        if progress is not None:
            progress(min(start + size, len(actions)), len(actions), "apply")


def _apply_batch(
    kind: Kind,
    actions: Sequence[Action],
    crm: Side,
    mailbox: Side,
    store: LinkStore,
    settings: EngineSettings,
    result: KindResult,
) -> None:
    now = settings.now()
    overrides = settings.directions.get(kind.name)
    creates_crm = [a for a in actions if isinstance(a, CreateCrm)]
    creates_mailbox = [a for a in actions if isinstance(a, CreateMailbox)]
    # Intentions that must survive a crash right after the remote write.
    pending = [
        LinkRow(a.crm_id, a.mailbox_id, mailbox_version=a.mailbox_version, state=PENDING_CRM)
        for a in creates_crm
    ]
    pending += [
        replace(a.link, state=DELETING)
        for a in actions
        if isinstance(a, DeleteMailbox) and a.link.mailbox_id and a.link.state != DELETING
    ]
    if pending:
        store.commit_batch(kind.name, Batch(upserts=pending), now)
    found_crm: dict[str, Upsert] = {}
    found_mailbox: dict[str, Upsert] = {}
    if creates_crm:
        found_crm = crm.find_by_key(kind.crm_kind, [a.crm_id for a in creates_crm])
    if creates_mailbox:
        found_mailbox = mailbox.find_by_key(kind.mailbox_kind, [a.crm_id for a in creates_mailbox])

    crm_ops: list[WriteOp] = []
    crm_slots: list[int] = []
    mailbox_ops: list[WriteOp] = []
    mailbox_slots: list[int] = []
    sent: dict[tuple[str, int], dict[str, Any]] = {}

    def to_crm(i: int, op: WriteOp) -> None:
        crm_ops.append(op)
        crm_slots.append(i)
        if not isinstance(op, DeleteOp):
            sent[("crm", i)] = dict(op.fields)

    def to_mailbox(i: int, op: WriteOp) -> None:
        mailbox_ops.append(op)
        mailbox_slots.append(i)
        if not isinstance(op, DeleteOp):
            sent[("mailbox", i)] = dict(op.fields)

    actions = list(actions)
    batch_made: list[str] = []
    for i, action in enumerate(actions):
        # A create whose key is taken already (a crash after the write, or another writer
        # moments ago) becomes the joining of the two, by the conflict rules of a re-link.
        if isinstance(action, CreateMailbox) and action.crm_id in found_mailbox:
            found = found_mailbox[action.crm_id]
            batch_made.append(found.id)
            result.made_in_mailbox.append(found.id)  # made after this run's read, maybe
            actions[i] = join(kind, LinkRow(action.crm_id, found.id), action.values,
                              kind.mailbox_values(found.fields), action.crm_version,
                              found.version, settings, None, found)  # fmt: skip
        elif isinstance(action, CreateCrm) and action.crm_id in found_crm:
            found = found_crm[action.crm_id]
            batch_made.append(action.mailbox_id)
            actions[i] = join(kind, LinkRow(action.crm_id, action.mailbox_id),
                              kind.crm_values(found.fields), action.values, found.version,
                              action.mailbox_version, settings, found, None)  # fmt: skip
    for i, action in enumerate(actions):
        if isinstance(action, CreateMailbox):
            to_mailbox(i, CreateOp(action.crm_id, kind.mailbox_create(action.values, overrides)))
        elif isinstance(action, CreateCrm):
            to_crm(i, CreateOp(action.crm_id, kind.crm_create(action.values, overrides)))
        elif isinstance(action, RemoveCopy):
            to_mailbox(i, DeleteOp(action.mailbox_id, None, quiet=True))
        elif isinstance(action, ReportCopy):
            store.alert(
                "second-copy",
                N_("Two copies of %(title)s in the mailbox", title=action.title)
                if action.title
                else N_("Two copies of a record in the mailbox"),
                N_(
                    "Both copies were changed since the last sync, so neither was removed. The "
                    "linked copy keeps syncing; delete the copy you do not want."
                ),
                subject=action.crm_id,
            )
        elif isinstance(action, Update):
            if action.crm_patch:
                patch = kind.crm_patch(action.crm_patch)
                to_crm(i, UpdateOp(action.link.crm_id, action.crm_version, patch))
            item_id, key = action.link.mailbox_id, action.link.crm_id
            if action.mailbox_patch and item_id:
                patch = kind.mailbox_patch(action.mailbox_patch)
                to_mailbox(i, UpdateOp(item_id, action.mailbox_version, patch, key))
        elif isinstance(action, DeleteMailbox) and action.link.mailbox_id:
            item_id, key = action.link.mailbox_id, action.link.crm_id
            to_mailbox(i, DeleteOp(item_id, None, quiet=action.quiet, key=key))

    crm_results = dict(zip(crm_slots, _write(crm, kind.crm_kind, crm_ops), strict=True))
    if kind.crm_children is not None:
        _write_children(kind, kind.crm_children, actions, crm, crm_results)
    mailbox_results = dict(
        zip(mailbox_slots, _write(mailbox, kind.mailbox_kind, mailbox_ops), strict=True)
    )
    crm_opnames = {i: _op_name(op) for i, op in zip(crm_slots, crm_ops, strict=True)}
    mailbox_opnames = {i: _op_name(op) for i, op in zip(mailbox_slots, mailbox_ops, strict=True)}

    batch = Batch(made=batch_made)
    for i, action in enumerate(actions):
        crm_id = action_crm_id(action)
        failures: list[tuple[str, str, SideError]] = []
        for side_name, results, names in (
            ("crm", crm_results, crm_opnames),
            ("mailbox", mailbox_results, mailbox_opnames),
        ):
            outcome = results.get(i)
            if isinstance(outcome, SideError):
                if isinstance(outcome, NotFound) and names[i] == "delete":
                    continue  # already gone: the delete is done
                failures.append((side_name, names[i], outcome))
        if failures:
            side_name, op_name, error = failures[0]
            mailbox_id = getattr(action, "mailbox_id", None) or getattr(
                getattr(action, "link", None), "mailbox_id", None
            )
            batch.failures.append(
                ItemFailure(
                    crm_id=crm_id,
                    mailbox_id=mailbox_id,
                    side=side_name,
                    operation=op_name,
                    message=f"{type(error).__name__}: {error.message}",
                    retry_after=error.retry_after if isinstance(error, Throttled) else 0.0,
                )
            )
            result.errors += 1
            continue
        if isinstance(action, RemoveCopy | ReportCopy):
            # the record's own link and parked state are its other action's business
            if isinstance(action, RemoveCopy):
                result.copies_removed += 1
                result.mailbox.deleted += 1
            else:
                result.copies_reported += 1
            continue
        crm_written = crm_results.get(i)
        mailbox_written = mailbox_results.get(i)
        _settle(
            kind,
            action,
            crm_written if isinstance(crm_written, Written) else None,
            mailbox_written if isinstance(mailbox_written, Written) else None,
            sent,
            i,
            batch,
            result,
        )
        batch.resolved.append(crm_id)
    store.commit_batch(kind.name, batch, now)


def _child_value(field_name: str, action: Action) -> tuple[bool, Any]:
    """Whether `action` writes `field_name` to the CRM, and the value it writes."""
    if isinstance(action, CreateCrm) and action.values.get(field_name) is not None:
        return True, action.values[field_name]
    if isinstance(action, Update) and field_name in action.crm_patch:
        return True, action.crm_patch[field_name]
    return False, None


def _write_children(
    kind: Kind,
    children: ChildRows,
    actions: Sequence[Action],
    crm: Side,
    crm_results: dict[int, Result],
) -> None:
    """After the parents are written, write the child rows their field asks for (a series'
    exception rows), then read the parents again so the links hold what the CRM now says.
    A failed child write fails its parent's action: it is parked and decided again."""
    wanted: dict[int, tuple[str, Any]] = {}
    for i, action in enumerate(actions):
        outcome = crm_results.get(i)
        writes, value = _child_value(children.field, action)
        if writes and isinstance(outcome, Written):
            wanted[i] = (outcome.id, value)
    if not wanted:
        return
    try:
        rows = crm.read(kind.crm_kind, [parent for parent, _ in wanted.values()])
    except AuthError:
        raise
    except SideError as error:
        for i in wanted:
            crm_results[i] = error
        return
    ops: list[WriteOp] = []
    owners: list[int] = []
    for i, (parent, value) in wanted.items():
        row = rows.get(parent)
        if row is None:
            crm_results[i] = NotFound(f"{parent} is gone")
            continue
        crm_results[i] = Written(parent, row.version, row.fields)
        for op in children.ops(parent, row.fields, value):
            ops.append(op)
            owners.append(i)
    if not ops:
        return
    for i, op, res in zip(owners, ops, _write(crm, children.crm_kind, ops), strict=True):
        gone = isinstance(res, NotFound) and isinstance(op, DeleteOp)
        if isinstance(res, SideError) and not gone:
            crm_results[i] = res
    done = {i: parent for i, (parent, _) in wanted.items() if isinstance(crm_results[i], Written)}
    try:
        fresh = crm.read(kind.crm_kind, list(done.values())) if done else {}
    except AuthError:
        raise
    except SideError:
        fresh = {}
    for i, parent in done.items():
        if parent in fresh:
            crm_results[i] = Written(parent, fresh[parent].version, fresh[parent].fields)
        else:  # unread: the link keeps the values we wrote (no fields to take them from)
            before = crm_results[i]
            crm_results[i] = Written(
                parent, before.version if isinstance(before, Written) else None
            )


def _after(written: Written | None, sent: Mapping[str, Any] | None) -> dict[str, Any]:
    """A created record's fields after our write (the side's answer where it gave one)."""
    if written is not None and written.fields:
        return dict(written.fields)
    return dict(sent or {})


def _link(kind: Kind, crm_id: str, mailbox_id: str | None, crm_values: Mapping[str, Any],
          mailbox_values: Mapping[str, Any], crm_version: str | None,
          mailbox_version: str | None) -> LinkRow:  # fmt: skip
    return LinkRow(
        crm_id=crm_id,
        mailbox_id=mailbox_id,
        crm_version=crm_version,
        mailbox_version=mailbox_version,
        crm_fingerprint=kind.fingerprint(crm_values),
        mailbox_fingerprint=kind.fingerprint(mailbox_values),
        base={"crm": dict(crm_values), "mailbox": dict(mailbox_values)},
        state=SYNCED,
    )


def _settle(
    kind: Kind,
    action: Action,
    crm_written: Written | None,
    mailbox_written: Written | None,
    sent: Mapping[tuple[str, int], Mapping[str, Any]],
    i: int,
    batch: Batch,
    result: KindResult,
) -> None:
    """Record a successful action: its new link, conflicts and counts."""
    if isinstance(action, CreateMailbox):
        fields = _after(mailbox_written, sent.get(("mailbox", i)))
        mailbox_id = mailbox_written.id if mailbox_written else None
        version = mailbox_written.version if mailbox_written else None
        result.mailbox.created += 1
        if mailbox_id:
            result.made_in_mailbox.append(mailbox_id)
            batch.made.append(mailbox_id)
        batch.upserts.append(
            _link(
                kind,
                action.crm_id,
                mailbox_id,
                action.values,
                kind.mailbox_values(fields),
                action.crm_version,
                version,
            )  # fmt: skip
        )
    elif isinstance(action, CreateCrm):
        fields = _after(crm_written, sent.get(("crm", i)))
        result.crm.created += 1
        batch.made.append(action.mailbox_id)
        batch.upserts.append(
            _link(
                kind,
                crm_written.id if crm_written else action.crm_id,
                action.mailbox_id,
                kind.crm_values(fields),
                action.values,
                crm_written.version if crm_written else None,
                action.mailbox_version,
            )  # fmt: skip
        )
    elif isinstance(action, Update):
        link = action.link
        crm_after = dict(action.crm_after)
        mailbox_after = dict(action.mailbox_after)
        if crm_written is not None and crm_written.fields:
            crm_after = kind.crm_values(crm_written.fields)
            children = kind.crm_children
            if children is not None and children.field not in action.crm_patch:
                # a write's answer has no child rows: their value is as it was
                crm_after[children.field] = action.crm_after.get(children.field)
        if mailbox_written is not None and mailbox_written.fields:
            mailbox_after = kind.mailbox_values(mailbox_written.fields)
        batch.upserts.append(
            _link(
                kind,
                link.crm_id,
                link.mailbox_id,
                crm_after,
                mailbox_after,
                crm_written.version if crm_written else action.crm_version,
                mailbox_written.version if mailbox_written else action.mailbox_version,
            )  # fmt: skip
        )
        if action.crm_patch:
            result.crm.updated += 1
        if action.mailbox_patch:
            result.mailbox.updated += 1
        if link.base is None:
            result.relinked += 1
        title = kind.title(crm_after)
        for name, crm_value, mailbox_value, winner, reason in action.conflicts:
            batch.conflicts.append(
                ConflictRow(
                    link.crm_id,
                    link.mailbox_id,
                    name,
                    crm_value,
                    mailbox_value,
                    winner,
                    reason,
                    title,
                )  # fmt: skip
            )
            result.conflicts += 1
    elif isinstance(action, DeleteMailbox):
        batch.removals.append(action.link.crm_id)
        result.mailbox.deleted += 1
    elif isinstance(action, Untrack):
        batch.upserts.append(
            replace(
                action.link,
                mailbox_id=None,
                mailbox_version=None,
                mailbox_fingerprint=None,
                state=UNTRACKED,
            )  # fmt: skip
        )
        result.untracked += 1
    elif isinstance(action, DropLink):
        batch.removals.append(action.link.crm_id)
