"""The three-way merge of an offline edit with the server's row, field by field.

Going online, a queued update whose `If-Match` meets a newer version (412) is merged against
the base snapshot taken when the row went offline (DESIGN.md §1.4): a field changed on one side
only keeps that side's value; a field changed on both sides to different values is a conflict,
decided by the policy ("server", the default, or "mine") and recorded for the user. Pure: no
I/O, so a property test covers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

POLICIES = ("server", "mine")


@dataclass(frozen=True)
class FieldConflict:
    """A field both sides changed: the value each side has and whose was kept."""

    field: str
    mine: Any
    server: Any
    base: Any
    winner: str
    """"server" or "mine"."""


@dataclass
class MergeResult:
    patch: dict[str, Any] = field(default_factory=dict)
    """What to write to the server (the fields where my value wins)."""
    merged: dict[str, Any] = field(default_factory=dict)
    """The row as it will be once the patch is written."""
    conflicts: list[FieldConflict] = field(default_factory=list)


def three_way(
    base: Mapping[str, Any],
    mine: Mapping[str, Any],
    server: Mapping[str, Any],
    policy: str = "server",
) -> MergeResult:
    """Merge my changed fields (`mine`: only the fields I changed) into the server's row.

    A field of `mine` whose server value still equals the base goes to the server; one the
    server changed to my value needs nothing; one the server changed to another value is a
    conflict. Fields I did not change keep the server's value."""
    if policy not in POLICIES:
        raise ValueError(f"unknown offline conflict policy {policy!r}")
    out = MergeResult(merged=dict(server))
    for name, value in mine.items():
        theirs = server.get(name)
        if same(value, theirs):
            continue
        ancestor = base.get(name)
        if same(value, ancestor):
            continue  # not a change of mine (set back to the base): the server's stands
        if same(theirs, ancestor):
            out.patch[name] = value
            continue
        winner = "mine" if policy == "mine" else "server"
        out.conflicts.append(FieldConflict(name, value, theirs, ancestor, winner))
        if winner == "mine":
            out.patch[name] = value
    out.merged.update(out.patch)
    return out


def same(left: Any, right: Any) -> bool:
    """Equal values; an empty string and null are the same to Dataverse (it stores null)."""
    if left in ("", None) and right in ("", None):
        return True
    return bool(left == right)
