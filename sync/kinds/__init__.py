"""The kinds synced both ways: field maps and rules per record type (no I/O)."""

from sync.kinds.appointments import APPOINTMENTS, RECURRING_APPOINTMENTS
from sync.kinds.base import Direction, FieldMap, Kind
from sync.kinds.contacts import CONTACTS
from sync.kinds.tasks import TASKS

KINDS: dict[str, Kind] = {
    kind.name: kind for kind in (CONTACTS, TASKS, APPOINTMENTS, RECURRING_APPOINTMENTS)
}
"""Every kind by name, in the order a messaging sync runs them."""

__all__ = [
    "APPOINTMENTS",
    "CONTACTS",
    "KINDS",
    "RECURRING_APPOINTMENTS",
    "TASKS",
    "Direction",
    "FieldMap",
    "Kind",
]
