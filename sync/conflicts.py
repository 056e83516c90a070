"""Conflict records: listing them and reversing a decision (DESIGN.md 1.3, "Conflicts").

A conflict is one field changed on both sides since the last sync. The engine kept one value and
recorded both. Reversing writes the other value to the side whose value was kept; the next sync
then carries it to the other side like any other change, so reversal needs no special path in
the engine and is itself recorded (`reversed_at`, winner flipped).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from sync.settings import get_setting, set_setting
from sync.setup.messages import N_, Msg
from sync.setup.odata import OFFLINE_PREFIX
from sync.store.base import utcnow
from sync.store.db import Database
from sync.store.models import ConflictRecord

SEEN_SETTING = "conflicts_seen_id"
"""The newest conflict the user has seen on the Conflicts page (the navigation counts newer)."""

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

    @property
    def explanation(self) -> list[Msg]:
        """Why this value was kept, in sentences the page translates."""
        return explain(self.reason, self.winner)


_REVERSED = re.compile(r"^reversed by the user \(was: (?P<was>.*)\)$")
_MAILBOX_LATER = re.compile(
    r"the mailbox copy changed after the CRM record \((?P<mailbox>[^,]*), CRM (?P<crm>[^)]*)\)"
)
_CRM_LATER = re.compile(
    r"the CRM record changed last \((?P<crm>[^,]*), mailbox (?P<mailbox>[^)]*)\)"
)
_RELINKED = "re-linked with no earlier sync state"


def explain(reason: str, winner: str) -> list[Msg]:
    """The stored reason (the engine's words: "policy", "direction", the re-link notes, a
    reversal) as translatable sentences; an unknown reason is shown as it is."""
    reversed_ = _REVERSED.match(reason)
    if reversed_:
        before = "mailbox" if winner == "crm" else "crm"
        kept = (
            N_("You chose the CRM value.")
            if winner == "crm"
            else N_("You chose the mailbox value.")
        )
        return [kept, N_("Before that:"), *explain(reversed_["was"], before)]
    out: list[Msg] = []
    for part in (p.strip() for p in reason.split(";") if p.strip()):
        if part == "policy":
            out.append(
                N_("CRM wins by policy: both sides changed this field, and your setting keeps the CRM value.")
                if winner == "crm"
                else N_("The mailbox wins by policy: both sides changed this field, and your setting keeps the mailbox value.")
            )  # fmt: skip
        elif part == "direction":
            out.append(
                N_("This field syncs only from the CRM to the mailbox, so the CRM value was kept.")
                if winner == "crm"
                else N_("This field syncs only from the mailbox to the CRM, so the mailbox value was kept.")
            )  # fmt: skip
        elif part == _RELINKED:
            out.append(
                N_("The record and its mailbox copy were joined again with no earlier sync (a new install or a new computer).")
            )  # fmt: skip
        elif match := _MAILBOX_LATER.fullmatch(part):
            out.append(
                N_("The mailbox copy changed last (%(mailbox)s; CRM %(crm)s).", **match.groupdict())
            )
        elif match := _CRM_LATER.fullmatch(part):
            out.append(
                N_(
                    "The CRM record changed last (%(crm)s; mailbox %(mailbox)s).",
                    **match.groupdict(),
                )
            )
        else:
            out.append(Msg(part))
    return out


def new_conflicts(database: Database) -> int:
    """How many conflicts were recorded since the user last opened the Conflicts page."""
    seen = int(get_setting(database, SEEN_SETTING) or 0)
    with database.session() as session:
        count = session.scalar(
            select(func.count()).select_from(ConflictRecord).where(ConflictRecord.id > seen)
        )
    return int(count or 0)


def mark_seen(database: Database, conflicts: list[ConflictView]) -> int:
    """The user sees these now (the page lists the newest first); returns the newest id seen
    before, so the page can mark the ones that are new to the user."""
    before = int(get_setting(database, SEEN_SETTING) or 0)
    newest = max((c.id for c in conflicts), default=0)
    if newest > before:
        set_setting(database, SEEN_SETTING, newest)
    return before


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


def conflict_job(database: Database, conflict_id: int) -> str:
    """The job whose data a conflict is about, whose lock its reversal holds: "offline" (kind
    "offline:<entity set>", as offline filters) or "messaging"."""
    with database.session() as session:
        kind = session.scalar(select(ConflictRecord.kind).where(ConflictRecord.id == conflict_id))
    return "offline" if kind is not None and kind.startswith(OFFLINE_PREFIX) else "messaging"


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
