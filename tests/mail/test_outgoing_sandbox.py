"""Outgoing CRM email over real protocols: the sandbox Dataverse (Pending Send emails, SendEmail),
the sandbox EWS (SendAndSaveCopy between sandbox mailboxes) and an aiosmtpd server (SMTP).

Each test makes its own Pending Send emails the way Dynamics does (a draft, then SendEmail with
IssueSend true) and runs `send_pending` with a fresh local journal; the checks look at what the
recipient got, not at what the client says it did.
"""

from __future__ import annotations

import base64
import email
from collections.abc import Iterator
from email import policy
from typing import Any

import pytest

from sandbox.faults import Fault
from sync.crm.client import DataverseClient, RetryPolicy
from sync.crm.outbox import DataverseOutbox
from sync.mail.journal import SendJournal
from sync.mail.outgoing import (
    ACCEPTED,
    ALERT_REFUSED,
    ALERT_UNCERTAIN,
    FAILED,
    SENT,
    crm_tokens,
    send_pending,
)
from sync.mail.senders import EwsMailSender, SmtpMailSender
from sync.mailbox.mime import KEY_HEADER
from sync.mailbox.smtp import SmtpSender, SmtpSettings
from sync.runs import open_alerts
from sync.sides import Invalid
from sync.store.db import Database
from tests.e2e.harness import ORG_ID, SandboxPair, start_pair

BOB = "bob@contoso.example"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class Crashed(Exception):
    """The process "dies" here (raised where a SIGKILL would have stopped it)."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPair]:
    with start_pair(tmp_path_factory.mktemp("outgoing")) as running:
        yield running


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.mailbox.conftest import _smtp_controller

    controller, state = _smtp_controller(tmp_path_factory.mktemp("smtp"))
    try:
        yield state
    finally:
        controller.stop()


@pytest.fixture
def smtp(smtp_server: Any) -> Any:
    smtp_server.reset()
    return smtp_server


@pytest.fixture
def crm(pair: SandboxPair) -> Iterator[DataverseClient]:
    """Alice's Web API client (no real waits); Pending Send email a test leaves is canceled."""
    client = pair.crm_client(
        retry=RetryPolicy(backoff=0.01, max_retries=1, max_throttle_retries=1),
        sleep=lambda _seconds: None,
    )
    yield client
    pair.faults.clear()
    for email_ in DataverseOutbox(client, pair.me).pending():
        client.update("emails", email_.id, {"statecode": 2, "statuscode": 5})


@pytest.fixture
def database(pair: SandboxPair) -> Database:
    return pair.new_database()


def pending_email(
    client: DataverseClient,
    me: str,
    subject: str,
    to: list[str] = (BOB,),  # type: ignore[assignment]
    contacts: list[str] = (),  # type: ignore[assignment]
    files: dict[str, bytes] | None = None,
) -> str:
    """A draft with parties (and files), then SendEmail IssueSend true: Pending Send."""
    parties: list[dict[str, Any]] = [
        {"participationtypemask": 1, "partyid_systemuser@odata.bind": f"/systemusers({me})"}
    ]
    parties += [{"participationtypemask": 2, "addressused": a} for a in to]
    parties += [
        {"participationtypemask": 2, "partyid_contact@odata.bind": f"/contacts({c})"}
        for c in contacts
    ]
    email_id, _, _ = client.create(
        "emails",
        {"subject": subject, "description": f"<p>{subject}</p>", "email_activity_parties": parties},
    )
    for number, (name, content) in enumerate((files or {}).items(), start=1):
        client.create(
            "activitymimeattachments",
            {
                "objectid_email@odata.bind": f"/emails({email_id})",
                "objecttypecode": "email",
                "filename": name,
                "mimetype": "text/plain",
                "attachmentnumber": number,
                "body": base64.b64encode(content).decode(),
            },
        )
    client.request(
        "POST",
        f"emails({email_id})/Microsoft.Dynamics.CRM.SendEmail",
        json_body={"IssueSend": True},
    )
    assert crm_email(client, email_id)["statuscode"] == 6
    return email_id


def crm_email(client: DataverseClient, email_id: str) -> dict[str, Any]:
    return client.get(
        "emails", email_id, select=["statecode", "statuscode", "messageid", "senton", "subject"]
    )


def inbox(pair: SandboxPair, upn: str, subject: str) -> list[Any]:
    """The messages with `subject` in a sandbox mailbox's Inbox."""
    mbx = pair.ews.mailbox(upn)
    with mbx.lock:
        folder = mbx.dist("inbox").id
        return [
            i for i in mbx.items.values() if i.folder_id == folder and i.value("Subject") == subject
        ]


def received(smtp: Any, subject: str) -> list[email.message.EmailMessage]:
    messages = [
        email.message_from_bytes(envelope.original_content, policy=policy.default)
        for envelope in smtp.messages()
    ]
    return [m for m in messages if m["Subject"] == subject]


def ews_sender(pair: SandboxPair) -> EwsMailSender:
    return EwsMailSender(pair.mailbox_side())


def smtp_sender(smtp: Any) -> SmtpMailSender:
    settings = SmtpSettings(
        host=smtp.host,
        port=smtp.port,
        username=smtp.user,
        password=smtp.password,
        security="starttls",
        ca_file=smtp.ca_file,
        timeout=10,
    )
    return SmtpMailSender(SmtpSender(settings))


class CrashingOutbox(DataverseOutbox):
    """The outbox of a process that dies right after the message went out, before the CRM
    heard of it (the first `crashes` marks)."""

    def __init__(self, client: DataverseClient, user_id: str, crashes: int = 1) -> None:
        super().__init__(client, user_id)
        self.crashes = crashes

    def mark_sent(
        self, email_id: str, message_id: str, sent_at: str, tracking_token: str | None
    ) -> None:
        if self.crashes:
            self.crashes -= 1
            raise Crashed("killed between send and mark")
        super().mark_sent(email_id, message_id, sent_at, tracking_token)


# --- EWS ---------------------------------------------------------------------------------------


def test_ews_sends_once_with_our_message_id_and_marks_sent(
    pair: SandboxPair, crm: DataverseClient, database: Database
) -> None:
    email_id = pending_email(crm, pair.me, "EWS once", files={"terms.txt": b"read me"})
    journal = SendJournal(database, ORG_ID)
    outbox = DataverseOutbox(crm, pair.me)

    result = send_pending(outbox, ews_sender(pair), journal)

    assert (result.sent, result.failed, result.errors, result.stopped) == (1, 0, 0, False)
    (delivered,) = inbox(pair, BOB, "EWS once")
    row = crm_email(crm, email_id)
    assert (row["statecode"], row["statuscode"]) == (1, 3) and row["senton"]
    # The Message-Id we chose is the one Bob got (the sandbox, like EWS, keeps a client's
    # InternetMessageId) and the one the CRM holds for reply correlation.
    assert row["messageid"] == delivered.value("InternetMessageId")
    assert row["messageid"].endswith("@contoso.example>")
    assert [(a.name, a.content) for a in delivered.attachments] == [("terms.txt", b"read me")]
    sent_copy = pair.mailbox_side().find_by_key("messages:sentitems", [email_id])[email_id]
    assert sent_copy.fields["message_id"] == row["messageid"]
    assert journal.entry(email_id).state == SENT  # type: ignore[union-attr]

    again = send_pending(outbox, ews_sender(pair), journal)
    assert (again.sent, again.already_sent) == (0, 0)
    assert len(inbox(pair, BOB, "EWS once")) == 1


def test_ews_crash_between_send_and_mark_is_marked_not_resent_even_by_a_new_install(
    pair: SandboxPair, crm: DataverseClient, database: Database
) -> None:
    email_id = pending_email(crm, pair.me, "EWS crash")
    journal = SendJournal(database, ORG_ID)
    with pytest.raises(Crashed):
        send_pending(CrashingOutbox(crm, pair.me), ews_sender(pair), journal)
    assert journal.entry(email_id).state == ACCEPTED  # type: ignore[union-attr]
    assert crm_email(crm, email_id)["statuscode"] == 6  # still Pending Send

    # A new install (the local journal is gone): the sent copy in Sent Items says it went out.
    fresh = SendJournal(pair.new_database(), ORG_ID)
    result = send_pending(DataverseOutbox(crm, pair.me), ews_sender(pair), fresh)

    assert (result.sent, result.already_sent) == (0, 1)
    (delivered,) = inbox(pair, BOB, "EWS crash")
    row = crm_email(crm, email_id)
    assert row["statuscode"] == 3 and row["messageid"] == delivered.value("InternetMessageId")


def test_ews_throttled_crm_while_marking_sends_nothing_twice(
    pair: SandboxPair, crm: DataverseClient, database: Database
) -> None:
    first = pending_email(crm, pair.me, "EWS throttled 1")
    second = pending_email(crm, pair.me, "EWS throttled 2")
    journal = SendJournal(database, ORG_ID)
    pair.faults.set(Fault("429", every=1, match="SendEmail", delay=1))

    stopped = send_pending(DataverseOutbox(crm, pair.me), ews_sender(pair), journal)

    assert stopped.stopped and "Throttled" in (stopped.message or "")
    went = [len(inbox(pair, BOB, f"EWS throttled {n}")) for n in (1, 2)]
    assert stopped.sent == 0 and sorted(went) == [0, 1]  # the first went out, the rest waits
    pair.faults.clear()
    result = send_pending(DataverseOutbox(crm, pair.me), ews_sender(pair), journal)

    assert (result.sent, result.already_sent) == (1, 1)
    assert len(inbox(pair, BOB, "EWS throttled 1")) == 1
    assert len(inbox(pair, BOB, "EWS throttled 2")) == 1
    assert {crm_email(crm, i)["statuscode"] for i in (first, second)} == {3}


def test_ews_recipient_without_address_fails_with_a_note_and_an_alert(
    pair: SandboxPair, crm: DataverseClient, database: Database
) -> None:
    contact, _, _ = crm.create("contacts", {"firstname": "No", "lastname": "Address"})
    email_id = pending_email(crm, pair.me, "EWS unaddressed", to=[], contacts=[contact])
    journal = SendJournal(database, ORG_ID)

    result = send_pending(DataverseOutbox(crm, pair.me), ews_sender(pair), journal)

    assert (result.sent, result.failed) == (0, 1)
    row = crm_email(crm, email_id)
    assert (row["statecode"], row["statuscode"]) == (0, 8)  # Open / Failed
    notes = crm.get_json(f"annotations?$filter=_objectid_value eq {email_id}")["value"]
    assert len(notes) == 1 and "No Address" in notes[0]["notetext"]
    alert = next(a for a in open_alerts(database) if a.subject == email_id)
    assert alert.code == ALERT_REFUSED and "EWS unaddressed" in alert.message


# --- SMTP --------------------------------------------------------------------------------------


def test_smtp_sends_once_with_our_message_id_and_marks_sent(
    pair: SandboxPair, crm: DataverseClient, database: Database, smtp: Any
) -> None:
    email_id = pending_email(crm, pair.me, "SMTP once", files={"a.txt": b"attached"})
    journal = SendJournal(database, ORG_ID)
    outbox = DataverseOutbox(crm, pair.me)

    result = send_pending(outbox, smtp_sender(smtp), journal)

    assert (result.sent, result.failed, result.errors) == (1, 0, 0)
    (message,) = received(smtp, "SMTP once")
    row = crm_email(crm, email_id)
    assert row["statuscode"] == 3 and row["messageid"] == message["Message-Id"]
    assert message[KEY_HEADER] == email_id
    assert message["Message-Id"].endswith("@example.test>")  # the SMTP account's domain
    (part,) = list(message.iter_attachments())
    assert part.get_filename() == "a.txt" and part.get_content() == "attached"

    assert send_pending(outbox, smtp_sender(smtp), journal).sent == 0
    assert len(received(smtp, "SMTP once")) == 1


def test_smtp_crash_between_send_and_mark_is_marked_not_resent(
    pair: SandboxPair, crm: DataverseClient, database: Database, smtp: Any
) -> None:
    email_id = pending_email(crm, pair.me, "SMTP crash")
    journal = SendJournal(database, ORG_ID)
    with pytest.raises(Crashed):
        send_pending(CrashingOutbox(crm, pair.me), smtp_sender(smtp), journal)

    result = send_pending(DataverseOutbox(crm, pair.me), smtp_sender(smtp), journal)

    assert (result.sent, result.already_sent) == (0, 1)
    (message,) = received(smtp, "SMTP crash")
    assert crm_email(crm, email_id)["messageid"] == message["Message-Id"]
    assert journal.entry(email_id).state == SENT  # type: ignore[union-attr]


def test_smtp_crash_while_the_server_had_it_is_not_resent_and_raises_an_info_alert(
    pair: SandboxPair, crm: DataverseClient, database: Database, smtp: Any
) -> None:
    """The process dies after the server took the message but before the journal heard back:
    the journal says "sending". SMTP cannot be asked, so it is never sent again."""

    class DyingSmtp(SmtpMailSender):
        def send(self, *args: Any, **kwargs: Any) -> Any:
            super().send(*args, **kwargs)
            raise Crashed("killed as the server answered 250")

    email_id = pending_email(crm, pair.me, "SMTP uncertain")
    journal = SendJournal(database, ORG_ID)
    with pytest.raises(Crashed):
        send_pending(DataverseOutbox(crm, pair.me), DyingSmtp(smtp_sender(smtp).sender), journal)

    result = send_pending(DataverseOutbox(crm, pair.me), smtp_sender(smtp), journal)

    assert (result.sent, result.already_sent) == (0, 1)
    (message,) = received(smtp, "SMTP uncertain")
    assert crm_email(crm, email_id)["messageid"] == message["Message-Id"]
    alert = next(a for a in open_alerts(database) if a.subject == email_id)
    assert alert.code == ALERT_UNCERTAIN and alert.severity == "info"
    assert "SMTP uncertain" in alert.message and BOB in alert.action


def test_smtp_refused_recipient_marks_failed_with_the_server_reply(
    pair: SandboxPair, crm: DataverseClient, database: Database, smtp: Any
) -> None:
    email_id = pending_email(crm, pair.me, "SMTP refused", to=["nobody@refused.example"])
    journal = SendJournal(database, ORG_ID)

    result = send_pending(DataverseOutbox(crm, pair.me), smtp_sender(smtp), journal)

    assert (result.sent, result.failed) == (0, 1)
    assert received(smtp, "SMTP refused") == []
    row = crm_email(crm, email_id)
    assert (row["statecode"], row["statuscode"]) == (0, 8)
    (note,) = crm.get_json(f"annotations?$filter=_objectid_value eq {email_id}")["value"]
    assert "550" in note["notetext"] and "nobody@refused.example" in note["notetext"]
    assert journal.entry(email_id).state == FAILED  # type: ignore[union-attr]
    alert = next(a for a in open_alerts(database) if a.subject == email_id)
    assert alert.code == ALERT_REFUSED and "550" in alert.message
    assert send_pending(DataverseOutbox(crm, pair.me), smtp_sender(smtp), journal).failed == 0


def test_smtp_throttled_crm_while_marking_sends_nothing_twice(
    pair: SandboxPair, crm: DataverseClient, database: Database, smtp: Any
) -> None:
    email_id = pending_email(crm, pair.me, "SMTP throttled")
    journal = SendJournal(database, ORG_ID)
    pair.faults.set(Fault("429", every=1, match="SendEmail", delay=1))
    assert send_pending(DataverseOutbox(crm, pair.me), smtp_sender(smtp), journal).stopped
    pair.faults.clear()

    result = send_pending(DataverseOutbox(crm, pair.me), smtp_sender(smtp), journal)

    assert (result.sent, result.already_sent) == (0, 1)
    assert len(received(smtp, "SMTP throttled")) == 1
    assert crm_email(crm, email_id)["statuscode"] == 3


def test_the_tracking_token_ends_the_subject_sent(
    pair: SandboxPair, crm: DataverseClient, database: Database, smtp: Any
) -> None:
    email_id = pending_email(crm, pair.me, "Quote")
    token = crm.get("emails", email_id, select=["trackingtoken"])["trackingtoken"]

    send_pending(
        DataverseOutbox(crm, pair.me),
        smtp_sender(smtp),
        SendJournal(database, ORG_ID),
        tracking_token=crm_tokens(),
    )

    assert token and len(received(smtp, f"Quote {token}")) == 1
    row = crm.get("emails", email_id, select=["trackingtoken", "statuscode"])
    assert (row["trackingtoken"], row["statuscode"]) == (token, 3)


# --- the sandbox's SendEmail, as strict as Dataverse -----------------------------------------


def send_email(client: DataverseClient, email_id: str, body: dict[str, Any]) -> dict[str, Any]:
    path = f"emails({email_id})/Microsoft.Dynamics.CRM.SendEmail"
    return dict(client.request("POST", path, json_body=body).json())


def test_send_email_records_sent_and_senton_is_not_writable(
    pair: SandboxPair, crm: DataverseClient
) -> None:
    """SendEmail with IssueSend false "just record[s] it as sent" (SendEmailRequest.IssueSend):
    Completed/Sent with `senton` from the server, the only way to set it, since `senton` is in
    email.md's "Read-only columns" (false for IsValidForCreate and IsValidForUpdate)."""
    email_id, _, _ = crm.create("emails", {"subject": "Recorded"})

    answer = send_email(crm, email_id, {"IssueSend": False, "TrackingToken": "CRM:0009999"})

    assert answer["Subject"] == "Recorded"
    assert answer["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.SendEmailResponse")
    row = crm.get("emails", email_id, select=["statecode", "statuscode", "senton", "trackingtoken"])
    assert (row["statecode"], row["statuscode"], row["trackingtoken"]) == (1, 3, "CRM:0009999")
    assert row["senton"]
    with pytest.raises(Invalid) as refused:
        crm.update("emails", email_id, {"senton": "2020-01-01T00:00:00Z"})
    assert "'senton'" in refused.value.message


def test_send_email_to_send_queues_it_pending_send_and_needs_a_recipient(
    pair: SandboxPair, crm: DataverseClient
) -> None:
    """IssueSend true queues the email for the client that delivers the user's outgoing email
    (email-activity-entities.md: Outlook or the email router "polls Dataverse for pending email
    messages"), with a tracking token; without a To/Cc/Bcc party it is refused with
    EmailRecipientNotSpecified 0x80040b04 (Web service error codes)."""
    lonely, _, _ = crm.create("emails", {"subject": "Nobody"})
    with pytest.raises(Invalid) as refused:
        send_email(crm, lonely, {"IssueSend": True})
    assert refused.value.code == "0x80040b04"
    assert "at least one recipient" in refused.value.message
    assert crm_email(crm, lonely)["statuscode"] == 1  # still a draft

    queued = pending_email(crm, pair.me, "Queued")
    row = crm.get("emails", queued, select=["statecode", "statuscode", "trackingtoken"])
    assert (row["statecode"], row["statuscode"]) == (1, 6)
    assert str(row["trackingtoken"]).startswith("CRM:")


def test_send_email_refuses_an_email_that_cannot_be_sent(
    pair: SandboxPair, crm: DataverseClient
) -> None:
    """Only a Draft or Failed email (state Open) can be sent, and a Pending Send one recorded as
    sent (email.md StatusCode: 1 Draft and 8 Failed are state 0). The docs name no error code;
    the sandbox answers InvalidOperation 0x8004023b (a documented code) and says why."""
    queued = pending_email(crm, pair.me, "Twice")
    with pytest.raises(Invalid) as again:
        send_email(crm, queued, {"IssueSend": True})
    assert again.value.code == "0x8004023b" and "Pending Send" in again.value.message

    send_email(crm, queued, {"IssueSend": False})
    with pytest.raises(Invalid) as sent:
        send_email(crm, queued, {"IssueSend": False})
    assert sent.value.code == "0x8004023b" and "is Sent" in sent.value.message

    for body in ({}, {"IssueSend": "yes"}, {"IssueSend": True, "Unknown": 1}):
        with pytest.raises(Invalid):
            send_email(crm, queued, body)
