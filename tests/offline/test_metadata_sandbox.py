"""Issue 12 item 2: the sandbox serves table definitions as the Web API does, and the offline
editor's metadata read takes labels and choices in the user's language from them.

powerapps-docs webapi/query-metadata-web-api.md: `DisplayName` is a Label (LocalizedLabels,
UserLocalizedLabel: "the label for the language of the current user", Label.UserLocalizedLabel);
`RequiredLevel` an AttributeRequiredLevelManagedProperty; choices come by casting Attributes to
PicklistAttributeMetadata (and State/Status/Boolean) with `$expand=OptionSet`; the uncast
Attributes cannot expand OptionSet. The user's language is usersettings.uilanguageid (1033,
1041)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sync.crm import metadata as crm_metadata
from sync.offline.metadata import read_table
from tests.offline.conftest import Sandbox


@pytest.fixture
def japanese(running: Sandbox, me: str) -> Iterator[None]:
    """Alice's UI language set to Japanese (1041) for the test, then back to English."""
    url = f"{running.api}usersettingscollection({me})"
    with running.http() as http:
        assert http.patch(url, json={"uilanguageid": 1041}).status_code == 204
        yield
        assert http.patch(url, json={"uilanguageid": 1033}).status_code == 204


def _attributes(running: Sandbox, path: str, **params: str) -> httpx.Response:
    with running.http() as http:
        return http.get(f"{running.api}EntityDefinitions(LogicalName='contact')/{path}",
                        params=params)  # fmt: skip


def test_labels_in_the_callers_language_with_both_localized(running: Sandbox) -> None:
    answer = _attributes(
        running, "Attributes", **{"$select": "LogicalName,DisplayName,RequiredLevel"}
    )
    rows = {r["LogicalName"]: r for r in answer.json()["value"]}
    name = rows["lastname"]["DisplayName"]
    assert name["UserLocalizedLabel"]["Label"] == "Last Name"
    assert name["UserLocalizedLabel"]["LanguageCode"] == 1033
    assert {(x["LanguageCode"], x["Label"]) for x in name["LocalizedLabels"]} == {
        (1033, "Last Name"), (1041, "姓")}  # fmt: skip
    assert rows["lastname"]["RequiredLevel"]["Value"] == "ApplicationRequired"
    assert rows["ownerid"]["RequiredLevel"]["Value"] == "SystemRequired"
    assert rows["jobtitle"]["RequiredLevel"]["Value"] == "None"
    assert all(r["DisplayName"]["UserLocalizedLabel"]["Label"] for r in rows.values())


@pytest.mark.usefixtures("japanese")
def test_japanese_user_gets_japanese_labels_and_choices(running: Sandbox) -> None:
    answer = _attributes(running, "Attributes", **{"$select": "LogicalName,DisplayName"})
    rows = {r["LogicalName"]: r for r in answer.json()["value"]}
    assert rows["lastname"]["DisplayName"]["UserLocalizedLabel"] == {
        **rows["lastname"]["DisplayName"]["UserLocalizedLabel"],
        "Label": "姓",
        "LanguageCode": 1041,
    }
    assert rows["address1_city"]["DisplayName"]["UserLocalizedLabel"]["Label"] == "住所 1: 市区町村"
    picklists = _attributes(
        running, "Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        **{"$select": "LogicalName", "$expand": "OptionSet($select=Options),GlobalOptionSet"},
    ).json()["value"]  # fmt: skip
    gender = next(r for r in picklists if r["LogicalName"] == "gendercode")
    assert gender["GlobalOptionSet"] is None
    assert [(o["Value"], o["Label"]["UserLocalizedLabel"]["Label"])
            for o in gender["OptionSet"]["Options"]] == [(1, "男性"), (2, "女性")]  # fmt: skip
    booleans = _attributes(
        running, "Attributes/Microsoft.Dynamics.CRM.BooleanAttributeMetadata",
        **{"$select": "LogicalName", "$expand": "OptionSet"},
    ).json()["value"]  # fmt: skip
    email = next(r for r in booleans if r["LogicalName"] == "donotemail")["OptionSet"]
    assert email["TrueOption"]["Value"] == 1 and email["FalseOption"]["Value"] == 0
    assert email["TrueOption"]["Label"]["UserLocalizedLabel"]["Label"] == "許可しない"
    with running.client() as client:
        table = read_table(client, "contacts")
    columns = {c["name"]: c for c in table.columns}
    assert columns["lastname"]["label"] == "姓" and columns["lastname"]["required"]
    assert columns["statecode"]["options"] == [[0, "アクティブ"], [1, "非アクティブ"]]
    assert columns["donotemail"]["true_label"] == "許可しない"
    assert columns["_ownerid_value"]["label"] == "所有者"
    with running.client() as client:  # the messaging side's definitions carry the label too
        crm_metadata.forget(client.api_url)
        try:
            table_def = crm_metadata.Metadata(client).table("contact")
        finally:
            crm_metadata.forget(client.api_url)
    assert table_def.columns["lastname"].label == "姓"
    assert table_def.columns["modifiedon"].valid_for_update is False  # contact.md: not writable


def test_option_sets_only_on_the_casts(running: Sandbox) -> None:
    refused = _attributes(running, "Attributes", **{"$expand": "OptionSet"})
    assert refused.status_code == 400
    wrong = _attributes(
        running, "Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        **{"$expand": "Nothing"},
    )  # fmt: skip
    assert wrong.status_code == 400
