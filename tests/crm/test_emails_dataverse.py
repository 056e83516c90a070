"""DataverseEmails (the CRM side of email tracking) over real HTTP against the strict sandbox.

Each `EmailDirectory` method is checked for what it writes (the rows the sandbox holds) and for
how many requests it costs; the sandbox's email rules are checked against the table reference
(powerapps-docs reference/entities/email.md, activityparty.md, activitymimeattachment.md,
organization.md, attachment-annotation-files.md)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.dataverse.security import ORGANIZATION_READER, USER_READER
from sandbox.identity import user_by_upn
from sync.crm.client import DataverseClient
from sync.crm.emails import (
    BLOCKED,
    MAX_URL,
    TOO_BIG,
    AttachmentRefused,
    DataverseEmails,
    attachment_id_for,
    conversation_hash,
    email_id_for,
)
from sync.mail.facade import RecordRef
from sync.mail.ports import BCC, CC, FROM, TO, AttachmentData, NewEmail, Party
from sync.sides import NotFound
from tests.crm.conftest import ALICE, Sandbox

BOB = "bob@contoso.example"
ORG = "contoso"


def user_id(upn: str) -> str:
    user = user_by_upn(upn)
    assert user is not None
    return user.systemuser_id(ORG)


@pytest.fixture
def alice_emails(sandbox: Sandbox) -> Iterator[DataverseEmails]:
    sandbox.faults.clear()
    with sandbox.client() as client:
        yield DataverseEmails(client, user_id(ALICE))


@pytest.fixture
def bob_emails(sandbox: Sandbox) -> Iterator[DataverseEmails]:
    with sandbox.client(upn=BOB) as client:
        yield DataverseEmails(client, user_id(BOB))


def rows(sandbox: Sandbox, entity_set: str) -> dict[str, Any]:
    with sandbox.server.store.lock:
        return {k: r.values.copy() for k, r in sandbox.server.table(ORG, entity_set).rows.items()}


def parties_of(sandbox: Sandbox, email_id: str) -> list[tuple[int, str | None, str | None]]:
    found = [
        (p["participationtypemask"], p.get("_partyid_value"), p.get("addressused"))
        for p in rows(sandbox, "activityparties").values()
        if p.get("_activityid_value") == email_id
    ]
    return sorted(found, key=lambda t: (t[0], t[2] or ""))


def a_contact(sandbox: Sandbox) -> tuple[str, str, str]:
    """(id, email address, full name) of a demo contact with an address."""
    for contact_id, row in sorted(rows(sandbox, "contacts").items()):
        if row.get("emailaddress1"):
            return contact_id, row["emailaddress1"], row["fullname"]
    raise AssertionError("the demo has no contact with an address")


def new_email(message_id: str | None = None, **changes: Any) -> NewEmail:
    message_id = message_id or f"<{uuid.uuid4()}@customer.example>"
    values: dict[str, Any] = {
        "id": email_id_for(message_id),
        "subject": "Quote for 40 units",
        "body_html": "<p>Hello</p>",
        "message_id": message_id,
        "outgoing": False,
        "sent_on": "2026-05-04T09:00:00Z",
        "received_on": "2026-05-04T09:00:05Z",
        "parties": (
            Party(FROM, "buyer@unknown.example"),
            Party(TO, ALICE, RecordRef("systemusers", user_id(ALICE))),
        ),
    }
    values.update(changes)
    return NewEmail(**values)


# --- create ------------------------------------------------------------------------------------


def test_create_writes_the_email_its_parties_and_state_in_one_request(
    sandbox: Sandbox, alice_emails: DataverseEmails
) -> None:
    """One `$batch` change set: POST (parties inline, Regarding bound) + PATCH of the state to
    Completed/Received (email.md StatusCode 4 is of StateCode 1)."""
    contact_id, contact_address, contact_name = a_contact(sandbox)
    index = base64.b64encode(bytes(range(22)) + b"\x00\x00\x00\x00\x01").decode()
    email = new_email(
        subject="Order 1234",
        tracking_token="CRM:0001234",
        conversation_index=index,
        regarding=RecordRef("contacts", contact_id, contact_name),
        parties=(
            Party(FROM, contact_address, RecordRef("contacts", contact_id)),
            Party(TO, ALICE, RecordRef("systemusers", user_id(ALICE))),
            Party(CC, "someone@unknown.example"),
            Party(BCC, "hidden@unknown.example"),
        ),
    )
    before = alice_emails.client.request_count
    created = alice_emails.create_email(email)
    assert alice_emails.client.request_count - before == 1
    assert created.id == email.id and created.status == 4 and not created.outgoing

    row = rows(sandbox, "emails")[email.id]
    assert (row["statecode"], row["statuscode"]) == (1, 4)
    assert row["messageid"] == email.message_id and row["subject"] == "Order 1234"
    assert row["description"] == "<p>Hello</p>" and row["directioncode"] is False
    assert row["actualend"] == "2026-05-04T09:00:05Z"
    assert row["trackingtoken"] == "CRM:0001234"
    assert row["baseconversationindexhash"] == conversation_hash(index)
    assert row["_regardingobjectid_value"] == contact_id
    assert row["_ownerid_value"] == user_id(ALICE)
    assert row.get("senton") is None and row.get("inreplyto") is None  # read-only: not ours
    assert parties_of(sandbox, email.id) == [
        (FROM, contact_id, contact_address),
        (TO, user_id(ALICE), ALICE),
        (CC, None, "someone@unknown.example"),
        (BCC, None, "hidden@unknown.example"),
    ]


def test_create_again_answers_the_existing_email(
    sandbox: Sandbox, alice_emails: DataverseEmails
) -> None:
    """Our chosen id exists already (a retry after a crash): the service answers 412 duplicate
    key; the existing email is returned and no second one made."""
    email = new_email(outgoing=True, subject="Sent offer")
    first = alice_emails.create_email(email)
    assert first.status == 3  # email.md: 3 Sent, StateCode 1
    again = alice_emails.create_email(email)
    assert again.id == first.id and again.message_id == email.message_id
    assert again.outgoing and again.status == 3
    assert {(p.mask, p.address) for p in again.parties} == {
        (FROM, "buyer@unknown.example"),
        (TO, ALICE),
    }
    same = [r for r in rows(sandbox, "emails").values() if r.get("messageid") == email.message_id]
    assert len(same) == 1


def post(sandbox: Sandbox, path: str, body: Any, method: str = "POST") -> httpx.Response:
    token = sandbox.tokens.static_token(ALICE)
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        return http.request(method, sandbox.server.api_url(ORG) + path, json=body)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("senton", "2026-05-04T09:00:00Z"),
        ("inreplyto", "<parent@customer.example>"),
        ("conversationindex", "AQHSR2UWj4IGAAA="),
        ("attachmentcount", 2),
        ("statecode", 1),
    ],
)
def test_sandbox_refuses_email_columns_not_valid_for_create(
    sandbox: Sandbox, column: str, value: Any
) -> None:
    """email.md lists SentOn, InReplyTo, ConversationIndex and AttachmentCount among the
    "Read-only columns/attributes" (IsValidForCreate and IsValidForUpdate false); a state is
    set by an update after the create, as for appointment.md's StateCode (IsValidForCreate
    False). The sandbox answers 400 0x80040203 and keeps nothing."""
    before = len(rows(sandbox, "emails"))
    answer = post(sandbox, "emails", {"subject": "strict", column: value})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "0x80040203"
    assert column in answer.json()["error"]["message"]
    assert len(rows(sandbox, "emails")) == before


def test_sandbox_refuses_a_post_to_activityparties(sandbox: Sandbox) -> None:
    """activityparty.md: the table's only message is RetrieveMultiple — parties are written
    with their activity (inline, or `PUT …/email_activity_parties`)."""
    email_id = str(uuid.uuid4())
    assert post(sandbox, "emails", {"activityid": email_id, "subject": "p"}).status_code == 204
    answer = post(
        sandbox,
        "activityparties",
        {
            "participationtypemask": TO,
            "addressused": "x@unknown.example",
            "activityid_email@odata.bind": f"/emails({email_id})",
        },
    )
    assert answer.status_code == 405
    assert parties_of(sandbox, email_id) == []


# --- lookups -------------------------------------------------------------------------------------


def test_emails_by_message_id_finds_many_in_one_request(
    sandbox: Sandbox, alice_emails: DataverseEmails
) -> None:
    """130 long Message-Ids: several `or` filters (≤ 50 conditions, URLs ≤ 2,000 characters)
    sent as one `$batch`; the lookup ignores case as the service's comparisons do."""
    made = [new_email(f"<{i:03d}.{'x' * 40}@bulk.example>") for i in range(3)]
    for email in made:
        alice_emails.create_email(email)
    wanted = [m.message_id for m in made] + [
        f"<{i:03d}.{'y' * 40}@absent.example>" for i in range(127)
    ]
    wanted[1] = wanted[1].upper()
    before = alice_emails.client.request_count
    found = alice_emails.emails_by_message_id(wanted)
    assert alice_emails.client.request_count - before == 1
    assert set(found) == {wanted[0], wanted[1], wanted[2]}
    assert found[wanted[1]].id == made[1].id
    assert found[wanted[0]].parties and found[wanted[0]].status == 4

    def build(where: str) -> str:
        return "emails?$filter=" + where

    conditions = [f"messageid eq '{m}'" for m in wanted]
    paths = list(alice_emails._paths(conditions, build))
    assert len(paths) >= 3
    assert all(len(alice_emails.client.api_url) + len(p) <= MAX_URL for p in paths)
    assert sum(p.count(" eq ") for p in paths) == len(wanted)
    assert alice_emails.emails_by_message_id([]) == {}


def test_email_by_token_and_by_conversation(
    sandbox: Sandbox, alice_emails: DataverseEmails
) -> None:
    """A reply's conversation index is its parent's 22-byte header plus 5-byte blocks: the
    reply finds the parent by the header's hash (written to baseconversationindexhash)."""
    header = uuid.uuid4().bytes + b"\x01\x02\x03\x04\x05\x06"
    parent = new_email(
        conversation_index=base64.b64encode(header).decode(), tracking_token="CRM:0007001"
    )
    alice_emails.create_email(parent)
    reply_index = base64.b64encode(header + b"\x00\x01\x02\x03\x04").decode()
    assert alice_emails.email_by_conversation(reply_index).id == parent.id  # type: ignore[union-attr]
    other = base64.b64encode(uuid.uuid4().bytes + b"\x00" * 6).decode()
    assert alice_emails.email_by_conversation(other) is None
    assert alice_emails.email_by_conversation("not base64!") is None
    assert alice_emails.email_by_token("CRM:0007001").id == parent.id  # type: ignore[union-attr]
    assert alice_emails.email_by_token("CRM:9999999") is None


def test_resolve_many_addresses_in_one_request(
    sandbox: Sandbox, alice_emails: DataverseEmails
) -> None:
    contact_id, contact_address, _ = a_contact(sandbox)
    lead_id, lead = next(
        (k, r) for k, r in sorted(rows(sandbox, "leads").items()) if r.get("emailaddress1")
    )
    account_id, account = next(
        (k, r) for k, r in sorted(rows(sandbox, "accounts").items()) if r.get("emailaddress1")
    )
    addresses = [
        contact_address.upper(),
        lead["emailaddress1"],
        account["emailaddress1"],
        ALICE,
        "nobody@unknown.example",
        "not an address",
    ]
    before = alice_emails.client.request_count
    found = alice_emails.resolve(addresses, ("contacts", "leads", "accounts", "systemusers"))
    assert alice_emails.client.request_count - before == 1
    assert found[contact_address.lower()] == RecordRef(
        "contacts", contact_id, rows(sandbox, "contacts")[contact_id]["fullname"]
    )
    assert found[lead["emailaddress1"].lower()].entity_set == "leads"
    assert found[lead["emailaddress1"].lower()].id == lead_id
    assert found[account["emailaddress1"].lower()] == RecordRef(
        "accounts", account_id, account["name"]
    )
    assert found[ALICE].entity_set == "systemusers" and found[ALICE].id == user_id(ALICE)
    assert "nobody@unknown.example" not in found and len(found) == 4
    only_records = alice_emails.resolve(addresses, ("contacts", "leads", "accounts"))
    assert ALICE not in only_records and len(only_records) == 3


def test_search_records_by_name_across_the_tables(
    sandbox: Sandbox, alice_emails: DataverseEmails
) -> None:
    """Set Regarding's search: `contains` on each table's primary name (opportunity.md: `name`),
    `$top`, one request for all four tables, opportunities included."""
    _, _, name = a_contact(sandbox)
    word = name.split()[0]
    before = alice_emails.client.request_count
    found = alice_emails.search_records(word, ["contacts", "accounts", "leads", "opportunities"], 5)
    assert alice_emails.client.request_count - before == 1
    assert 0 < len(found) <= 5
    assert all(word.lower() in r.name.lower() for r in found)
    assert [r.name.casefold() for r in found] == sorted(r.name.casefold() for r in found)
    assert alice_emails.search_records("zzz-no-such-name", ["contacts"], 25) == []
    deals = alice_emails.search_records("deal", ["contacts", "accounts", "opportunities"], 25)
    assert deals and {r.entity_set for r in deals} == {"opportunities"}


# --- changes ---------------------------------------------------------------------------------------


def test_set_and_clear_regarding(sandbox: Sandbox, alice_emails: DataverseEmails) -> None:
    contact_id, _, _ = a_contact(sandbox)
    account_id = next(iter(sorted(rows(sandbox, "accounts"))))
    email = new_email(regarding=RecordRef("contacts", contact_id))
    alice_emails.create_email(email)
    alice_emails.set_regarding(email.id, RecordRef("accounts", account_id))
    assert rows(sandbox, "emails")[email.id]["_regardingobjectid_value"] == account_id
    deal = next(iter(sorted(rows(sandbox, "opportunities"))))
    alice_emails.set_regarding(email.id, RecordRef("opportunities", deal))  # opportunity.md
    assert rows(sandbox, "emails")[email.id]["_regardingobjectid_value"] == deal
    alice_emails.set_regarding(email.id, None)
    assert rows(sandbox, "emails")[email.id]["_regardingobjectid_value"] is None
    alice_emails.set_regarding(email.id, None)  # nothing to clear: no error
    missing = str(uuid.uuid4())
    with pytest.raises(NotFound):  # If-Match: * — never an upsert that makes an email
        alice_emails.set_regarding(missing, RecordRef("accounts", account_id))
    assert missing not in rows(sandbox, "emails")


def test_two_users_track_one_message_one_email_both_parties(
    sandbox: Sandbox, alice_emails: DataverseEmails, bob_emails: DataverseEmails
) -> None:
    """Alice tracks a message first; Bob (business-unit read in the demo) finds it by its
    Message-Id and adds himself with `PUT emails(id)/email_activity_parties` — Alice's
    parties stay; doing it again changes nothing."""
    message_id = f"<{uuid.uuid4()}@customer.example>"
    alice_emails.create_email(new_email(message_id))
    found = bob_emails.emails_by_message_id([message_id])[message_id]
    me = Party(CC, BOB, RecordRef("systemusers", user_id(BOB)))
    bob_emails.add_parties(found.id, [me])
    assert parties_of(sandbox, found.id) == [
        (FROM, None, "buyer@unknown.example"),
        (TO, user_id(ALICE), ALICE),
        (CC, user_id(BOB), BOB),
    ]
    before = bob_emails.client.request_count
    bob_emails.add_parties(found.id, [me])
    assert bob_emails.client.request_count - before == 1  # one read, nothing to write
    assert len(parties_of(sandbox, found.id)) == 3
    again = bob_emails.create_email(new_email(message_id))  # same id from the Message-Id
    assert again.id == found.id
    assert (
        len([r for r in rows(sandbox, "emails").values() if r.get("messageid") == message_id]) == 1
    )


def test_user_level_read_hides_the_email_but_the_derived_id_still_dedupes(
    sandbox: Sandbox, alice_emails: DataverseEmails, bob_emails: DataverseEmails
) -> None:
    """With only user-level (Basic) read on activities, Bob's Message-Id lookup does not see
    Alice's email (PrivilegeDepth Basic: "objects that are owned by, or shared with, the
    user"); the id derived from the Message-Id makes the service refuse a second email (412
    duplicate key), so there is still one."""
    message_id = f"<{uuid.uuid4()}@customer.example>"
    alice_emails.create_email(new_email(message_id))
    sandbox.server.security.assign(ORG, user_id(BOB), USER_READER)
    try:
        assert bob_emails.emails_by_message_id([message_id]) == {}
        answered = bob_emails.create_email(new_email(message_id))
        assert answered.id == email_id_for(message_id)
    finally:
        from sandbox.dataverse.demo import DEMO_ROLES

        sandbox.server.security.assign(
            ORG, user_id(BOB), DEMO_ROLES.get((ORG, BOB), ORGANIZATION_READER)
        )
    assert (
        len([r for r in rows(sandbox, "emails").values() if r.get("messageid") == message_id]) == 1
    )


# --- attachments ---------------------------------------------------------------------------------


def organization(sandbox: Sandbox) -> tuple[str, dict[str, Any]]:
    [(org_id, row)] = rows(sandbox, "organizations").items()
    return org_id, row


def test_attachment_is_added_once(sandbox: Sandbox, alice_emails: DataverseEmails) -> None:
    email = new_email()
    alice_emails.create_email(email)
    attachment_id = attachment_id_for(email.id, 0, "quote.pdf")
    data = AttachmentData("quote.pdf", "application/pdf", 5, b"%PDF-")
    alice_emails.add_attachment(email.id, attachment_id, data)
    alice_emails.add_attachment(email.id, attachment_id, data)  # a retry: done already
    mine = [
        r
        for r in rows(sandbox, "activitymimeattachments").values()
        if r.get("_objectid_value") == email.id
    ]
    assert [(r["filename"], r["filesize"], r["mimetype"], r["objecttypecode"]) for r in mine] == [
        ("quote.pdf", 5, "application/pdf", "email")
    ]
    assert base64.b64decode(mine[0]["body"]) == b"%PDF-"
    with pytest.raises(ValueError):
        alice_emails.add_attachment(
            email.id, str(uuid.uuid4()), AttachmentData("big.bin", "x/y", 10**9, None)
        )


def test_attachment_over_the_limit_is_refused_with_the_documented_error(
    sandbox: Sandbox, alice_emails: DataverseEmails
) -> None:
    """organization.maxuploadfilesize "applies to the size of the file in Base64 encoding"; a
    larger upload gets unManagedidsattachmentinvalidfilesize 0x80044a02 "Attachment file size
    is too big." (attachment-annotation-files.md, File size limits). 900 raw bytes are 1,200 in
    base64: over a 1,000-byte limit, although the file itself is under it."""
    org_id, org = organization(sandbox)
    assert org["maxuploadfilesize"] == 5_242_880  # the documented default
    assert alice_emails.attachment_limit() == 5_242_880 // 4 * 3
    answer = post(sandbox, f"organizations({org_id})", {"maxuploadfilesize": 1000}, "PATCH")
    assert answer.status_code == 204
    try:
        limited = DataverseEmails(alice_emails.client, user_id(ALICE))
        assert limited.attachment_limit() == 750
        before = limited.client.request_count
        assert limited.attachment_limit() == 750  # read once
        assert limited.client.request_count == before
        email = new_email()
        limited.create_email(email)
        with pytest.raises(AttachmentRefused) as refused:
            limited.add_attachment(
                email.id, str(uuid.uuid4()), AttachmentData("a.bin", "x/y", 900, b"a" * 900)
            )
        assert refused.value.code == TOO_BIG
        assert refused.value.message == "Attachment file size is too big."
        limited.add_attachment(  # 750 raw bytes are exactly 1,000 in base64: taken
            email.id, str(uuid.uuid4()), AttachmentData("b.bin", "x/y", 750, b"b" * 750)
        )
        names = [
            r["filename"]
            for r in rows(sandbox, "activitymimeattachments").values()
            if r.get("_objectid_value") == email.id
        ]
        assert names == ["b.bin"]
    finally:
        post(sandbox, f"organizations({org_id})", {"maxuploadfilesize": 5_242_880}, "PATCH")


def test_blocked_file_type_is_refused(sandbox: Sandbox, alice_emails: DataverseEmails) -> None:
    """organization.blockedattachments (default list includes `exe`): AttachmentBlocked
    0x80043e09 "The attachment is either not a valid type or is too large. It cannot be
    uploaded or downloaded." (files-images-overview.md, Block files by extension)."""
    email = new_email()
    alice_emails.create_email(email)
    with pytest.raises(AttachmentRefused) as refused:
        alice_emails.add_attachment(
            email.id, str(uuid.uuid4()), AttachmentData("setup.EXE", "x/y", 3, b"MZ\x00")
        )
    assert refused.value.code == BLOCKED


def test_attachment_limit_defaults_when_unreadable(sandbox: Sandbox) -> None:
    """A client that cannot read the organization row (here: a wrong URL answered 404)
    falls back to the documented 5 MB default."""
    with DataverseClient(
        sandbox.server.base_url + "/nosuchorg/api/data/v9.2/",
        lambda: sandbox.tokens.static_token(ALICE),
    ) as client:
        assert DataverseEmails(client, user_id(ALICE)).attachment_limit() == 5_242_880 // 4 * 3
