"""Create, update (upsert) and delete rows the way the Web API does, including lookups bound
with `<nav>@odata.bind`, inline activity parties and cascades to an activity's children.

Shared by the HTTP handler and `$batch`; callers wrap each request in `store.transaction()` so a
failure half-way leaves nothing behind. Writes follow the table references' rules (`schema.Rules`:
columns not valid for create or update, date-time behaviours, state and status reason, a system
user as organizer); series are expanded and their instances turned into exceptions by
`series.py`.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sandbox.dataverse import errors
from sandbox.dataverse.errors import ODataError, bad_request
from sandbox.dataverse.odata_filter import EDM_TYPES
from sandbox.dataverse.schema import (
    ACTIVITY_SETS,
    DEFAULT_MAX_UPLOAD_FILE_SIZE,
    ENTITIES,
    TIME_ZONE_INDEPENDENT,
    EntityDef,
)
from sandbox.dataverse.store import Row, Store

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$")
_REF = re.compile(r"(?:^|/)(?P<set>[A-Za-z_]\w*)\((?P<id>[0-9a-fA-F-]{36})\)$")
_READONLY = {"createdon", "modifiedon", "versionnumber", "fullname", "activitytypecode"}
_EMAIL_COLUMN = {
    "contact": "emailaddress1",
    "account": "emailaddress1",
    "lead": "emailaddress1",
    "systemuser": "internalemailaddress",
}


INVALID_ARGUMENT = "0x80040203"
"""InvalidArgument "Invalid argument." (Web service error codes). The docs name no code for a
write to a column that is not valid for create or update; the sandbox answers this one."""
PARTY_TYPE_NOT_ALLOWED = "0x80043506"
"""ActivityPartyObjectTypeNotAllowed "Cannot create activity party of specified object type."."""
INVALID_STATE_STATUS = "0x80048408"
"""InvalidStateCodeStatusCode "State code is invalid or state code is valid but status code is
invalid for a specified state code."."""
INVALID_TIME_ZONE = "0x800608F7"
"""InvalidTimeZoneCode "Time Zone Code {0} specified is not recognized. …"."""


def not_valid_for(column: str, logical_name: str, write: str) -> ODataError:
    """A write to a column whose IsValidForCreate/IsValidForUpdate is False."""
    return bad_request(
        f"Invalid argument. The '{column}' attribute of '{logical_name}' is not valid for {write}.",
        INVALID_ARGUMENT,
    )


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Expansion:
    """How far a recurring series is expanded into appointment instances (the organization's
    FutureExpansionWindow and RecurrenceExpansionSynchCreateMax: recurring-appointment-partial-
    expansion-model.md names them but not their defaults; these are the sandbox's)."""

    future_days: int = 730
    """Instances are made up to this many days from now (FutureExpansionWindow)."""
    limit: int = 500
    """At most this many instances per series (RecurrenceExpansionSynchCreateMax)."""


@dataclass
class Context:
    """Who is asking, in which organization; `content_ids` resolves `$1` inside a change set."""

    store: Store
    org: str
    api_url: str
    user_id: str | None
    content_ids: dict[str, str] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    expansion: Expansion = field(default_factory=Expansion)
    """Per-request memo (e.g. children grouped by parent for $expand); reads only."""


def entity_for(entity_set: str) -> EntityDef:
    entity = ENTITIES.get(entity_set)
    if entity is None:
        raise ODataError(404, errors.SYNTAX, f"Resource not found for the segment '{entity_set}'.")
    return entity


def check_guid(value: str) -> str:
    if not isinstance(value, str) or not GUID.match(value):
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Guid'.")
    return value.lower()


def parse_ref(ctx: Context, value: Any) -> tuple[str, str]:
    """`/contacts(<id>)`, `contacts(<id>)`, a full URL or `$1` → (entity set, id)."""
    if not isinstance(value, str):
        raise bad_request(f"Invalid value for an @odata.bind reference: {value!r}.")
    text = value.strip()
    if text.startswith("$"):
        name = text[1:].split("/")[0]
        if name not in ctx.content_ids:
            raise bad_request(
                f"Content-ID Reference: '{text}' does not exist in the batch context."
            )
        text = ctx.content_ids[name]
    match = _REF.search(text.split("?")[0])
    if not match:
        raise bad_request(f"The URI '{value}' is not valid for an @odata.bind reference.")
    return match.group("set"), match.group("id").lower()


def find_row(ctx: Context, entity_set: str, row_id: str) -> tuple[str, Row] | None:
    """The row with that id in `entity_set` ('activitypointers': any activity table)."""
    sets = ACTIVITY_SETS if entity_set == "activitypointers" else (entity_set,)
    for name in sets:
        if name in ENTITIES:
            row = ctx.store.table(ctx.org, name).get(row_id)
            if row is not None:
                return name, row
    return None


def coerce(entity: EntityDef, column: str, value: Any) -> Any:
    """Validate one body value against the column type; return the stored form."""
    if value is None:
        return None
    kind = entity.columns[column]
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("str", "memo") and isinstance(value, str):
        return value
    if kind in ("int", "pick") and is_number and float(value).is_integer():
        return int(value)
    if kind == "dec" and is_number:
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "guid" and isinstance(value, str) and GUID.match(value):
        return value.lower()
    if kind == "date" and isinstance(value, str) and _DATE.match(value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    if kind == "dt" and isinstance(value, str) and _DATE_TIME.match(value):
        try:
            return _date_time(value, entity.date_rule(column)[0])
        except ValueError:
            pass
    raise bad_request(
        f"Cannot convert the literal '{value}' to the expected type '{EDM_TYPES[kind]}'."
    )


def _date_time(text: str, behaviour: str) -> str:
    """An Edm.DateTimeOffset literal as stored: UserLocal values are kept in UTC (a value without
    an offset is taken as UTC, as the Web API does: behavior-format-date-time-attribute.md,
    "Submitting through the API"); TimeZoneIndependent ones keep the date and time as given
    ("no time zone conversion is performed"), whatever offset came with them."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if behaviour == TIME_ZONE_INDEPENDENT:
        return moment.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%SZ")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Parsed:
    values: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, str | None] = field(default_factory=dict)
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _check_writable(entity: EntityDef, column: str, creating: bool) -> None:
    """Refuse a column the table reference marks not valid for this write (IsValidForCreate /
    IsValidForUpdate False, or in its "Read-only columns/attributes" list)."""
    if entity.rules is None:
        return
    valid = entity.valid_for_create(column) if creating else entity.valid_for_update(column)
    if not valid:
        raise not_valid_for(column, entity.logical_name, "create" if creating else "update")


MAX_LENGTHS = {("email", "messageid"): 320}
"""String columns whose MaxLength the sandbox enforces (email.md: MessageId, MaxLength 320).
Other columns' limits are not enforced yet (sandbox/README.md)."""


def _check_length(entity: EntityDef, column: str, value: Any) -> None:
    most = MAX_LENGTHS.get((entity.logical_name, column))
    if most is not None and isinstance(value, str) and len(value) > most:
        raise ODataError(
            400,
            "0x80044331",
            f"A validation error occurred. The length of the '{column}' attribute of the "
            f"'{entity.logical_name}' entity exceeded the maximum allowed length of '{most}'.",
        )


def _parse_body(
    ctx: Context, entity: EntityDef, body: Any, row_id: str | None, creating: bool = True
) -> _Parsed:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    parsed = _Parsed()
    for key, value in body.items():
        if key.endswith("@odata.bind"):
            nav = key[: -len("@odata.bind")]
            if nav in entity.nav_index:
                _check_writable(entity, entity.nav_index[nav][0].column, creating)
            _bind(ctx, entity, nav, value, parsed)
        elif key.startswith("@") or "@" in key:
            continue  # instance annotations such as @odata.type
        elif key in entity.collection_index:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise bad_request(f"The value of '{key}' must be an array of objects.")
            parsed.children[key] = value
        elif key == entity.key:
            key_value = check_guid(value)
            if row_id is not None and key_value != row_id:
                raise bad_request(
                    f"The key value '{key_value}' in the body does not match the URL key."
                )
            parsed.values[key] = key_value
        elif key in entity.columns:
            if key.startswith("_") and key.endswith("_value"):
                raise bad_request(
                    f"Invalid property '{key}' was found in entity "
                    f"'Microsoft.Dynamics.CRM.{entity.logical_name}'."
                )
            if entity.rules is None and key in _READONLY:
                continue
            _check_writable(entity, key, creating)
            _check_length(entity, key, value)
            parsed.values[key] = coerce(entity, key, value)
        else:
            raise errors.unknown_body_property(key, entity.logical_name)
    return parsed


def _bind(ctx: Context, entity: EntityDef, nav: str, value: Any, parsed: _Parsed) -> None:
    if nav not in entity.nav_index:
        raise bad_request(
            f"An undeclared property '{nav}' which only has property annotations in the payload "
            "but no property value was found in the payload. In OData, only declared navigation "
            "properties and declared named streams can be represented as properties without values."
        )
    lookup, target_set = entity.nav_index[nav]
    column = f"_{lookup.column}_value"
    if value is None:
        parsed.values[column] = None
        parsed.targets[lookup.column] = None
        return
    ref_set, ref_id = parse_ref(ctx, value)
    allowed = (
        ACTIVITY_SETS + ("activitypointers",) if target_set == "activitypointers" else (target_set,)
    )
    if ref_set not in allowed:
        raise bad_request(
            f"The navigation property '{nav}' expects '{target_set}' but the reference is to "
            f"'{ref_set}'."
        )
    if ref_set in ENTITIES or ref_set == "activitypointers":
        found = find_row(ctx, ref_set, ref_id)
        if found is None:
            logical = ENTITIES[ref_set].logical_name if ref_set in ENTITIES else "activitypointer"
            raise errors.not_found(logical, ref_id)
        ref_set = found[0]
    parsed.values[column] = ref_id
    parsed.targets[lookup.column] = (
        ENTITIES[ref_set].logical_name if ref_set in ENTITIES else ref_set.rstrip("s")
    )


ATTACHMENT_BLOCKED = errors.ATTACHMENT_TOO_LARGE
"""AttachmentBlocked 0x80043e09 "The attachment is either not a valid type or is too large. It
cannot be uploaded or downloaded." (web-service-error-codes.md; files-images-overview.md: what
an upload of a blocked file type gets)."""
ATTACHMENT_FILE_SIZE = "0x80044a02"
"""unManagedidsattachmentinvalidfilesize "Attachment file size is too big." (attachment-
annotation-files.md, File size limits: what an upload over maxuploadfilesize gets)."""


def organization_row(ctx: Context) -> Row | None:
    """The organization's one `organizations` row (None in a store seeded without it)."""
    table = ctx.store.table(ctx.org, "organizations")
    return next(iter(table.rows.values()), None)


def _attachment_size(ctx: Context, row: Row) -> int:
    """The decoded size of an attachment's body, after the organization's checks: the file
    type against `blockedattachments`, and the size against `maxuploadfilesize` — which
    "applies to the size of the file in Base64 encoding" (attachment-annotation-files.md)."""
    body = row.values.get("body") or ""
    try:
        size = len(base64.b64decode(body, validate=True))
    except (ValueError, TypeError):
        raise bad_request("The attachment body is not valid base64.") from None
    org = organization_row(ctx)
    limit = (org.values.get("maxuploadfilesize") if org else None) or DEFAULT_MAX_UPLOAD_FILE_SIZE
    blocked = (org.values.get("blockedattachments") if org else None) or ""
    name = str(row.values.get("filename") or "")
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    if extension and extension in {b.strip().lower() for b in blocked.split(";") if b.strip()}:
        raise ODataError(
            400,
            ATTACHMENT_BLOCKED,
            "The attachment is either not a valid type or is too large. It cannot be uploaded "
            "or downloaded.",
        )
    if len(body) > int(limit):
        raise ODataError(400, ATTACHMENT_FILE_SIZE, "Attachment file size is too big.")
    return size


def _finish(ctx: Context, entity: EntityDef, row: Row) -> None:
    if entity.entity_set == "activitymimeattachments":
        row.values["filesize"] = _attachment_size(ctx, row)
    if entity.computes_fullname:
        parts = [row.values.get("firstname"), row.values.get("lastname")]
        row.values["fullname"] = " ".join(p for p in parts if p) or None
    row.values["versionnumber"] = ctx.store.next_version()


_STATE_OF_STATUS: dict[str, dict[int, int]] = {
    "appointment": {1: 0, 2: 0, 3: 1, 4: 2, 5: 3, 6: 3},
    "recurringappointmentmaster": {1: 0, 2: 0, 3: 1, 4: 2, 5: 3, 6: 3},
    "task": {2: 0, 3: 0, 4: 0, 7: 0, 5: 1, 6: 2},
    "email": {1: 0, 8: 0, 2: 1, 3: 1, 4: 1, 6: 1, 7: 1, 5: 2},
}
"""statuscode → its statecode (the StatusCode options tables of appointment.md,
recurringappointmentmaster.md, task.md and email.md)."""
_DEFAULT_STATUS: dict[str, dict[int, int]] = {
    "appointment": {0: 1, 1: 3, 2: 4, 3: 5},
    "recurringappointmentmaster": {0: 1, 1: 3, 2: 4, 3: 5},
    "task": {0: 2, 1: 5, 2: 6},
    "email": {0: 1, 1: 2, 2: 5},
}
"""statecode → its DefaultStatus (the StateCode options tables of the same pages)."""


def _check_state(entity: EntityDef, current: dict[str, Any], given: dict[str, Any]) -> None:
    """State and status reason must agree, as the StateCode/StatusCode tables pair them; a
    state given alone takes its default status (what SetState with status -1 does)."""
    states = _STATE_OF_STATUS.get(entity.logical_name)
    if states is None or ("statecode" not in given and "statuscode" not in given):
        return
    state = given.get("statecode", current.get("statecode"))
    if "statecode" in given and "statuscode" not in given:
        default = _DEFAULT_STATUS[entity.logical_name].get(int(state or 0))
        if default is None:
            raise bad_request(_STATE_MESSAGE, INVALID_STATE_STATUS)
        given["statuscode"] = default
    status = given.get("statuscode")
    if status is not None and states.get(int(status)) != state:
        raise bad_request(_STATE_MESSAGE, INVALID_STATE_STATUS)


_STATE_MESSAGE = (
    "State code is invalid or state code is valid but status code is invalid for a specified "
    "state code."
)


def create(
    ctx: Context,
    entity_set: str,
    body: Any,
    row_id: str | None = None,
    owner: str | None = None,
) -> Row:
    """POST (or the create half of an upsert). Duplicate ids → 412 0x80040237."""
    from sandbox.dataverse import series

    entity = entity_for(entity_set)
    parsed = _parse_body(ctx, entity, body, row_id, creating=True)
    new_id = row_id or parsed.values.get(entity.key) or str(uuid.uuid4())
    table = ctx.store.table(ctx.org, entity_set)
    if table.get(new_id) is not None:
        raise errors.duplicate_key()
    now = utc_now()
    values: dict[str, Any] = {entity.key: new_id, "createdon": now, "modifiedon": now}
    targets: dict[str, str] = {}
    if entity.default_state:
        values["statecode"], values["statuscode"] = entity.default_state
    if ctx.user_id:
        for column in ("createdby", "modifiedby"):
            if column in entity.lookup_index:
                values[f"_{column}_value"] = ctx.user_id
                targets[column] = "systemuser"
    if entity.owned and (owner or ctx.user_id):
        values["_ownerid_value"] = owner or ctx.user_id
        targets["ownerid"] = "systemuser"
    if entity.key == "activityid":
        values["activitytypecode"] = entity.logical_name
    if entity.entity_set == "appointments":
        values["instancetypecode"] = 0
    _check_state(entity, values, parsed.values)
    values.update(parsed.values)
    for column, target in parsed.targets.items():
        if target is None:
            targets.pop(column, None)
        else:
            targets[column] = target
    row = Row(values, targets)
    if entity.entity_set == "recurringappointmentmasters":
        series.prepare_master(ctx, row)
    _finish(ctx, entity, row)
    ctx.store.put(ctx.org, entity_set, row)
    _write_children(ctx, entity, row, parsed.children)
    if entity.entity_set == "recurringappointmentmasters":
        series.expand(ctx, row)
    return row


def update(ctx: Context, entity_set: str, row_id: str, body: Any) -> Row:
    """PATCH of an existing row: merge the given columns, bump version and modifiedon.

    An instance of a series that is updated becomes an exception (update-recurring-appointment
    .md: "When you update a recurring appointment instance, the instance is marked as an
    exception"); a master whose recurrence information changes is expanded again."""
    from sandbox.dataverse import series

    entity = entity_for(entity_set)
    table = ctx.store.table(ctx.org, entity_set)
    existing = table.get(row_id)
    if existing is None:
        raise errors.not_found(entity.logical_name, row_id)
    parsed = _parse_body(ctx, entity, body, row_id, creating=False)
    _check_state(entity, existing.values, parsed.values)
    row = existing.copy()
    row.values.update(parsed.values)
    for column, target in parsed.targets.items():
        if target is None:
            row.targets.pop(column, None)
        else:
            row.targets[column] = target
    if entity.entity_set == "appointments" and existing.values.get("instancetypecode") == 2:
        row.values["instancetypecode"] = 3
    row.values["modifiedon"] = utc_now()
    if ctx.user_id and "modifiedby" in entity.lookup_index:
        row.values["_modifiedby_value"] = ctx.user_id
    _finish(ctx, entity, row)
    ctx.store.put(ctx.org, entity_set, row)
    for name in parsed.children:
        _delete_children(ctx, entity, row_id, only=name)
    _write_children(ctx, entity, row, parsed.children)
    if entity.entity_set == "recurringappointmentmasters":
        series.master_updated(ctx, existing, row)
    if entity.entity_set == "usersettingscollection":
        series.check_time_zone(row.values.get("timezonecode"))
    return row


def delete(ctx: Context, entity_set: str, row_id: str) -> None:
    """DELETE; deleting an instance (or exception) of a series lists its original start in the
    master's `deletedexceptionslist` (delete-or-end-a-recurring-appointment-series-or-instance
    .md)."""
    from sandbox.dataverse import series

    entity = entity_for(entity_set)
    row = ctx.store.table(ctx.org, entity_set).get(row_id)
    if row is None:
        raise errors.not_found(entity.logical_name, row_id)
    _delete_children(ctx, entity, row_id)
    ctx.store.remove(ctx.org, entity_set, row_id)
    if entity.entity_set == "appointments":
        series.occurrence_deleted(ctx, row)


def children_of(ctx: Context, entity: EntityDef, name: str, row_id: str) -> list[Row]:
    collection = entity.collection_index[name]
    column = f"_{collection.child_lookup}_value"
    table = ctx.store.table(ctx.org, collection.child_set)
    return [row for row in table.rows.values() if row.values.get(column) == row_id]


def _delete_children(ctx: Context, entity: EntityDef, row_id: str, only: str | None = None) -> None:
    for collection in entity.collections:
        if only is not None and collection.name != only:
            continue
        child_entity = ENTITIES[collection.child_set]
        for child in children_of(ctx, entity, collection.name, row_id):
            ctx.store.remove(ctx.org, collection.child_set, child.values[child_entity.key])


def replace_parties(ctx: Context, entity_set: str, row_id: str, nav: str, items: Any) -> Row:
    """`PUT <activity>(<id>)/<activity>_activity_parties` {"value": [...]}: the activity's
    parties become exactly these ("Associate tables on update using collection-valued
    navigation property", associate-disassociate-entities-using-web-api.md: "possible only
    with activityparty"). The activity gets a new version, as any update."""
    entity = entity_for(entity_set)
    collection = entity.collection_index.get(nav)
    if collection is None or collection.child_set != "activityparties":
        raise ODataError(
            405, errors.SYNTAX, f"The navigation property '{nav}' cannot be replaced with PUT."
        )
    if not isinstance(items, dict) or not isinstance(items.get("value"), list):
        raise bad_request("The request body must be an object with a 'value' array.")
    if not all(isinstance(v, dict) for v in items["value"]):
        raise bad_request(f"The value of '{nav}' must be an array of objects.")
    existing = ctx.store.table(ctx.org, entity_set).get(row_id)
    if existing is None:
        raise errors.not_found(entity.logical_name, row_id)
    row = existing.copy()
    row.values["modifiedon"] = utc_now()
    if ctx.user_id and "modifiedby" in entity.lookup_index:
        row.values["_modifiedby_value"] = ctx.user_id
    row.values["versionnumber"] = ctx.store.next_version()
    ctx.store.put(ctx.org, entity_set, row)
    _delete_children(ctx, entity, row_id, only=nav)
    _write_children(ctx, entity, row, {nav: list(items["value"])})
    return row


def _write_children(
    ctx: Context, entity: EntityDef, parent: Row, children: dict[str, list[dict[str, Any]]]
) -> None:
    parent_id = parent.values[entity.key]
    for name, items in children.items():
        collection = entity.collection_index[name]
        child_entity = ENTITIES[collection.child_set]
        for item in items:
            body = {k: v for k, v in item.items() if not k.startswith(collection.child_lookup)}
            row = create(ctx, collection.child_set, body, owner=None)
            row.values[f"_{collection.child_lookup}_value"] = parent_id
            row.targets[collection.child_lookup] = entity.logical_name
            if child_entity.entity_set == "activityparties":
                _check_organizer(entity, row)
                _complete_party(ctx, parent, row)
            elif child_entity.entity_set == "activitymimeattachments":
                row.values["objecttypecode"] = entity.logical_name


ORGANIZER = 7
_SYSTEM_USER_ONLY = {"appointment", "recurringappointmentmaster"}
"""Tables whose Organizer column has Targets `systemuser` only (appointment.md,
recurringappointmentmaster.md: Organizer, Type PartyList, Targets systemuser)."""


def _check_organizer(entity: EntityDef, party: Row) -> None:
    """An appointment's organizer party must point to a system user (not an address alone)."""
    if entity.logical_name not in _SYSTEM_USER_ONLY:
        return
    if party.values.get("participationtypemask") != ORGANIZER:
        return
    if party.targets.get("partyid") != "systemuser" or not party.values.get("_partyid_value"):
        raise bad_request(
            "Cannot create activity party of specified object type. The organizer of "
            f"'{entity.logical_name}' can only be a systemuser.",
            PARTY_TYPE_NOT_ALLOWED,
        )


def _complete_party(ctx: Context, parent: Row, party: Row) -> None:
    """Parties copy the activity's owner and, when resolved, the party's e-mail address."""
    party.values["_ownerid_value"] = parent.values.get("_ownerid_value")
    party.targets["ownerid"] = "systemuser"
    target = party.targets.get("partyid")
    party_id = party.values.get("_partyid_value")
    if target and party_id and not party.values.get("addressused"):
        found = find_row(ctx, f"{target}s" if target != "systemuser" else "systemusers", party_id)
        column = _EMAIL_COLUMN.get(target)
        if found and column:
            party.values["addressused"] = found[1].values.get(column)
