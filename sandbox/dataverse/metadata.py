"""Table definitions as the Web API serves them: `EntityDefinitions` (the collection, with
`$select` and `$filter`), `EntityDefinitions(LogicalName='x')`, its `Attributes`, and
`Attributes/Microsoft.Dynamics.CRM.<Type>AttributeMetadata` casts (powerapps-docs
webapi/query-metadata-web-api.md: "Use the `EntityDefinitions` entity set path …", "you can use
`$filter` on any properties which use primitive or enumeration values", "There is no paging",
"In order to retrieve the properties of a specific type of attribute you must cast the
Attributes collection-valued navigation property to the type you want").

A table's definition carries MetadataId, LogicalName, EntitySetName, PrimaryIdAttribute,
IsActivity and ChangeTrackingEnabled (EntityMetadata.ChangeTrackingEnabled: "True if change
tracking is enabled"), the last from the per-table setting of `security.py` (so a table whose
tracking a test turns off says so here too). Each attribute carries LogicalName, AttributeType,
IsValidForCreate/Update/Read and, for date-time columns (DateTimeAttributeMetadata),
DateTimeBehavior (a complex type: {"Value": …}) and Format, from `schema.py`. `$select` is
honoured; MetadataId is always returned, as the docs say.
"""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.dataverse import errors, security
from sandbox.dataverse.errors import ODataError, bad_request
from sandbox.dataverse.odata_filter import parse_filter
from sandbox.dataverse.schema import ENTITIES, EntityDef

ENTITY_METADATA = EntityDef(
    "EntityDefinitions",
    "EntityMetadata",
    "MetadataId",
    {
        "LogicalName": "str",
        "EntitySetName": "str",
        "PrimaryIdAttribute": "str",
        "IsActivity": "bool",
        "ChangeTrackingEnabled": "bool",
    },
    default_state=None,
    owned=False,
)
"""The EntityMetadata properties the sandbox serves, typed for `$filter`."""

_NAMESPACE = uuid.UUID("1a4f2a7e-8b5c-4f0e-9d2b-5c7e3f1a9b60")
_TYPES = {
    "str": ("String", "StringAttributeMetadata"),
    "memo": ("Memo", "MemoAttributeMetadata"),
    "int": ("Integer", "IntegerAttributeMetadata"),
    "pick": ("Picklist", "PicklistAttributeMetadata"),
    "dec": ("Decimal", "DecimalAttributeMetadata"),
    "bool": ("Boolean", "BooleanAttributeMetadata"),
    "guid": ("Uniqueidentifier", "UniqueIdentifierAttributeMetadata"),
    "dt": ("DateTime", "DateTimeAttributeMetadata"),
    "date": ("DateTime", "DateTimeAttributeMetadata"),
}
_SPECIAL = {
    "statecode": ("State", "StateAttributeMetadata"),
    "statuscode": ("Status", "StatusAttributeMetadata"),
}


def _metadata_id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def _entity(logical_name: str) -> EntityDef:
    for entity in ENTITIES.values():
        if entity.logical_name == logical_name:
            return entity
    raise ODataError(
        404, errors.NOT_FOUND, f"Could not find entity with logical name '{logical_name}'."
    )


def _attribute(entity: EntityDef, column: str, kind: str) -> dict[str, Any]:
    name = column[1:-6] if column.startswith("_") and column.endswith("_value") else column
    lookup = entity.lookup_index.get(name) if name != column else None
    if lookup is not None:
        attribute_type, cast = (
            ("Owner", "LookupAttributeMetadata")
            if name == "ownerid"
            else (
                "Lookup",
                "LookupAttributeMetadata",
            )
        )
    else:
        attribute_type, cast = _SPECIAL.get(name, _TYPES[kind])
    out: dict[str, Any] = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{cast}",
        "MetadataId": _metadata_id(entity.logical_name, name),
        "LogicalName": name,
        "EntityLogicalName": entity.logical_name,
        "AttributeType": attribute_type,
        "IsValidForCreate": entity.valid_for_create(name) and not (lookup and lookup.readonly),
        "IsValidForUpdate": entity.valid_for_update(name) and not (lookup and lookup.readonly),
        "IsValidForRead": True,
    }
    if kind in ("dt", "date"):
        behaviour, shown = entity.date_rule(name)
        out["DateTimeBehavior"] = {"Value": behaviour}
        out["Format"] = shown
    return out


def _select(row: dict[str, Any], select: str | None, type_name: str) -> dict[str, Any]:
    if not select:
        return row
    wanted = [s.strip() for s in select.split(",") if s.strip()]
    for name in wanted:
        if name not in row:
            raise bad_request(
                f"Could not find a property named '{name}' on type "
                f"'Microsoft.Dynamics.CRM.{type_name}'."
            )
    keep = {"@odata.type", "MetadataId", *wanted}
    return {k: v for k, v in row.items() if k in keep}


def _tracked(store: Any, org: str, entity: EntityDef) -> bool:
    """The table's change tracking setting (`security.py`; the default set without a policy)."""
    policy = security.policy_for(store)
    if policy is None:
        return entity.entity_set in security.DEFAULT_TRACKED
    return policy.change_tracking(org, entity.entity_set)


def _definition(store: Any, org: str, entity: EntityDef) -> dict[str, Any]:
    return {
        "MetadataId": _metadata_id(entity.logical_name),
        "LogicalName": entity.logical_name,
        "EntitySetName": entity.entity_set,
        "PrimaryIdAttribute": entity.key,
        "IsActivity": entity.key == "activityid",
        "ChangeTrackingEnabled": _tracked(store, org, entity),
    }


_COLLECTION_OPTIONS = {"$select", "$filter"}


def entity_definitions(
    api_url: str, store: Any, org: str, params: dict[str, str]
) -> dict[str, Any]:
    """The JSON of `EntityDefinitions?$select=…&$filter=…`: every matching table at once (no
    paging, as the docs say). Options other than `$select` and `$filter` are refused."""
    unsupported = sorted(set(params) - _COLLECTION_OPTIONS)
    if unsupported:
        raise bad_request(
            f"The query parameter '{unsupported[0]}' is not supported for table definitions."
        )
    rows = [_definition(store, org, entity) for entity in ENTITIES.values()]
    if params.get("$filter"):
        predicate = parse_filter(params["$filter"], ENTITY_METADATA)
        rows = [row for row in rows if predicate(row)]
    select = params.get("$select")
    rows.sort(key=lambda r: str(r["LogicalName"]))
    shape = "(" + "".join(select.split()) + ")" if select else ""
    return {
        "@odata.context": f"{api_url}$metadata#EntityDefinitions{shape}",
        "value": [_select(row, select, "EntityMetadata") for row in rows],
    }


def entity_metadata(
    api_url: str,
    logical_name: str,
    attributes: bool,
    cast: str | None,
    select: str | None,
    store: Any = None,
    org: str = "",
) -> dict[str, Any]:
    """The JSON of `EntityDefinitions(LogicalName='…')[/Attributes[/<cast>]]`."""
    entity = _entity(logical_name)
    base = f"{api_url}$metadata#EntityDefinitions('{logical_name}')"
    if not attributes:
        row = {
            "@odata.context": f"{api_url}$metadata#EntityDefinitions/$entity",
            **_definition(store, org, entity),
        }
        return _select(row, select, "EntityMetadata") | {"@odata.context": row["@odata.context"]}
    rows = [_attribute(entity, column, kind) for column, kind in entity.columns.items()]
    type_name = "AttributeMetadata"
    if cast:
        rows = [r for r in rows if r["@odata.type"] == f"#Microsoft.Dynamics.CRM.{cast}"]
        if cast not in {t for _, t in (*_TYPES.values(), *_SPECIAL.values())} | {
            "LookupAttributeMetadata"
        }:
            raise ODataError(404, errors.SYNTAX, f"Resource not found for the segment '{cast}'.")
        type_name = cast
    rows.sort(key=lambda r: str(r["LogicalName"]))
    context = f"{base}/Attributes" + (f"/Microsoft.Dynamics.CRM.{cast}" if cast else "")
    return {
        "@odata.context": context,
        "value": [_select(r, select, type_name) for r in rows],
    }
