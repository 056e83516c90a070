"""Field-level three-way merge and the conflict policy; reversing a recorded decision.

Each field is compared with the value both sides agreed on at the last sync. Changed on one
side: it flows to the other if its direction allows. Changed on both to different values: the
field's direction decides (a one-way field keeps its source's value), else the policy (CRM wins
by default), and the decision is recorded so the user can reverse it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.engine.state import ConflictRow, LinkStore
from sync.kinds.base import ChildRows, Direction, Kind
from sync.sides import DeleteOp, NotFound, Side, SideError, UpdateOp, Written


@dataclass
class Merged:
    crm_patch: dict[str, Any] = field(default_factory=dict)
    """Canonical values to write to the CRM."""
    mailbox_patch: dict[str, Any] = field(default_factory=dict)
    crm_after: dict[str, Any] = field(default_factory=dict)
    mailbox_after: dict[str, Any] = field(default_factory=dict)
    conflicts: list[tuple[str, Any, Any, str, str]] = field(default_factory=list)
    """(field, crm value, mailbox value, winner, reason)"""


def merge(
    kind: Kind,
    crm_now: Mapping[str, Any],
    mailbox_now: Mapping[str, Any],
    crm_base: Mapping[str, Any],
    mailbox_base: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    policy: str = "crm",
) -> Merged:
    out = Merged(crm_after=dict(crm_now), mailbox_after=dict(mailbox_now))
    for name in kind.field_names:
        crm_value, mailbox_value = crm_now.get(name), mailbox_now.get(name)
        if crm_value == mailbox_value:
            continue
        direction = kind.direction(name, overrides)
        crm_changed = name not in crm_base or crm_base[name] != crm_value
        mailbox_changed = name not in mailbox_base or mailbox_base[name] != mailbox_value
        fmap = kind.field(name)
        if crm_changed and mailbox_changed and fmap.merge_both and direction is Direction.BOTH:
            merged = fmap.merge_both(crm_base.get(name), crm_value, mailbox_value)
            if merged != mailbox_value:
                out.mailbox_patch[name] = merged
            if merged != crm_value:
                _to_crm(kind, out, name, crm_value, merged)
            continue
        if crm_changed and mailbox_changed:
            if direction is Direction.NONE:
                continue
            if direction is Direction.TO_MAILBOX:
                winner, reason = "crm", "direction"
            elif direction is Direction.TO_CRM:
                winner, reason = "mailbox", "direction"
            else:
                winner, reason = ("mailbox", "policy") if policy == "mailbox" else ("crm", "policy")
                out.conflicts.append((name, crm_value, mailbox_value, winner, reason))
            if winner == "crm":
                out.mailbox_patch[name] = crm_value
            else:
                _to_crm(kind, out, name, crm_value, mailbox_value)
        elif crm_changed and direction.to_mailbox:
            out.mailbox_patch[name] = crm_value
        elif mailbox_changed and direction.to_crm:
            _to_crm(kind, out, name, crm_value, mailbox_value)
    out.crm_after.update(out.crm_patch)
    out.mailbox_after.update(out.mailbox_patch)
    return out


def _to_crm(kind: Kind, out: Merged, name: str, crm_value: Any, mailbox_value: Any) -> None:
    value = kind.field(name).mailbox_wins(crm_value, mailbox_value)
    if value != crm_value:
        out.crm_patch[name] = value


def reverse_conflict(
    kind: Kind, conflict: ConflictRow, crm: Side, mailbox: Side, store: LinkStore
) -> SideError | None:
    """Take the other value of a recorded conflict.

    The losing value is written onto the winning side; the next sync carries it over as an
    ordinary one-sided change, so reversing needs no special path through the engine.
    """
    if conflict.id is None or conflict.reversed:
        return None
    fmap = kind.field(conflict.field)
    if conflict.winner == "crm":
        side, side_kind, record_id = crm, kind.crm_kind, conflict.crm_id
        patch = fmap.crm_patch(conflict.mailbox_value)
    else:
        if conflict.mailbox_id is None:
            return None
        side, side_kind, record_id = mailbox, kind.mailbox_kind, conflict.mailbox_id
        patch = fmap.mailbox_patch(conflict.crm_value)
    [result] = side.write(side_kind, [UpdateOp(record_id, None, patch)])
    children = kind.crm_children
    if isinstance(result, Written) and side is crm and children and children.field == fmap.name:
        result = _write_children(crm, kind.crm_kind, children, record_id, conflict.mailbox_value)
    if isinstance(result, Written):
        store.mark_reversed(conflict.id)
        return None
    return result


def _write_children(
    crm: Side, crm_kind: str, children: ChildRows, record_id: str, value: Any
) -> Written | SideError:
    """The child rows of a reversed value (a series' exception rows), as the engine writes them."""
    found = crm.read(crm_kind, [record_id]).get(record_id)
    if found is None:
        return NotFound(f"{record_id} is gone")
    ops = children.ops(record_id, found.fields, value)
    for op, answer in zip(ops, crm.write(children.crm_kind, ops) if ops else [], strict=True):
        if isinstance(answer, SideError) and not (
            isinstance(answer, NotFound) and isinstance(op, DeleteOp)
        ):
            return answer
    return Written(record_id, found.version)
