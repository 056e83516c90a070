"""Email tracking end to end on the sandbox (real HTTP: Dataverse Web API and EWS): a message
delivered to Alice's Inbox is tracked under "all" as one CRM email with its parties and its
attachments (one over the organization's limit skipped with an alert), the category is set on
her copy, and neither a re-run nor a fresh data directory makes a second email; Bob, who got
the same message as a blind copy, links to the same email and is added to its parties."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from sandbox.identity import user_by_upn
from sync.crm.client import DataverseClient, RetryPolicy
from sync.crm.emails import DataverseEmails
from sync.mail.facade import RecordRef
from sync.mail.links import SYNCED, MailLinks
from sync.mail.ports import BCC, FROM, TO
from sync.mail.settings import EmailSettings
from sync.mail.track_run import Tracker, TrackResult, TrackSettings
from sync.mailbox.ews import EwsConnection, EwsSide, OAuthToken
from sync.mailbox.ews_mail import EwsTrackingMailbox
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.runs import open_alerts
from sync.store.db import Database
from tests.e2e.harness import ALICE, ORG, ORG_ID, SandboxPair, start_pair

BOB = "bob@contoso.example"
CAROL = "carol.tracked@customer.example"
LIMIT = 2000
"""The organization's maxuploadfilesize for this test (base64 characters: 1,500 raw bytes)."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPair]:
    with start_pair(tmp_path_factory.mktemp("email")) as running:
        with running.dataverse.store.lock:
            for row in running.dataverse.table(ORG, "organizations").rows.values():
                row.values["maxuploadfilesize"] = LIMIT
        yield running


def user_id(upn: str) -> str:
    user = user_by_upn(upn)
    assert user is not None
    return user.systemuser_id(ORG)


class Install:
    """One user's install on the pair: the two ports, a local database, the settings."""

    def __init__(self, pair: SandboxPair, upn: str, database: Database) -> None:
        token = pair.tokens.static_token(upn)
        self.client = DataverseClient(
            pair.dataverse.api_url(ORG),
            lambda: token,
            retry=RetryPolicy(backoff=0.05, max_backoff=0.5),
            annotations="*",
        )
        connection = EwsConnection(
            pair.ews.url, upn, OAuthToken(lambda: token), ca_file=pair.ews.ca_file
        )
        self.side = EwsSide(connection)
        self.directory = DataverseEmails(self.client, user_id(upn))
        self.mailbox = EwsTrackingMailbox(self.side)
        self.database = database
        started = datetime.now(UTC) - timedelta(hours=1)
        self.settings = TrackSettings.from_settings(
            EmailSettings(option="all", started_at=started.strftime("%Y-%m-%dT%H:%M:%SZ")),
            RecordRef("systemusers", user_id(upn)),
            [upn],
        )

    def run(self) -> TrackResult:
        links = MailLinks(self.database, ORG_ID)
        return Tracker(self.directory, self.mailbox, links, self.settings).run()

    def close(self) -> None:
        self.client.close()


def message(message_id: str, bcc: str | None = None) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Carol Tracked <{CAROL}>"
    mail["To"] = f"Alice <{ALICE}>"
    if bcc:
        mail["Bcc"] = bcc
    mail["Subject"] = "Quote for 40 laptops"
    mail["Message-ID"] = message_id
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail.set_content("Hello Alice,\nplease find the quote attached.\n")
    mail.add_attachment(b"0123456789", maintype="text", subtype="plain", filename="notes.txt")
    mail.add_attachment(b"x" * 3000, maintype="application", subtype="octet-stream",
                        filename="drawing.bin")  # fmt: skip
    return mail.as_bytes()


def emails_with(pair: SandboxPair, message_id: str) -> list[dict[str, Any]]:
    with pair.dataverse.store.lock:
        table = pair.dataverse.table(ORG, "emails")
        return [
            dict(r.values) for r in table.rows.values() if r.values.get("messageid") == message_id
        ]


def parties_of(pair: SandboxPair, email_id: str) -> set[tuple[int, str | None]]:
    with pair.dataverse.store.lock:
        table = pair.dataverse.table(ORG, "activityparties")
        return {
            (r.values["participationtypemask"], r.values.get("_partyid_value"))
            for r in table.rows.values()
            if r.values.get("_activityid_value") == email_id
        }


def attachments_of(pair: SandboxPair, email_id: str) -> list[str]:
    with pair.dataverse.store.lock:
        table = pair.dataverse.table(ORG, "activitymimeattachments")
        return sorted(
            r.values.get("filename") or ""
            for r in table.rows.values()
            if r.values.get("_objectid_value") == email_id
        )


def test_a_delivered_message_is_tracked_once_with_parties_attachments_and_category(
    pair: SandboxPair, tmp_path: Path
) -> None:
    contact = pair.dataverse.insert(
        ORG, "contacts", {"firstname": "Carol", "lastname": "Tracked", "emailaddress1": CAROL},
        as_user=ALICE,
    )  # fmt: skip
    message_id = "<quote-40-laptops@customer.example>"
    item = pair.ews.deliver_mime(ALICE, message(message_id))
    pair.ews.deliver_mime(BOB, message(message_id, bcc=BOB))  # his copy names him, Alice's not
    alice = Install(pair, ALICE, pair.new_database())
    try:
        result = alice.run()
        assert (result.tracked, result.errors, result.attachments_skipped) == (1, 0, 1)
        [email] = emails_with(pair, message_id)
        email_id = email["activityid"]
        assert email["subject"] == "Quote for 40 laptops"
        assert email["directioncode"] is False
        assert parties_of(pair, email_id) == {(FROM, contact), (TO, user_id(ALICE))}
        assert attachments_of(pair, email_id) == ["notes.txt"]
        alert = next(a for a in open_alerts(alice.database) if a.code == "attachment-skipped")
        assert "drawing.bin" in alert.message and "Quote for 40 laptops" in alert.message
        copy = alice.mailbox.read("messages:inbox", [item])[item]
        assert TRACKED_CATEGORY in copy.fields["categories"], "the category is on Alice's copy"
        [link] = MailLinks(alice.database, ORG_ID).all()
        assert (link.state, link.email_id, link.tagged) == (SYNCED, email_id, True)

        again = alice.run()
        assert (again.tracked, again.linked, again.errors) == (0, 0, 0)
        fresh = Install(pair, ALICE, pair.new_database())  # a new install, an empty data dir
        try:
            result = fresh.run()
            assert (result.tracked, result.linked) == (0, 1)
        finally:
            fresh.close()
        assert len(emails_with(pair, message_id)) == 1

        bob = Install(pair, BOB, pair.new_database())
        try:
            result = bob.run()
            assert (result.tracked, result.linked, result.errors) == (0, 1, 0)
        finally:
            bob.close()
        [email] = emails_with(pair, message_id)
        parties = parties_of(pair, email_id)
        assert (FROM, contact) in parties and (TO, user_id(ALICE)) in parties
        assert (BCC, user_id(BOB)) in parties, "Bob is added to the one CRM email"
        assert attachments_of(pair, email_id) == ["notes.txt"], "attached once"
    finally:
        alice.close()
