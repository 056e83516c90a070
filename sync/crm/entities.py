"""Which Dataverse entity set and columns stand behind each kind the CRM side syncs.

Kept as data so the side, the tests and the wizard agree on one table: the entity set, its
primary key column (the GUID we choose on create, so a retried create finds the first), the
columns to read and, for activities, how to expand the parties (never in a change-tracking
request: Dataverse rejects `$expand` there, so parties come from `read`).
"""

from __future__ import annotations

from dataclasses import dataclass

_LOGICAL_NAMES = {
    "tasks": "task",
    "appointments": "appointment",
    "recurringappointmentmasters": "recurringappointmentmaster",
}
"""Entity sets whose writes and reads follow the table definitions (sync/crm/metadata.py):
those with UserLocal date columns the kinds treat as days, columns not valid for create or
update, and activity states. Contacts keep their two date columns as DateOnly (birthdate,
anniversary: behavior-format-date-time-attribute.md lists both as DateOnly and not changeable),
so they need no definitions."""


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
    logical_name: str | None = None
    """The table's logical name, whose definitions shape writes and reads (None: used as is)."""
    day_columns: tuple[str, ...] = ()
    """UserLocal columns the kinds read and write as days although their Format is DateAndTime
    (a task's dates: the mailbox keeps dates only). Columns whose Format is DateOnly are days
    anyway."""

    def __post_init__(self) -> None:
        if self.logical_name is None and self.entity_set in _LOGICAL_NAMES:
            object.__setattr__(self, "logical_name", _LOGICAL_NAMES[self.entity_set])


def _parties(navigation: str) -> str:
    return f"{navigation}($select=participationtypemask,addressused,_partyid_value)"


_SERIES_OCCURRENCES = (
    "recurringappointmentmaster_appointment($select=activityid,instancetypecode,"
    "originalstartdate,scheduledstart,scheduledend)"
)
"""A series' instance and exception rows (the recurring kind reads its exceptions from them)."""

KIND_SPECS: dict[str, EntitySpec] = {
    "contacts": EntitySpec("contacts", "contactid"),
    "tasks": EntitySpec(
        "tasks", "activityid", day_columns=("scheduledstart", "scheduledend", "actualend")
    ),
    "appointments": EntitySpec(
        "appointments", "activityid", expand=_parties("appointment_activity_parties")
    ),
    "recurringappointmentmasters": EntitySpec(
        "recurringappointmentmasters",
        "activityid",
        expand=_parties("recurringappointmentmaster_activity_parties") + "," + _SERIES_OCCURRENCES,
    ),
    "emails": EntitySpec(
        "emails",
        "activityid",
        select=(
            "activityid",
            "subject",
            "messageid",
            "directioncode",
            "trackingtoken",
            "conversationindex",
            "statecode",
            "statuscode",
            "_regardingobjectid_value",
            "_ownerid_value",
            "createdon",
        ),
        expand=_parties("email_activity_parties"),
    ),
}
"""`emails` selects what tracking and correlation read (sync.crm.emails): email.md's
`inreplyto` and `conversationindex` are read-only — set by the service, never by us — and
`senton` too, so a tracked email carries its time in `actualend`."""

MESSAGES: dict[str, str] = {
    "CreateException": "recurringappointmentmasters/Microsoft.Dynamics.CRM.CreateException",
}
"""Messages a write may carry instead of a row (a CreateOp whose only field is the message's
name, holding its parameters), and where they are posted: CreateException is bound to the
recurringappointmentmaster collection (its Web API action reference)."""

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
    "organizations": "organizationid",
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
