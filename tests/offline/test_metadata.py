"""The editor's table metadata as a real organization serves it: labels in the user's language
(`DisplayName.UserLocalizedLabel`), required level, choice labels (from `OptionSet`, or
`GlobalOptionSet` for a column on a global choice) and lookup `Targets` (powerapps-docs
webapi/query-metadata-web-api.md). The sandbox serves none of these, so a stub transport
answers here; the sandbox path (names only) is covered by test_go_offline_online.py."""

from __future__ import annotations

from typing import Any

import httpx

from sync.crm.client import DataverseClient
from sync.offline.metadata import read_table

API = "http://127.0.0.1/org/api/data/v9.2/"


def _label(text: str) -> dict[str, Any]:
    return {"LocalizedLabels": [{"Label": text, "LanguageCode": 1041}],
            "UserLocalizedLabel": {"Label": text, "LanguageCode": 1041}}  # fmt: skip


def _answer(request: httpx.Request) -> httpx.Response:
    path = request.url.path + "?" + request.url.query.decode()
    if path.startswith("/org/api/data/v9.2/EntityDefinitions?"):
        value = [{"LogicalName": "account", "EntitySetName": "accounts",
                  "PrimaryIdAttribute": "accountid"}]  # fmt: skip
    elif "PicklistAttributeMetadata" in path:
        assert "GlobalOptionSet" in path
        value = [{"LogicalName": "industrycode", "OptionSet": None,
                  "GlobalOptionSet": {"Options": [{"Value": 1, "Label": _label("会計")}]}}]  # fmt: skip
    elif "StatusAttributeMetadata" in path or "StateAttributeMetadata" in path:
        value = []
    elif "LookupAttributeMetadata" in path:
        value = [{"LogicalName": "primarycontactid", "Targets": ["contact"]}]
    else:
        value = [
            {"LogicalName": "accountid", "AttributeType": "Uniqueidentifier"},
            {"LogicalName": "name", "AttributeType": "String", "DisplayName": _label("取引先企業名"),
             "RequiredLevel": {"Value": "ApplicationRequired"}, "IsValidForCreate": True,
             "IsValidForUpdate": True},
            {"LogicalName": "industrycode", "AttributeType": "Picklist",
             "DisplayName": _label("業種"), "RequiredLevel": {"Value": "None"}},
            {"LogicalName": "primarycontactid", "AttributeType": "Lookup",
             "DisplayName": _label("取引先担当者責任者")},
            {"LogicalName": "createdon", "AttributeType": "DateTime", "IsValidForCreate": False,
             "IsValidForUpdate": False},
        ]  # fmt: skip
    return httpx.Response(200, json={"value": value})


def test_labels_required_choices_and_targets() -> None:
    with DataverseClient(API, lambda: "t", transport=httpx.MockTransport(_answer)) as client:
        table = read_table(client, "accounts")
    assert (table.logical_name, table.key) == ("account", "accountid")
    columns = {c["name"]: c for c in table.columns}
    assert "accountid" not in columns  # the key is not a form field
    assert columns["name"]["label"] == "取引先企業名" and columns["name"]["required"] is True
    assert table.columns[0]["name"] == "name"  # required fields first
    assert columns["industrycode"]["options"] == [[1, "会計"]]
    lookup = columns["_primarycontactid_value"]
    assert lookup["type"] == "lookup" and lookup["targets"] == ["contact"]
    assert columns["createdon"]["create"] is False and columns["createdon"]["update"] is False
