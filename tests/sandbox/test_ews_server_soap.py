"""Sandbox EWS at the SOAP level: UpdateItem field operations and conflict modes, per-item
failures that change nothing, version and connection faults."""

from __future__ import annotations

import pytest
import requests
from lxml import etree

from sandbox.faults import Fault
from tests.sandbox.ews_helpers import post_soap

NS = {
    "s": "http://schemas.xmlsoap.org/soap/envelope/",
    "t": "http://schemas.microsoft.com/exchange/services/2006/types",
    "m": "http://schemas.microsoft.com/exchange/services/2006/messages",
}
HEAD = (
    '<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{s}" xmlns:t="{t}" xmlns:m="{m}">'
    '<s:Header><t:RequestServerVersion Version="{v}"/></s:Header><s:Body>'
)


def call(server, body: str, version: str = "Exchange2016"):
    head = HEAD.format(v=version, **NS)
    response = post_soap(server, (head + body + "</s:Body></s:Envelope>").encode())
    return response.status_code, etree.fromstring(response.content)


def codes(root) -> list[str]:
    return [c.text for c in root.iterfind(".//m:ResponseCode", NS)]


def create_contact(server, given: str) -> tuple[str, str]:
    status, root = call(
        server,
        "<m:CreateItem><m:Items><t:Contact><t:Categories><t:String>A</t:String></t:Categories>"
        f"<t:GivenName>{given}</t:GivenName><t:Surname>Doe</t:Surname>"
        "<t:SomeFutureField>kept</t:SomeFutureField></t:Contact></m:Items></m:CreateItem>",
    )
    assert status == 200 and codes(root) == ["NoError"]
    item_id = root.find(".//t:ItemId", NS)
    return item_id.get("Id"), item_id.get("ChangeKey")


def get_contact(server, item_id: str):
    status, root = call(
        server,
        "<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape>"
        f'<m:ItemIds><t:ItemId Id="{item_id}"/></m:ItemIds></m:GetItem>',
    )
    assert status == 200
    return root


def update(server, item_id, change_key, updates, resolution="AutoResolve"):
    key = f' ChangeKey="{change_key}"' if change_key else ""
    return call(
        server,
        f'<m:UpdateItem ConflictResolution="{resolution}"><m:ItemChanges><t:ItemChange>'
        f'<t:ItemId Id="{item_id}"{key}/><t:Updates>{updates}</t:Updates>'
        "</t:ItemChange></m:ItemChanges></m:UpdateItem>",
    )


SET_SURNAME = (
    '<t:SetItemField><t:FieldURI FieldURI="contacts:Surname"/>'
    "<t:Contact><t:Surname>{}</t:Surname></t:Contact></t:SetItemField>"
)


def test_unknown_fields_are_echoed(server):
    item_id, _ = create_contact(server, "Echo")
    root = get_contact(server, item_id)
    assert root.findtext(".//t:SomeFutureField", namespaces=NS) == "kept"


def test_append_and_delete_item_field(server):
    item_id, key = create_contact(server, "Ann")
    status, root = update(
        server,
        item_id,
        key,
        '<t:AppendToItemField><t:FieldURI FieldURI="item:Categories"/><t:Contact><t:Categories>'
        "<t:String>B</t:String></t:Categories></t:Contact></t:AppendToItemField>"
        '<t:DeleteItemField><t:FieldURI FieldURI="contacts:Surname"/></t:DeleteItemField>',
    )
    assert codes(root) == ["NoError"]
    new_key = root.find(".//t:ItemId", NS).get("ChangeKey")
    assert new_key != key
    item = get_contact(server, item_id)
    assert [s.text for s in item.iterfind(".//t:Categories/t:String", NS)] == ["A", "B"]
    assert item.find(".//t:Surname", NS) is None


def test_conflict_resolution_modes(server):
    item_id, old_key = create_contact(server, "Bo")
    _, root = update(server, item_id, old_key, SET_SURNAME.format("First"))
    assert codes(root) == ["NoError"]
    # NeverOverwrite with an old key fails even for another field.
    other = (
        '<t:SetItemField><t:FieldURI FieldURI="contacts:JobTitle"/>'
        "<t:Contact><t:JobTitle>Boss</t:JobTitle></t:Contact></t:SetItemField>"
    )
    _, root = update(server, item_id, old_key, other, "NeverOverwrite")
    assert codes(root) == ["ErrorIrresolvableConflict"]
    assert root.find(".//m:UpdateItemResponseMessage", NS).get("ResponseClass") == "Error"
    # AutoResolve fails on the same field, AlwaysOverwrite wins.
    _, root = update(server, item_id, old_key, SET_SURNAME.format("Second"))
    assert codes(root) == ["ErrorIrresolvableConflict"]
    assert get_contact(server, item_id).findtext(".//t:Surname", namespaces=NS) == "First"
    _, root = update(server, item_id, old_key, SET_SURNAME.format("Third"), "AlwaysOverwrite")
    assert codes(root) == ["NoError"]
    assert get_contact(server, item_id).findtext(".//t:Surname", namespaces=NS) == "Third"


def test_a_failing_item_changes_nothing(server):
    item_id, key = create_contact(server, "Cy")
    bad = SET_SURNAME.format("Changed") + (
        '<t:SetItemField><t:FieldURI FieldURI="contacts:JobTitle"/>'
        "<t:Contact><t:Surname>wrong element</t:Surname></t:Contact></t:SetItemField>"
    )
    _, root = update(server, item_id, key, bad)
    assert codes(root) == ["ErrorInvalidPropertySet"]
    item = get_contact(server, item_id)
    assert item.findtext(".//t:Surname", namespaces=NS) == "Doe"
    assert item.find(".//t:ItemId", NS).get("ChangeKey") == key
    # In a batch, the good item is applied and the missing one reported.
    status, root = call(
        server,
        '<m:DeleteItem DeleteType="HardDelete"><m:ItemIds>'
        f'<t:ItemId Id="{item_id}"/><t:ItemId Id="AAAAbm90aGVyZQ=="/></m:ItemIds></m:DeleteItem>',
    )
    assert codes(root) == ["NoError", "ErrorItemNotFound"]


def test_invalid_server_version_and_bad_max_changes(server):
    status, root = call(server, "<m:GetFolder/>", version="Exchange1999")
    assert status == 500
    assert "ErrorInvalidServerVersion" in root.findtext(".//faultcode")
    status, root = call(
        server,
        "<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>"
        '<m:SyncFolderId><t:DistinguishedFolderId Id="inbox"/></m:SyncFolderId>'
        "<m:MaxChangesReturned>513</m:MaxChangesReturned></m:SyncFolderItems>",
    )
    assert status == 500 and "ErrorSchemaValidation" in root.findtext(".//faultcode")


def test_dropped_connection_fault(server):
    server.faults.set(Fault(kind="drop", every=1, times=1, match="GetFolder"))
    try:
        with pytest.raises(requests.ConnectionError):
            call(
                server,
                "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>"
                '<m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>',
            )
        assert server.log.count(target="GetFolder", status=0) == 1
    finally:
        server.faults.clear()
