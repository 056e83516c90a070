"""What the offline editor needs to know of a table: its columns' labels (in the user's
language), types, whether required, option-set labels and lookup targets.

Read as powerapps-docs `webapi/query-metadata-web-api.md` shows: `EntityDefinitions` filtered by
`EntitySetName` for the logical name and primary id, then `…/Attributes?$select=…` and the casts
to `PicklistAttributeMetadata` (with `$expand=OptionSet`) and `LookupAttributeMetadata`
(`Targets`), and `BooleanAttributeMetadata` (`$expand=OptionSet`: TrueOption/FalseOption, a
two-option column's own words). `DisplayName.UserLocalizedLabel` is the label in the signed-in
user's language (the sandbox serves both English and Japanese, by usersettings.uilanguageid).
What a service does not serve (the sandbox has no labels) falls back to the logical name, so
the editor still works; the column's validity for create/update always comes from the service.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync.crm.client import DataverseClient, query_string
from sync.crm.entities import primary_key_for
from sync.sides import Invalid, NotFound

log = logging.getLogger(__name__)

TYPES = {
    "String": "text",
    "Memo": "memo",
    "Integer": "int",
    "BigInt": "int",
    "Decimal": "number",
    "Double": "number",
    "Money": "money",
    "Boolean": "bool",
    "DateTime": "datetime",
    "Picklist": "option",
    "State": "option",
    "Status": "option",
    "Lookup": "lookup",
    "Customer": "lookup",
    "Owner": "lookup",
}
"""AttributeType → the editor's field type; other types (ids, virtual, party lists) are not kept."""
REQUIRED = ("SystemRequired", "ApplicationRequired")
SYSTEM_COLUMNS = frozenset(
    {"versionnumber", "importsequencenumber", "overriddencreatedon", "timezoneruleversionnumber",
     "utcconversiontimezonecode", "exchangerate"}
)  # fmt: skip


@dataclass(frozen=True)
class TableDescription:
    logical_name: str
    key: str
    columns: list[dict[str, Any]]
    """[{name, label, type, required, create, update, options: [[value, label]], targets}]"""


def _label(value: Any) -> str | None:
    if isinstance(value, Mapping):
        local = value.get("UserLocalizedLabel")
        if isinstance(local, Mapping) and local.get("Label"):
            return str(local["Label"])
    return None


def _try(client: DataverseClient, path: str) -> list[dict[str, Any]] | None:
    """The `value` of a metadata read, or None when the service does not serve it."""
    try:
        return list(client.get_json(path).get("value", []))
    except (Invalid, NotFound) as error:
        log.info("table metadata %s not served: %s", path, error.message)
        return None


def entity_names(client: DataverseClient, entity_set: str) -> tuple[str, str]:
    """(logical name, primary id column) of an entity set."""
    found = _try(
        client,
        "EntityDefinitions"
        + query_string(
            select=["LogicalName", "EntitySetName", "PrimaryIdAttribute"],
            filter=f"EntitySetName eq '{entity_set}'",
        ),
    )
    if found:
        return str(found[0]["LogicalName"]), str(found[0].get("PrimaryIdAttribute") or "")
    key = primary_key_for(entity_set)
    return key.removesuffix("id"), key


def read_table(client: DataverseClient, entity_set: str) -> TableDescription:
    logical, key = entity_names(client, entity_set)
    key = key or primary_key_for(entity_set)
    base = f"EntityDefinitions(LogicalName='{logical}')/Attributes"
    basic = ["LogicalName", "AttributeType", "IsValidForCreate", "IsValidForUpdate"]
    attributes = _try(client, base + query_string(select=[*basic, "DisplayName", "RequiredLevel"]))
    if attributes is None:
        attributes = client.get_json(base + query_string(select=basic)).get("value", [])
    options: dict[str, list[list[Any]]] = {}
    for cast in ("Picklist", "State", "Status"):
        # a choice column on a global choice has its options in GlobalOptionSet, not OptionSet
        expand = "OptionSet($select=Options)" + (
            ",GlobalOptionSet($select=Options)" if cast == "Picklist" else ""
        )
        found = _try(
            client,
            f"{base}/Microsoft.Dynamics.CRM.{cast}AttributeMetadata?$select=LogicalName"
            f"&$expand={expand}",
        )
        for attribute in found or []:
            chosen = attribute.get("OptionSet") or attribute.get("GlobalOptionSet") or {}
            choices = chosen.get("Options") or []
            options[str(attribute["LogicalName"])] = [
                [o.get("Value"), _label(o.get("Label")) or str(o.get("Value"))] for o in choices
            ]
    two_options: dict[str, tuple[str | None, str | None]] = {}
    found = _try(
        client,
        f"{base}/Microsoft.Dynamics.CRM.BooleanAttributeMetadata?$select=LogicalName"
        "&$expand=OptionSet($select=TrueOption,FalseOption)",
    )
    for attribute in found or []:  # a two-option column's own words ("Do Not Allow"/"Allow")
        chosen = attribute.get("OptionSet") or {}
        two_options[str(attribute["LogicalName"])] = (
            _label((chosen.get("TrueOption") or {}).get("Label")),
            _label((chosen.get("FalseOption") or {}).get("Label")),
        )
    targets: dict[str, list[str]] = {}
    found = _try(
        client,
        f"{base}/Microsoft.Dynamics.CRM.LookupAttributeMetadata"
        + query_string(select=["LogicalName", "Targets"]),
    )
    for attribute in found or []:
        targets[str(attribute["LogicalName"])] = [str(t) for t in attribute.get("Targets") or []]
    columns = []
    for attribute in attributes:
        name = str(attribute["LogicalName"])
        kind = TYPES.get(str(attribute.get("AttributeType")))
        if kind is None or name == key or name in SYSTEM_COLUMNS:
            continue
        required = (attribute.get("RequiredLevel") or {}).get("Value") in REQUIRED
        columns.append(
            {
                "name": f"_{name}_value" if kind == "lookup" else name,
                "attribute": name,
                "label": _label(attribute.get("DisplayName")) or name,
                "type": kind,
                "required": bool(required),
                "create": attribute.get("IsValidForCreate") is not False,
                "update": attribute.get("IsValidForUpdate") is not False,
                "options": options.get(name, []),
                "targets": targets.get(name, []),
                "true_label": two_options.get(name, (None, None))[0],
                "false_label": two_options.get(name, (None, None))[1],
            }
        )
    columns.sort(key=lambda c: (not c["required"], str(c["label"]).casefold()))
    return TableDescription(logical, key, columns)
