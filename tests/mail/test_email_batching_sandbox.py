"""Email tracking's `$batch` creates on the sandbox (real HTTP: Dataverse Web API and EWS).

Tracking writes up to `crm_batch` messages' CRM emails in one `$batch` (one change set each,
`Prefer: odata.continue-on-error`). Counted here from the sandbox's side: its request log (one
`$batch:<operations>` entry per request) and what its `$batch` handler was given (a spy on
`sandbox.dataverse.batch.execute`: the change sets and the email each one creates), never from
the client's own account. Three promises: ceil(N / crm_batch) requests make N emails once each;
one change set the service refuses fails alone; a crash after the `$batch` and before the links
record it makes no second email."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sandbox.dataverse import batch as served_batch
from sandbox.dataverse.batch import ChangeSet, Operation
from sandbox.requestlog import LoggedRequest
from sync.mail.links import PENDING_CRM, SYNCED, TAGGING, MailLink, MailLinks
from sync.mail.track_run import Tracker, TrackResult
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.memory import Crash
from sync.runs import open_alerts
from sync.sides import Invalid
from sync.store.db import Database
from tests.e2e.harness import ALICE, ORG, ORG_ID, SandboxPair, start_pair
from tests.mail.test_email_sandbox import Install, emails_with

SENDER = "dana.batch@customer.example"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SandboxPair]:
    """A pair of its own per test: each test reads Alice's whole Inbox from an empty state."""
    with start_pair(tmp_path) as running:
        yield running


@dataclass
class Served:
    """What the sandbox's `$batch` handler was given, one entry per request, in order: for each
    change set that creates an email, that email's Message-Id (None for other parts)."""

    batches: list[list[str | None]] = field(default_factory=list)

    def creates(self, since: int = 0) -> list[list[str]]:
        """The email-creating batches (from the `since`-th request on): their Message-Ids."""
        found = [[m for m in parts if m] for parts in self.batches[since:]]
        return [ids for ids in found if ids]


def _created_message_id(item: Operation | ChangeSet) -> str | None:
    if not isinstance(item, ChangeSet) or not item.operations:
        return None
    first = item.operations[0]
    if first.method != "POST" or urlsplit(first.url).path.rsplit("/", 1)[-1] != "emails":
        return None
    return str(json.loads(first.body)["messageid"])


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Served:
    record = Served()
    execute = served_batch.execute

    def spy(items: list[Operation | ChangeSet], *args: Any, **kwargs: Any) -> Any:
        record.batches.append([_created_message_id(item) for item in items])
        return execute(items, *args, **kwargs)

    monkeypatch.setattr(served_batch, "execute", spy)
    return record


def logged_batches(pair: SandboxPair) -> list[LoggedRequest]:
    return [e for e in pair.requests("dataverse") if e.method == "POST" and e.target == "$batch"]


def message(n: int, sender: str = SENDER) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Customer <{sender}>"
    mail["To"] = f"Alice <{ALICE}>"
    mail["Subject"] = f"Batch message {n:03d}"
    mail["Message-ID"] = message_id(n)
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail.set_content(f"Message number {n}.\n")
    return mail.as_bytes()


def message_id(n: int) -> str:
    return f"<batch-{n:03d}@customer.example>"


def deliver(pair: SandboxPair, numbers: Sequence[int], **senders: str) -> dict[int, str]:
    """Messages `numbers` into Alice's Inbox (n → item id); `senders["m<n>"]` overrides one."""
    return {
        n: pair.ews.deliver_mime(ALICE, message(n, senders.get(f"m{n}", SENDER))) for n in numbers
    }


def tracker(
    alice: Install, database: Database, crm_batch: int, later: timedelta | None = None
) -> Tracker:
    """A fresh run object over `database` (what a new process would build); `later`: its clock
    that far ahead (past a parked message's backoff)."""
    settings = replace(alice.settings, crm_batch=crm_batch)
    if later is not None:
        settings = replace(settings, clock=lambda: datetime.now(UTC) + later)
    return Tracker(alice.directory, alice.mailbox, MailLinks(database, ORG_ID), settings)


def links_by_message(database: Database) -> dict[str, MailLink]:
    links = MailLinks(database, ORG_ID).all()
    by_message = {str(link.message_id): link for link in links}
    assert len(by_message) == len(links), "one link per message"
    return by_message


def assert_once_each(pair: SandboxPair, numbers: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Each message is exactly one CRM email (by Message-Id), with its subject."""
    rows: dict[int, dict[str, Any]] = {}
    for n in numbers:
        found = emails_with(pair, message_id(n))
        assert len(found) == 1, f"message {n}: {len(found)} CRM emails"
        assert found[0]["subject"] == f"Batch message {n:03d}"
        rows[n] = found[0]
    return rows


def all_emails(pair: SandboxPair) -> int:
    with pair.dataverse.store.lock:
        return len(pair.dataverse.table(ORG, "emails").rows)


# --- 1. ceil(N / crm_batch) requests, N emails ------------------------------------------------


@pytest.mark.parametrize(("total", "crm_batch"), [(25, 10), (250, 100)])
def test_n_messages_take_ceil_n_over_crm_batch_batches_and_land_once_each(
    pair: SandboxPair, served: Served, total: int, crm_batch: int
) -> None:
    """N messages in one Inbox page: ceil(N / crm_batch) `$batch` requests create their emails,
    `crm_batch` change sets (a POST and the PATCH to Completed/Received: two operations) each,
    the last one the rest; no email is POSTed on its own; each message is one CRM email and its
    link is synced (category set); a second run makes nothing."""
    numbers = range(total)
    deliver(pair, numbers)
    alice = Install(pair, ALICE, pair.new_database())
    try:
        result = tracker(alice, alice.database, crm_batch).run()
        counts = (result.tracked, result.linked, result.errors, result.stopped)
        assert counts == (total, 0, 0, False)

        sizes = [len(ids) for ids in served.creates()]
        expected = [crm_batch] * (total // crm_batch) + [total % crm_batch] * (
            total % crm_batch > 0
        )
        assert len(sizes) == math.ceil(total / crm_batch)
        assert sizes == expected
        created = Counter(m for ids in served.creates() for m in ids)
        assert created == Counter({message_id(n): 1 for n in numbers}), "each create sent once"
        # the request log agrees: one `$batch` entry per request the handler ran, the create
        # batches answered 200 after running both operations of every change set
        log = logged_batches(pair)
        assert len(log) == len(served.batches)
        create_entries = [e for e, parts in zip(log, served.batches, strict=True) if any(parts)]
        assert [(e.status, e.detail) for e in create_entries] == [
            (200, f"$batch:{2 * size}") for size in expected
        ]
        assert pair.log.count(service="dataverse", method="POST", target="emails") == 0

        rows = assert_once_each(pair, numbers)
        assert all_emails(pair) == total
        assert all(row["statuscode"] == 4 and row["statecode"] == 1 for row in rows.values())
        links = links_by_message(alice.database)
        assert set(links) == {message_id(n) for n in numbers}
        for n, row in rows.items():
            link = links[message_id(n)]
            assert (link.state, link.tagged, link.email_id) == (SYNCED, True, row["activityid"])

        before = len(served.batches)
        again = tracker(alice, alice.database, crm_batch).run()
        assert (again.tracked, again.linked, again.errors) == (0, 0, 0)
        assert served.creates(since=before) == [] and all_emails(pair) == total
    finally:
        alice.close()


# --- 2. one refused change set ------------------------------------------------------------------


def test_one_refused_message_fails_alone_and_the_batch_is_not_repeated(
    pair: SandboxPair, served: Served
) -> None:
    """Six messages, one `$batch`: the fourth one's sender is a contact another user deletes
    after the run resolved the addresses and before the create, so its change set binds
    `partyid_contact` to a row that is gone. Dataverse refuses that create: 404 with
    0x80040217 "contact With Id = … Does Not Exist" (ObjectDoesNotExistErrorCode, -2147220969:
    learn.microsoft.com dotnet/api/microsoft.xrm.sdk.data.exceptions.objectnotfoundexception;
    sandbox/README.md "Binding to a missing row → 404 0x80040217"), and the sandbox rolls back
    that change set alone (continue-on-error). The five others are created once; the refused
    one is not created, is an item error (parked, counted in `errors`) and its link stays
    pending, not tracked (no category). A run before its backoff is over leaves it alone; the
    next run (its clock a day on, past the backoff) retries only it, with the id chosen before the refused create and the sender now an
    address, and creates none of the five again."""
    gone = "dana.gone@customer.example"
    doomed = pair.dataverse.insert(
        ORG,
        "contacts",
        {"firstname": "Dana", "lastname": "Gone", "emailaddress1": gone},
        as_user=ALICE,
    )
    numbers = range(6)
    items = deliver(pair, numbers, m3=gone)
    alice = Install(pair, ALICE, pair.new_database())
    create_emails = alice.directory.create_emails
    deleted: list[str] = []

    def deleted_meanwhile(emails: Any) -> Any:
        if not deleted:  # another user deletes the contact once the run has resolved it
            alice.client.request("DELETE", f"contacts({doomed})")
            deleted.append(doomed)
        return create_emails(emails)

    alice.directory.create_emails = deleted_meanwhile  # type: ignore[method-assign]
    try:
        result = tracker(alice, alice.database, 10).run()
        assert deleted == [doomed]
        assert (result.tracked, result.errors, result.stopped) == (5, 1, False)
        [sent] = served.creates()
        assert sent == [message_id(n) for n in numbers], "all six in one request"
        log = zip(logged_batches(pair), served.batches, strict=True)
        [entry] = [e for e, parts in log if any(parts)]
        assert (entry.status, entry.detail) == (200, "$batch:11"), "five pairs and one refused POST"

        good = [0, 1, 2, 4, 5]
        assert_once_each(pair, good)
        assert emails_with(pair, message_id(3)) == [], "the refused email is not created"
        assert all_emails(pair) == 5
        links = links_by_message(alice.database)
        assert all(links[message_id(n)].state == SYNCED for n in good)
        refused = links[message_id(3)]
        assert refused.state == PENDING_CRM and not refused.tagged, "not marked tracked"
        marks = MailLinks(alice.database, ORG_ID)
        assert marks.parked_ids() == {items[3]}, "the refused message is the one item error"
        copy = alice.mailbox.read("messages:inbox", [items[3]])[items[3]]
        assert TRACKED_CATEGORY not in (copy.fields.get("categories") or [])

        alice.directory.create_emails = create_emails  # type: ignore[method-assign]
        # a run before the backoff is over leaves it alone: no create, still parked
        before = len(served.batches)
        soon = tracker(alice, alice.database, 10).run()
        assert (soon.tracked, soon.errors) == (0, 0)
        assert served.creates(since=before) == [], "not retried before its backoff"
        assert marks.parked_ids() == {items[3]}
        before = len(served.batches)
        again = tracker(alice, alice.database, 10, later=timedelta(days=1)).run()
        assert (again.tracked, again.linked, again.errors) == (1, 0, 0)
        assert served.creates(since=before) == [[message_id(3)]], "only the refused one again"
        rows = assert_once_each(pair, numbers)
        assert rows[3]["activityid"] == refused.email_id, "the id chosen before the refusal"
        assert all_emails(pair) == 6
        links = links_by_message(alice.database)
        assert all(links[message_id(n)].state == SYNCED for n in numbers)
        assert marks.parked_ids() == set()
        assert not [a for a in open_alerts(alice.database) if a.code == "item-failed"]
    finally:
        alice.close()


# --- 3. a crash between the `$batch` and the marks ------------------------------------------------


def test_a_crash_after_the_batch_before_the_marks_makes_no_second_email(
    pair: SandboxPair, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve messages, five a `$batch`: the process dies right after the first `$batch` made
    its five emails, when the first link would become "email made" (TAGGING). The links hold
    the ids chosen before the request, so a new run over the same database finds the five by
    Message-Id and links them as its own, sends no create for them (the sandbox's `$batch`
    handler sees the other seven only, each once), and each message is one CRM email."""
    numbers = range(12)
    deliver(pair, numbers)
    alice = Install(pair, ALICE, pair.new_database())
    update = MailLinks.update

    def die_at_the_mark(self: MailLinks, link: MailLink, **changes: Any) -> MailLink:
        if changes.get("state") == TAGGING:
            raise Crash("killed after the $batch, before the links record it")
        return update(self, link, **changes)

    try:
        monkeypatch.setattr(MailLinks, "update", die_at_the_mark)
        with pytest.raises(Crash):
            tracker(alice, alice.database, 5).run()
        monkeypatch.setattr(MailLinks, "update", update)
        first = [message_id(n) for n in range(5)]
        assert served.creates() == [first], "the crash came after the first $batch"
        made = assert_once_each(pair, range(5))
        assert all_emails(pair) == 5
        pending = links_by_message(alice.database)
        assert set(pending) == set(first)
        assert all(link.state == PENDING_CRM for link in pending.values()), "nothing marked"
        chosen = {m: link.email_id for m, link in pending.items()}
        assert {message_id(n): row["activityid"] for n, row in made.items()} == chosen

        before = len(served.batches)
        result: TrackResult = tracker(alice, alice.database, 5).run()  # a new process
        assert (result.tracked, result.errors, result.stopped) == (12, 0, False)
        again = served.creates(since=before)
        assert not set(first) & {m for ids in again for m in ids}, "no create of the five again"
        assert sorted(m for ids in again for m in ids) == [message_id(n) for n in range(5, 12)]
        assert [len(ids) for ids in again] == [5, 2]
        rows = assert_once_each(pair, numbers)
        assert all_emails(pair) == 12
        links = links_by_message(alice.database)
        assert set(links) == {message_id(n) for n in numbers}
        for n, row in rows.items():
            link = links[message_id(n)]
            assert (link.state, link.tagged, link.email_id) == (SYNCED, True, row["activityid"])
        assert all(links[m].email_id == chosen[m] for m in first)
    finally:
        alice.close()


# --- 4. a Message-Id longer than the column ---------------------------------------------------


def test_a_message_id_longer_than_the_column_is_written_and_found_by_its_first_320(
    pair: SandboxPair, served: Served
) -> None:
    """email.md: MessageId, MaxLength 320; RFC 5322 sets no limit. The sandbox refuses a longer
    value as the service does (400, 0x80044331 "… exceeded the maximum allowed length of
    '320'"), so the email is written with the first 320 characters, and looked up by them: a
    second run finds it and makes no second email."""
    long_id = "<" + "x" * 400 + "@customer.example>"
    with pair.crm_client() as client, pytest.raises(Invalid) as refused:
        client.create("emails", {"subject": "too long", "messageid": long_id})
    assert refused.value.code == "0x80044331" and "'320'" in refused.value.message
    mail = EmailMessage()
    mail["From"] = f"Customer <{SENDER}>"
    mail["To"] = f"Alice <{ALICE}>"
    mail["Subject"] = "A long Message-Id"
    mail["Message-ID"] = long_id
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail.set_content("Its id is longer than the CRM column.\n")
    pair.ews.deliver_mime(ALICE, mail.as_bytes())
    alice = Install(pair, ALICE, pair.new_database())
    try:
        result = tracker(alice, alice.database, 10).run()
        assert (result.tracked, result.errors) == (1, 0)
        [row] = emails_with(pair, long_id[:320])
        assert row["subject"] == "A long Message-Id" and all_emails(pair) == 1
        before = len(served.batches)
        again = tracker(alice, alice.database, 10).run()
        assert (again.tracked, again.errors) == (0, 0)
        assert served.creates(since=before) == [] and all_emails(pair) == 1
        assert alice.directory.emails_by_message_id([long_id])[long_id].id == row["activityid"]
    finally:
        alice.close()
