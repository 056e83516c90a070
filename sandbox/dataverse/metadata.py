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

[offline2] Tables and columns carry `DisplayName` (a Label: LocalizedLabels in English and
Japanese, UserLocalizedLabel in the caller's UI language, usersettings.uilanguageid: 1033 or
1041; `metadata_labels.py`), columns `RequiredLevel` (AttributeRequiredLevelManagedProperty:
{"Value": "None" | "SystemRequired" | "ApplicationRequired" | "Recommended", …}); the casts to
Picklist/State/Status/BooleanAttributeMetadata take `$expand=OptionSet` (and GlobalOptionSet,
null here: no global choices) with `$select` inside, as "Retrieving attributes" on the same page
shows; a two-option column's OptionSet has TrueOption and FalseOption
(BooleanOptionSetMetadata). `$expand` on the uncast Attributes is refused ("you can't include
the OptionSet or GlobalOptionSet collection-valued navigation properties").
"""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.dataverse import errors, security
from sandbox.dataverse import metadata_labels as labels
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


_APPLICATION_REQUIRED = {
    "contact": {"lastname"},
    "account": {"name"},
    "lead": {"subject", "lastname"},
    "opportunity": {"name"},
    "task": {"subject"},
    "appointment": {"subject"},
}
"""The columns the entity reference pages give RequiredLevel ApplicationRequired (business
required); the primary key and the owner are SystemRequired."""


def _required(entity: EntityDef, name: str) -> dict[str, Any]:
    if name in (entity.key, "ownerid"):
        level = "SystemRequired"
    elif name in _APPLICATION_REQUIRED.get(entity.logical_name, ()):
        level = "ApplicationRequired"
    else:
        level = "None"
    return {
        "Value": level,
        "CanBeChanged": level != "SystemRequired",
        "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
    }


_SYSTEM_SET = frozenset({"createdon", "modifiedon", "versionnumber"})
"""[offline2] Set by the service on every table (IsValidForCreate and IsValidForUpdate False on
the entity reference pages, e.g. contact.md ModifiedOn, VersionNumber)."""
_CREATE_ONLY = frozenset({"overriddencreatedon", "importsequencenumber"})
"""Valid for create only (the same pages: IsValidForUpdate False)."""


def language_of(store: Any, org: str, user_id: str | None) -> int:
    """The caller's UI language (usersettings.uilanguageid): 1041 for Japanese, else 1033."""
    if store is None or not user_id:
        return labels.ENGLISH
    settings = store.table(org, "usersettingscollection").get(user_id)
    code = settings.values.get("uilanguageid") if settings is not None else None
    return labels.JAPANESE if code == labels.JAPANESE else labels.ENGLISH


def _attribute(
    entity: EntityDef, column: str, kind: str, language: int = labels.ENGLISH
) -> dict[str, Any]:
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
        "IsValidForCreate": entity.valid_for_create(name)
        and not (lookup and lookup.readonly)
        and name not in _SYSTEM_SET,
        "IsValidForUpdate": entity.valid_for_update(name)
        and not (lookup and lookup.readonly)
        and name not in _SYSTEM_SET | _CREATE_ONLY,
        "IsValidForRead": True,
        "DisplayName": labels.label(
            labels.column_texts(entity.logical_name, name), language, entity.logical_name, name
        ),
        "RequiredLevel": _required(entity, name),
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


def _definition(
    store: Any, org: str, entity: EntityDef, language: int = labels.ENGLISH
) -> dict[str, Any]:
    return {
        "MetadataId": _metadata_id(entity.logical_name),
        "LogicalName": entity.logical_name,
        "DisplayName": labels.label(
            labels.table_texts(entity.logical_name), language, entity.logical_name
        ),
        "EntitySetName": entity.entity_set,
        "PrimaryIdAttribute": entity.key,
        "IsActivity": entity.key == "activityid",
        "ChangeTrackingEnabled": _tracked(store, org, entity),
    }


_COLLECTION_OPTIONS = {"$select", "$filter"}


def entity_definitions(
    api_url: str, store: Any, org: str, params: dict[str, str], user_id: str | None = None
) -> dict[str, Any]:
    """The JSON of `EntityDefinitions?$select=…&$filter=…`: every matching table at once (no
    paging, as the docs say). Options other than `$select` and `$filter` are refused."""
    unsupported = sorted(set(params) - _COLLECTION_OPTIONS)
    if unsupported:
        raise bad_request(
            f"The query parameter '{unsupported[0]}' is not supported for table definitions."
        )
    language = language_of(store, org, user_id)
    rows = [_definition(store, org, entity, language) for entity in ENTITIES.values()]
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
    expand: str | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """The JSON of `EntityDefinitions(LogicalName='…')[/Attributes[/<cast>]]`."""
    entity = _entity(logical_name)
    language = language_of(store, org, user_id)
    base = f"{api_url}$metadata#EntityDefinitions('{logical_name}')"
    if expand and cast not in _OPTION_CASTS:
        raise bad_request(
            f"Could not find a property named '{_expanded(expand)[0][0]}' on type "
            f"'Microsoft.Dynamics.CRM.{cast or ('AttributeMetadata' if attributes else 'EntityMetadata')}'."
        )
    if not attributes:
        row = {
            "@odata.context": f"{api_url}$metadata#EntityDefinitions/$entity",
            **_definition(store, org, entity, language),
        }
        return _select(row, select, "EntityMetadata") | {"@odata.context": row["@odata.context"]}
    rows = [_attribute(entity, column, kind, language) for column, kind in entity.columns.items()]
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
    shown = [_select(r, select, type_name) for r in rows]
    if expand:
        kinds = {_attribute_name(c): k for c, k in entity.columns.items()}
        for row in shown:
            for prop, inner in _expanded(expand):
                row[prop] = _option_set(
                    entity, str(row["LogicalName"]), kinds, cast or "", prop, inner, language
                )
    return {"@odata.context": context, "value": shown}


# --- [offline2] option sets ($expand=OptionSet on the choice and two-option casts) ----------

_OPTION_CASTS = {
    "PicklistAttributeMetadata",
    "StateAttributeMetadata",
    "StatusAttributeMetadata",
    "BooleanAttributeMetadata",
}
_OPTION_SET_PROPERTIES = {"OptionSet", "GlobalOptionSet"}


def _attribute_name(column: str) -> str:
    return column[1:-6] if column.startswith("_") and column.endswith("_value") else column


def _expanded(expand: str) -> list[tuple[str, str | None]]:
    """`OptionSet($select=Options),GlobalOptionSet` → [(property, inner $select or None)]."""
    out: list[tuple[str, str | None]] = []
    depth, start = 0, 0
    parts = []
    for i, char in enumerate(expand + ","):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(expand[start:i].strip())
            start = i + 1
    for part in filter(None, parts):
        name, _, rest = part.partition("(")
        inner = None
        for option in rest.rstrip(")").split(";"):
            key, _, value = option.partition("=")
            if key.strip() == "$select":
                inner = value.strip()
            elif key.strip():
                raise bad_request(f"The query option '{key.strip()}' is not supported here.")
        out.append((name.strip(), inner))
    return out


def _option(value: int, texts: tuple[str, str], language: int, *key: str) -> dict[str, Any]:
    return {
        "Value": value,
        "Label": labels.label(texts, language, *key, str(value)),
        "Description": {"LocalizedLabels": [], "UserLocalizedLabel": None},
        "Color": None,
        "IsManaged": True,
        "MetadataId": None,
        "HasChanged": None,
    }


def _option_set(
    entity: EntityDef,
    name: str,
    kinds: dict[str, str],
    cast: str,
    prop: str,
    inner: str | None,
    language: int,
) -> dict[str, Any] | None:
    """The expanded OptionSet of one column (GlobalOptionSet: null, no global choices here)."""
    if prop not in _OPTION_SET_PROPERTIES:
        raise bad_request(
            f"Could not find a property named '{prop}' on type 'Microsoft.Dynamics.CRM.{cast}'."
        )
    if prop == "GlobalOptionSet":
        return None
    table = entity.logical_name
    boolean = cast == "BooleanAttributeMetadata"
    found = labels.options(table, name, "bool" if boolean else kinds.get(name, "pick")) or []
    key = (table, name)
    body: dict[str, Any] = {
        "MetadataId": _metadata_id(table, name, "optionset"),
        "Name": f"{table}_{name}",
        "IsGlobal": False,
        "OptionSetType": "Boolean" if boolean else cast.removesuffix("AttributeMetadata"),
        "DisplayName": labels.label(labels.column_texts(table, name), language, *key, "set"),
    }
    if boolean:
        (true_value, *true_texts), (false_value, *false_texts) = found
        body["TrueOption"] = _option(true_value, tuple(true_texts), language, *key)  # type: ignore[arg-type]
        body["FalseOption"] = _option(false_value, tuple(false_texts), language, *key)  # type: ignore[arg-type]
    else:
        body["Options"] = [_option(v, (en, ja), language, *key) for v, en, ja in found]
    if inner:
        wanted = {w.strip() for w in inner.split(",") if w.strip()}
        unknown = wanted - set(body)
        if unknown:
            raise bad_request(
                f"Could not find a property named '{sorted(unknown)[0]}' on type "
                "'Microsoft.Dynamics.CRM.OptionSetMetadataBase'."
            )
        body = {k: v for k, v in body.items() if k in wanted or k == "MetadataId"}
    return body
