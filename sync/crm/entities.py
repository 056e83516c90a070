"""Which Dataverse entity set and columns stand behind each kind the CRM side syncs.

Kept as data so the side, the tests and the wizard agree on one table: the entity set, its
primary key column (the GUID we choose on create, so a retried create finds the first), the
columns to read and, for activities, how to expand the parties (never in a change-tracking
request: Dataverse rejects `$expand` there, so parties come from `read`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EntitySpec:
    """How one kind maps onto a Dataverse entity set."""

    entity_set: str
    key: str
    """The primary key column (`contactid`, `activityid`)."""
    select: tuple[str, ...] | None = None
    """Columns for `$select`; None reads all (costly on the real service, fine for tests)."""
    expand: str | None = None
    """`$expand` for reads by id (e.g. the activity parties); not used with change tracking."""


def _parties(navigation: str) -> str:
    return f"{navigation}($select=participationtypemask,addressused,_partyid_value)"


_SERIES_OCCURRENCES = (
    "recurringappointmentmaster_appointment($select=activityid,instancetypecode,"
    "originalstartdate,scheduledstart,scheduledend)"
)
"""A series' instance and exception rows (the recurring kind reads its exceptions from them)."""

KIND_SPECS: dict[str, EntitySpec] = {
    "contacts": EntitySpec("contacts", "contactid"),
    "tasks": EntitySpec("tasks", "activityid"),
    "appointments": EntitySpec(
        "appointments", "activityid", expand=_parties("appointment_activity_parties")
    ),
    "recurringappointmentmasters": EntitySpec(
        "recurringappointmentmasters",
        "activityid",
        expand=_parties("recurringappointmentmaster_activity_parties") + "," + _SERIES_OCCURRENCES,
    ),
    "emails": EntitySpec("emails", "activityid", expand=_parties("email_activity_parties")),
}

_ACTIVITY_SETS = {
    "appointments",
    "recurringappointmentmasters",
    "tasks",
    "emails",
    "phonecalls",
    "letters",
    "faxes",
    "activitypointers",
}

_KNOWN_KEYS = {
    "activityparties": "activitypartyid",
    "activitymimeattachments": "activitymimeattachmentid",
    "systemusers": "systemuserid",
    "mbs_syncclaims": "mbs_syncclaimid",
}


def primary_key_for(entity_set: str) -> str:
    """The primary key column of an entity set: activities share `activityid`, others
    follow Dataverse's `<logical name>id` rule (the plural `-ies`/`-es`/`-s` undone)."""
    if entity_set in _ACTIVITY_SETS:
        return "activityid"
    if entity_set in _KNOWN_KEYS:
        return _KNOWN_KEYS[entity_set]
    for spec in KIND_SPECS.values():
        if spec.entity_set == entity_set:
            return spec.key
    if entity_set.endswith("ies"):
        return entity_set[:-3] + "yid"
    if entity_set.endswith(("sses", "xes")):
        return entity_set[:-2] + "id"
    if entity_set.endswith("s"):
        return entity_set[:-1] + "id"
    return entity_set + "id"
