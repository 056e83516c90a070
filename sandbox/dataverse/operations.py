"""Create, update (upsert) and delete rows the way the Web API does, including lookups bound
with `<nav>@odata.bind`, inline activity parties and cascades to an activity's children.

Shared by the HTTP handler and `$batch`; callers wrap each request in `store.transaction()` so a
failure half-way leaves nothing behind.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.dataverse import errors
from sandbox.dataverse.errors import ODataError, bad_request
from sandbox.dataverse.odata_filter import EDM_TYPES, normalize_datetime
from sandbox.dataverse.schema import ACTIVITY_SETS, ENTITIES, EntityDef
from sandbox.dataverse.store import Row, Store

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_REF = re.compile(r"(?:^|/)(?P<set>[A-Za-z_]\w*)\((?P<id>[0-9a-fA-F-]{36})\)$")
_READONLY = {"createdon", "modifiedon", "versionnumber", "fullname", "activitytypecode"}
_EMAIL_COLUMN = {
    "contact": "emailaddress1",
    "account": "emailaddress1",
    "lead": "emailaddress1",
    "systemuser": "internalemailaddress",
}


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Context:
    """Who is asking, in which organization; `content_ids` resolves `$1` inside a change set."""

    store: Store
    org: str
    api_url: str
    user_id: str | None
    content_ids: dict[str, str] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
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
    if kind in ("dt", "date") and isinstance(value, str):
        try:
            moment = normalize_datetime(value)
        except ValueError:
            pass
        else:
            return moment[:10] if kind == "date" else moment
    raise bad_request(
        f"Cannot convert the literal '{value}' to the expected type '{EDM_TYPES[kind]}'."
    )


@dataclass
class _Parsed:
    values: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, str | None] = field(default_factory=dict)
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _parse_body(ctx: Context, entity: EntityDef, body: Any, row_id: str | None) -> _Parsed:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    parsed = _Parsed()
    for key, value in body.items():
        if key.endswith("@odata.bind"):
            _bind(ctx, entity, key[: -len("@odata.bind")], value, parsed)
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
            if key in _READONLY:
                continue
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


ATTACHMENT_LIMIT = 5 * 1024 * 1024
"""Dataverse's default maximum attachment size (Email settings: 5,120 KB)."""


def _attachment_size(body: Any) -> int:
    try:
        size = len(base64.b64decode(body or "", validate=True))
    except (ValueError, TypeError):
        raise bad_request("The attachment body is not valid base64.") from None
    if size > ATTACHMENT_LIMIT:
        raise ODataError(
            400,
            errors.ATTACHMENT_TOO_LARGE,
            "The attachment is either not a valid type or is too large.",
        )
    return size


def _finish(ctx: Context, entity: EntityDef, row: Row) -> None:
    if entity.entity_set == "activitymimeattachments":
        row.values["filesize"] = _attachment_size(row.values.get("body"))
    if entity.computes_fullname:
        parts = [row.values.get("firstname"), row.values.get("lastname")]
        row.values["fullname"] = " ".join(p for p in parts if p) or None
    row.values["versionnumber"] = ctx.store.next_version()


def create(
    ctx: Context,
    entity_set: str,
    body: Any,
    row_id: str | None = None,
    owner: str | None = None,
) -> Row:
    """POST (or the create half of an upsert). Duplicate ids → 412 0x80040237."""
    entity = entity_for(entity_set)
    parsed = _parse_body(ctx, entity, body, row_id)
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
    values.update(parsed.values)
    for column, target in parsed.targets.items():
        if target is None:
            targets.pop(column, None)
        else:
            targets[column] = target
    row = Row(values, targets)
    _finish(ctx, entity, row)
    ctx.store.put(ctx.org, entity_set, row)
    _write_children(ctx, entity, row, parsed.children)
    return row


def update(ctx: Context, entity_set: str, row_id: str, body: Any) -> Row:
    """PATCH of an existing row: merge the given columns, bump version and modifiedon."""
    entity = entity_for(entity_set)
    table = ctx.store.table(ctx.org, entity_set)
    existing = table.get(row_id)
    if existing is None:
        raise errors.not_found(entity.logical_name, row_id)
    parsed = _parse_body(ctx, entity, body, row_id)
    row = existing.copy()
    row.values.update(parsed.values)
    for column, target in parsed.targets.items():
        if target is None:
            row.targets.pop(column, None)
        else:
            row.targets[column] = target
    row.values["modifiedon"] = utc_now()
    if ctx.user_id and "modifiedby" in entity.lookup_index:
        row.values["_modifiedby_value"] = ctx.user_id
    _finish(ctx, entity, row)
    ctx.store.put(ctx.org, entity_set, row)
    for name in parsed.children:
        _delete_children(ctx, entity, row_id, only=name)
    _write_children(ctx, entity, row, parsed.children)
    return row


def delete(ctx: Context, entity_set: str, row_id: str) -> None:
    entity = entity_for(entity_set)
    if ctx.store.table(ctx.org, entity_set).get(row_id) is None:
        raise errors.not_found(entity.logical_name, row_id)
    _delete_children(ctx, entity, row_id)
    ctx.store.remove(ctx.org, entity_set, row_id)


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
                _complete_party(ctx, parent, row)
            elif child_entity.entity_set == "activitymimeattachments":
                row.values["objecttypecode"] = entity.logical_name


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
