"""Sandbox EWS: auth, SOAP envelope and faults, folder operations — driven by exchangelib."""

from __future__ import annotations

import pytest
import requests
from exchangelib import FolderCollection
from exchangelib.errors import (
    ErrorDeleteDistinguishedFolder,
    ErrorSchemaValidation,
    UnauthorizedError,
)
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.folders import Folder
from lxml import etree

from sandbox.ews.testing import account
from tests.sandbox.ews_helpers import ALICE, post_soap

T = "http://schemas.microsoft.com/exchange/services/2006/types"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


GET_INBOX = b"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
 <s:Header><t:RequestServerVersion Version="Exchange2013"/></s:Header>
 <s:Body><m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape>
  <m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder></s:Body>
</s:Envelope>"""


def test_basic_auth_and_distinguished_folders(alice, server):
    assert alice.root.name == "root"
    names = {
        alice.inbox.name,
        alice.sent.name,
        alice.trash.name,
        alice.drafts.name,
        alice.calendar.name,
        alice.contacts.name,
        alice.tasks.name,
        alice.junk.name,
        alice.outbox.name,
    }
    assert names == {
        "Inbox", "Sent Items", "Deleted Items", "Drafts", "Calendar", "Contacts", "Tasks",
        "Junk Email", "Outbox",
    }  # fmt: skip
    assert server.log.count(service="ews", user=ALICE, target="GetFolder") >= 1


def test_server_version_info_in_every_response(server):
    response = post_soap(server, GET_INBOX)
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    info = root.find(f"{{{SOAP}}}Header/{{{T}}}ServerVersionInfo")
    assert info is not None and info.get("MajorVersion") == "15"
    assert info.get("Version") == "V2017_07_11"


def test_bearer_token_auth(server):
    token = server.tokens.static_token("bob@contoso.example")
    bob = account(server, "bob@contoso.example", token=token)
    assert bob.inbox.name == "Inbox"
    assert server.log.count(user="bob@contoso.example", target="GetFolder") >= 1


def test_wrong_password_is_unauthorized(server):
    with pytest.raises(UnauthorizedError):
        account(server, ALICE, password="wrong").inbox.name  # noqa: B018
    response = post_soap(server, GET_INBOX, auth=(ALICE, "nope"))
    assert response.status_code == 401
    assert "Basic" in response.headers["WWW-Authenticate"]
    assert "Bearer" in response.headers["WWW-Authenticate"]


def test_malformed_soap_is_a_fault_not_a_crash(server):
    response = post_soap(server, b"<s:Envelope xmlns:s='x'><oops></s:Envelope>")
    assert response.status_code == 500
    root = etree.fromstring(response.content)
    fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault is not None
    assert "ErrorSchemaValidation" in fault.findtext("faultcode")
    assert post_soap(server, GET_INBOX).status_code == 200  # still serving


def test_unknown_operation_is_an_error(server):
    body = GET_INBOX.replace(b"m:GetFolder>", b"m:FrobnicateFolder>")
    response = post_soap(server, body)
    assert response.status_code == 500
    assert b"ErrorSchemaValidation" in response.content
    assert b"FrobnicateFolder" in response.content


def test_unknown_operation_through_exchangelib(alice):
    from exchangelib.services.common import EWSAccountService
    from exchangelib.util import create_element

    class Frobnicate(EWSAccountService):
        SERVICE_NAME = "Frobnicate"

        def call(self):
            return self._get_elements(payload=create_element("m:Frobnicate"))

    with pytest.raises(ErrorSchemaValidation):
        list(Frobnicate(account=alice).call())


class Claim(ExtendedProperty):
    property_set_id = "c11ff724-aa03-4555-9952-8fa248a11c3e"
    property_name = "claim"
    property_type = "String"


def test_create_find_update_delete_folder(alice, server):
    Folder.register("claim", Claim)
    try:
        folder = Folder(parent=alice.msg_folder_root, name="Sync state", claim="org-1")
        folder.save()
        found = [f.name for f in alice.msg_folder_root.children]
        assert "Sync state" in found
        deep = FolderCollection(account=alice, folders=[alice.root]).find_folders()
        assert "Sync state" in {f.name for f in deep}
        fresh = alice.root.get_folder(folder)
        assert fresh.claim == "org-1"
        old_key = fresh.changekey
        fresh.claim = "org-2"
        fresh.save(update_fields=["claim"])
        assert fresh.changekey != old_key
        # A second writer with the old change key loses (the "only one" claim), with the code
        # the EWS reference gives UpdateFolder (ResponseCode: ErrorChangeKeyRequiredFor...).
        from exchangelib.errors import ErrorChangeKeyRequiredForWriteOperations

        stale = alice.root.get_folder(folder)
        stale.changekey = old_key
        stale.claim = "org-3"
        with pytest.raises(ErrorChangeKeyRequiredForWriteOperations):
            stale.save(update_fields=["claim"])
        stored = server.mailbox(ALICE).folders[folder.id]
        assert [v.findtext(f"{{{T}}}Value") for v in stored.ext.values()] == ["org-2"]
        fresh.delete()
        assert "Sync state" not in [f.name for f in alice.msg_folder_root.children]
    finally:
        Folder.deregister("claim")
    with pytest.raises(ErrorDeleteDistinguishedFolder):
        alice.inbox.delete()


def test_sync_folder_hierarchy(alice):
    root = alice.msg_folder_root
    changes = list(root.sync_hierarchy())
    assert any(kind == "create" and f.name == "Inbox" for kind, f in changes)
    state = root.folder_sync_state
    new = Folder(parent=root, name="Later")
    new.save()
    later = list(root.sync_hierarchy(sync_state=state))
    assert [(k, f.name) for k, f in later] == [("create", "Later")]
    new.delete()
    assert [k for k, _ in root.sync_hierarchy(sync_state=root.folder_sync_state)] == ["delete"]


def test_request_log_records_operations(server):
    entries = [e for e in server.log if e.service == "ews"]
    assert {"GetFolder"} <= {e.target for e in entries}
    assert all(e.method == "POST" for e in entries)


def test_get_on_endpoint(server):
    response = requests.get(server.url, verify=server.ca_file, timeout=10)
    assert response.status_code == 200


def test_empty_and_move_folder_and_query_string(alice):
    from exchangelib.items import Message

    box = Folder(parent=alice.msg_folder_root, name="Box")
    box.save()
    inner = Folder(parent=alice.msg_folder_root, name="Inner")
    inner.save()
    inner.move(box)
    assert [f.name for f in box.children] == ["Inner"]
    Message(account=alice, folder=box, subject="alpha beta", body="gamma").save()
    Message(account=alice, folder=box, subject="delta", body="epsilon").save()
    assert [m.subject for m in box.filter("gamma")] == ["alpha beta"]
    assert [m.subject for m in box.filter("subject:delta")] == ["delta"]
    box.empty(delete_sub_folders=True)
    assert box.all().count() == 0
    assert list(box.children) == []
    box.delete()


def test_impersonating_someone_else_is_denied(server):
    from exchangelib import IMPERSONATION, Account, Configuration, Credentials, Version
    from exchangelib.errors import ErrorImpersonateUserDenied
    from exchangelib.version import EXCHANGE_2016

    config = Configuration(
        service_endpoint=server.url,
        credentials=Credentials(ALICE, "alice-Sandbox-1"),
        auth_type="basic",
        version=Version(build=EXCHANGE_2016),
    )
    bob = Account(
        "bob@contoso.example", config=config, autodiscover=False, access_type=IMPERSONATION
    )
    with pytest.raises(ErrorImpersonateUserDenied):
        bob.inbox.refresh()
