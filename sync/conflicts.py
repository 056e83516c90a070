"""Conflict records: listing them and reversing a decision (DESIGN.md 1.3, "Conflicts").

A conflict is one field changed on both sides since the last sync. The engine kept one value and
recorded both. Reversing writes the other value to the side whose value was kept; the next sync
then carries it to the other side like any other change, so reversal needs no special path in
the engine and is itself recorded (`reversed_at`, winner flipped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from sync.store.base import utcnow
from sync.store.db import Database
from sync.store.models import ConflictRecord

Reverser = Callable[[ConflictRecord], None]
"""Writes the losing value of a conflict to the winning side (given by the messaging service)."""


class ReverseError(Exception):
    """The conflict cannot be reversed (unknown, already reversed, or the sides unreachable)."""


@dataclass(frozen=True)
class ConflictView:
    id: int
    kind: str
    title: str
    field: str
    crm_value: Any
    mailbox_value: Any
    winner: str
    reason: str
    created_at: Any
    reversed_at: Any

    @property
    def kept_value(self) -> Any:
        return self.crm_value if self.winner == "crm" else self.mailbox_value


def list_conflicts(database: Database, limit: int = 100) -> list[ConflictView]:
    """Newest first; reversed ones stay listed (the decision history is the point)."""
    with database.session() as session:
        rows = session.scalars(
            select(ConflictRecord).order_by(ConflictRecord.id.desc()).limit(limit)
        )
        return [
            ConflictView(
                row.id,
                row.kind,
                row.title or row.crm_id,
                row.field,
                row.crm_value,
                row.mailbox_value,
                row.winner,
                row.reason,
                row.created_at,
                row.reversed_at,
            )
            for row in rows
        ]


def reverse_conflict(database: Database, conflict_id: int, write: Reverser) -> str:
    """Take the other value: `write` puts it on the winning side, then the record is flipped.

    Returns the new winner. The remote write happens before the local record changes, so a
    failure leaves the conflict as it was (and the user can try again).
    """
    with database.session() as session:
        row = session.get(ConflictRecord, conflict_id)
        if row is None:
            raise ReverseError(f"There is no conflict #{conflict_id}.")
        if row.reversed_at is not None:
            raise ReverseError(f"Conflict #{conflict_id} was reversed already.")
        session.expunge(row)
    write(row)
    with database.session() as session:
        stored = session.get(ConflictRecord, conflict_id)
        assert stored is not None
        stored.winner = "mailbox" if stored.winner == "crm" else "crm"
        stored.reason = f"reversed by the user (was: {stored.reason})"
        stored.reversed_at = utcnow()
        return stored.winner
