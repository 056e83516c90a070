"""The sandbox Graph's shapes and refusals, over real HTTPS (doc page cited in each test)."""

from __future__ import annotations

import httpx
import pytest

from sandbox.faults import Fault
from sandbox.identity import TENANT_ID
from sync.graph.convert import KEY_PROPERTY
from tests.graph.conftest import ALICE, GraphWorld

EXPAND = f"$expand=singleValueExtendedProperties($filter=id eq '{KEY_PROPERTY}')"


def _filter(value: str) -> str:
    return (
        f"$filter=singleValueExtendedProperties/Any(ep: ep/id eq '{KEY_PROPERTY}' "
        f"and ep/value eq '{value}')"
    )


def test_me_and_mailbox_settings(http: httpx.Client) -> None:
    """user-get.md and user-get-mailboxsettings.md: `/me` has the UPN and mail; the mailbox
    settings have timeZone, language and workingHours."""
    me = http.get("me").json()
    assert me["userPrincipalName"] == ALICE and me["mail"] == ALICE
    settings = http.get("me/mailboxSettings").json()
    assert {"timeZone", "language", "workingHours", "automaticRepliesSetting"} <= set(settings)


def test_well_known_folders_and_child_folders(http: httpx.Client) -> None:
    """mailfolder-get.md: well-known names (inbox, sentitems, drafts, deleteditems) address
    folders; mailfolder-post-childfolders.md: a child folder; a duplicate name is 409."""
    inbox = http.get("me/mailFolders/inbox").json()
    assert inbox["displayName"] == "Inbox" and "totalItemCount" in inbox
    names = {f["displayName"] for f in http.get("me/mailFolders").json()["value"]}
    assert {"Inbox", "Sent Items", "Drafts", "Deleted Items"} <= names
    child = http.post("me/mailFolders/inbox/childFolders", json={"displayName": "Customers"})
    assert child.status_code == 201 and child.json()["parentFolderId"] == inbox["id"]
    again = http.post("me/mailFolders/inbox/childFolders", json={"displayName": "Customers"})
    assert again.status_code == 409
    kids = http.get("me/mailFolders/inbox/childFolders").json()["value"]
    assert [k["displayName"] for k in kids] == ["Customers"]


def test_extended_property_create_filter_and_expand(http: httpx.Client) -> None:
    """singlevaluelegacyextendedproperty-post-singlevalueextendedproperties.md and
    singlevaluelegacyextendedproperty-get.md: a property made with the item is found with
    `$filter=singleValueExtendedProperties/Any(...)` and shown only with `$expand`; the value
    filter is case-insensitive."""
    made = http.post(
        "me/contacts",
        json={"givenName": "Ext", "singleValueExtendedProperties": [
            {"id": KEY_PROPERTY, "value": "ABC-1"}]},
    )  # fmt: skip
    assert made.status_code == 201
    assert "singleValueExtendedProperties" not in made.json()
    found = http.get(f"me/contacts?{_filter('abc-1')}&{EXPAND}").json()["value"]
    assert [c["id"] for c in found] == [made.json()["id"]]
    assert found[0]["singleValueExtendedProperties"] == [{"id": KEY_PROPERTY, "value": "ABC-1"}]
    assert http.get(f"me/contacts?{_filter('other')}").json()["value"] == []


def test_read_only_and_unknown_properties_are_refused(http: httpx.Client) -> None:
    """contact.md: id, changeKey, createdDateTime are read-only; errors.md: the error body is
    {"error": {"code", "message"}}. An unknown property is a RequestBodyRead 400."""
    read_only = http.post("me/contacts", json={"givenName": "X", "changeKey": "abc"})
    assert read_only.status_code == 400
    assert read_only.json()["error"]["code"] == "ErrorInvalidPropertyUpdateSentToServer"
    unknown = http.post("me/contacts", json={"givenName": "X", "favouriteColour": "red"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "RequestBodyRead"
    assert "favouriteColour" in unknown.json()["error"]["message"]
    bad_status = http.post("me/todo/lists", json={"displayName": "L"}).json()["id"]
    refused = http.post(f"me/todo/lists/{bad_status}/tasks", json={"title": "t", "status": "done"})
    assert refused.status_code == 400


def test_contacts_delta_pages_removed_and_gone(world: GraphWorld, http: httpx.Client) -> None:
    """contact-delta.md and delta-query-overview.md: pages end in `@odata.nextLink` until the
    last one's `@odata.deltaLink`; a deleted item comes back as `@removed`; an expired token is
    410 Gone ("Synchronization reset")."""
    ids = [http.post("me/contacts", json={"givenName": f"D{i}"}).json()["id"] for i in range(5)]
    small = {"Prefer": "odata.maxpagesize=2"}
    link, seen, pages = "me/contacts/delta", [], 0
    while True:
        page = http.get(link, headers=small).json()
        pages += 1
        seen += [c["id"] for c in page["value"]]
        if "@odata.deltaLink" in page:
            delta_link = page["@odata.deltaLink"]
            assert "@odata.nextLink" not in page
            break
        link = page["@odata.nextLink"]
    assert set(ids) <= set(seen) and pages >= 3
    assert http.delete(f"me/contacts/{ids[0]}").status_code == 204
    http.patch(f"me/contacts/{ids[1]}", json={"surname": "Changed"})
    changes = http.get(delta_link).json()
    assert {"id": ids[0], "@removed": {"reason": "deleted"}} in changes["value"]
    assert [c["surname"] for c in changes["value"] if c["id"] == ids[1]] == ["Changed"]
    world.graph.mailbox(ALICE).expire_tokens()
    gone = http.get(changes["@odata.deltaLink"])
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "SyncStateNotFound"


def test_todo_tasks_and_open_extension(http: httpx.Client) -> None:
    """todotasklist-list.md (wellknownListName defaultList), todotask-post-tasks.md,
    opentypeextension-post-opentypeextension.md (an extension on a todoTask) and todotask-delta.md."""
    lists = http.get("me/todo/lists").json()["value"]
    default = next(x for x in lists if x["wellknownListName"] == "defaultList")
    base = f"me/todo/lists/{default['id']}/tasks"
    task = http.post(base, json={"title": "Call", "importance": "high",
                                 "dueDateTime": {"dateTime": "2026-12-10T00:00:00", "timeZone": "UTC"}}).json()  # fmt: skip
    assert task["status"] == "notStarted" and "@odata.etag" in task
    ext = {
        "@odata.type": "microsoft.graph.openTypeExtension",
        "extensionName": "com.test.x",
        "n": 1,
    }
    assert http.post(f"{base}/{task['id']}/extensions", json=ext).status_code == 201
    got = http.get(f"{base}/{task['id']}?$expand=extensions").json()
    assert got["extensions"][0]["n"] == 1
    done = http.patch(f"{base}/{task['id']}", json={"status": "completed"}).json()
    assert done["completedDateTime"]["dateTime"]
    delta = http.get(f"{base}/delta").json()
    assert task["id"] in [t["id"] for t in delta["value"]] and "@odata.deltaLink" in delta


def test_batch_runs_parts_and_refuses_more_than_twenty(http: httpx.Client) -> None:
    """json-batching.md: up to 20 requests, each answered with its id and status; more is 400."""
    parts = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(20)]
    answer = http.post("$batch", json={"requests": parts}).json()
    assert sorted(int(r["id"]) for r in answer["responses"]) == list(range(20))
    assert all(r["status"] == 200 for r in answer["responses"])
    parts.append({"id": "20", "method": "GET", "url": "/me"})
    refused = http.post("$batch", json={"requests": parts})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "BadRequest"


def test_events_prefer_timezone_and_calendar_view(http: httpx.Client) -> None:
    """event-get.md: `Prefer: outlook.timezone` gives start/end in that zone; calendar-list-
    calendarview.md: occurrences of a series have type occurrence and seriesMasterId."""
    made = http.post("me/events", json={
        "subject": "Standup",
        "start": {"dateTime": "2026-07-06T09:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2026-07-06T09:15:00", "timeZone": "Europe/Paris"},
        "recurrence": {"pattern": {"type": "daily", "interval": 1},
                       "range": {"type": "numbered", "startDate": "2026-07-06",
                                 "numberOfOccurrences": 3}},
    })  # fmt: skip
    assert made.status_code == 201 and made.json()["type"] == "seriesMaster"
    assert made.json()["start"]["dateTime"].startswith("2026-07-06T07:00:00")
    paris = http.get(f"me/events/{made.json()['id']}",
                     headers={"Prefer": 'outlook.timezone="Europe/Paris"'}).json()  # fmt: skip
    assert "start" in paris, paris
    assert paris["start"]["timeZone"] == "Europe/Paris"
    assert paris["start"]["dateTime"].startswith("2026-07-06T09:00:00")
    view = http.get("me/calendarView?startDateTime=2026-07-01T00:00:00Z"
                    "&endDateTime=2026-07-31T00:00:00Z").json()["value"]  # fmt: skip
    occurrences = [e for e in view if e.get("seriesMasterId") == made.json()["id"]]
    assert len(occurrences) == 3 and {e["type"] for e in occurrences} == {"occurrence"}
    assert http.get("me/calendarView").status_code == 400


def test_send_mail_and_draft_send(world: GraphWorld, http: httpx.Client) -> None:
    """user-sendmail.md (202, a copy in Sent Items) and message-send.md (a draft sent):
    the recipient, a sandbox user, finds them in the Inbox with an internetMessageId."""
    mail = {"subject": "Quote", "body": {"contentType": "Text", "content": "Hi"},
            "toRecipients": [{"emailAddress": {"address": "bob@contoso.example"}}]}  # fmt: skip
    assert http.post("me/sendMail", json={"message": mail}).status_code == 202
    draft = http.post("me/messages", json={**mail, "subject": "Draft"}).json()
    assert draft["isDraft"] is True
    attached = http.post(f"me/messages/{draft['id']}/attachments", json={
        "@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt",
        "contentBytes": "aGVsbG8="})  # fmt: skip
    assert attached.status_code == 201
    assert http.post(f"me/messages/{draft['id']}/send").status_code == 202
    with world.http(world.token("bob@contoso.example")) as bob:
        inbox = bob.get("me/mailFolders/inbox/messages").json()["value"]
    assert {m["subject"] for m in inbox} >= {"Quote", "Draft"}
    assert all(m["internetMessageId"].startswith("<") and m["conversationId"] for m in inbox)
    sent = http.get("me/mailFolders/sentitems/messages").json()["value"]
    assert {m["subject"] for m in sent} >= {"Quote", "Draft"}


def test_auth_errors(world: GraphWorld, http: httpx.Client) -> None:
    """auth-v2-user.md: no or a bad token is 401 InvalidAuthenticationToken; a token without
    the needed scope is 403 with ErrorAccessDenied, "Access is denied. Check credentials and
    try again." (the body Graph gives, as reported in microsoftgraph/aspnetcore-connect-sample
    issue 37)."""
    with world.http("not-a-token") as bad:
        answer = bad.get("me/contacts")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "InvalidAuthenticationToken"
    scoped = world.tokens.issue(ALICE, audience="https://graph.microsoft.com",
                                scopes=frozenset({"https://graph.microsoft.com/Contacts.Read"}))  # fmt: skip
    with world.http(scoped) as limited:
        assert limited.get("me/contacts").status_code == 200
        denied = limited.post("me/contacts", json={"givenName": "No"})
        mail = limited.get("me/mailFolders/inbox/messages")
    assert denied.status_code == 403 and mail.status_code == 403
    assert denied.json()["error"] == {
        "code": "ErrorAccessDenied",
        "message": "Access is denied. Check credentials and try again.",
        "innerError": {},
    }
    assert TENANT_ID  # the same shared identity as the other sandbox servers


@pytest.mark.parametrize("kind,status", [("429", 429), ("503", 503)])
def test_throttling_faults_carry_retry_after(
    world: GraphWorld, http: httpx.Client, kind: str, status: int
) -> None:
    """throttling.md: 429 (and 503) answers carry Retry-After in seconds."""
    world.faults.set(Fault.parse(f"{kind}:times=1,delay=2,match=graph /v1.0/me"))
    try:
        answer = http.get("me")
    finally:
        world.faults.clear()
    assert answer.status_code == status and answer.headers["Retry-After"] == "2"
    assert http.get("me").status_code == 200
