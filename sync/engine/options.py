"""The choices that steer one kind's sync: filters, directions, conflict policy, batch size."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync.kinds.base import Condition


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EngineSettings:
    me: str = ""
    """The CRM user id of the signed-in user (the "me" of filter conditions)."""
    filters: Mapping[str, Sequence[Sequence[Condition]]] = field(default_factory=dict)
    """Per kind name, the enabled sync filters (OR of ANDs); a kind absent uses its defaults."""
    directions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per kind name, field direction overrides ({field: "both"|"to_mailbox"|"to_crm"|"none"})."""
    conflict_policy: str = "crm"
    """Who wins a field changed on both sides when its direction does not decide: crm | mailbox."""
    batch_size: int = 100
    """Actions applied (written, then committed locally) together."""
    read_batch: int = 1000
    """Records read by id in one call (Dataverse: the operations of one $batch)."""
    emptied_threshold: int = 5
    """A full read listing nothing while more links than this exist stops the run."""
    confirm_emptied: bool = False
    """The user confirmed that an emptied side is intended: go on and apply."""
    quiet_meeting_removal: bool = True
    """Meetings leaving the filter leave the mailbox without cancellations to attendees."""
    timezone: str = "UTC"
    """The user's time zone, for "today" in filter conditions."""
    clock: Callable[[], datetime] = _now

    def now(self) -> datetime:
        return self.clock()

    def filters_for(self, kind: str, defaults: Sequence[Sequence[Condition]]) -> list[list[Any]]:
        chosen = self.filters.get(kind)
        return [list(f) for f in (defaults if chosen is None else chosen)]
