"""A small world for the tracking tests: one CRM organization in memory, users with their
own mailbox and their own local database (each an install of their own).

Records: Carol (contact), Lee (lead), Acme (account), Alice and Bob (users), and an
opportunity to be Regarding. Alice's option defaults to "all".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.schema import CreateIndex, CreateTable

from sync.mail.facade import RecordRef
from sync.mail.links import MailLinks
from sync.mail.memory import MemoryEmailOrg, MemoryEmails, MemoryTrackingMailbox
from sync.mail.settings import EmailSettings, TrackedFolder, utc_text
from sync.mail.track_run import Tracker, TrackResult, TrackSettings
from sync.store.base import Base
from sync.store.db import Database

ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
CAROL = "carol@customer.example"
LEE = "lee@lead.example"
ACME = "info@acme.example"
STRANGER = "someone@elsewhere.example"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ORG_ID = "org-1"
TABLES = ("links", "sync_tokens", "item_errors", "alerts", "settings", "runs")


def moment(value: datetime) -> str:
    return utc_text(value)


_DDL: list[str] = []


def new_database() -> Database:
    """An empty local database (in memory) with the tables tracking uses (their DDL compiled
    once: the state machine makes hundreds of these)."""
    database = Database("sqlite://")
    if not _DDL:
        for name in TABLES:
            table = Base.metadata.tables[name]
            _DDL.append(str(CreateTable(table).compile(database.engine)))
            _DDL.extend(str(CreateIndex(i).compile(database.engine)) for i in table.indexes)
    with database.engine.begin() as connection:
        for statement in _DDL:
            connection.exec_driver_sql(statement)
    return database


@dataclass
class User:
    """One user's install: mailbox, CRM view, local state and choices."""

    address: str
    record: RecordRef
    org: MemoryEmailOrg
    mailbox: MemoryTrackingMailbox
    database: Database
    settings: EmailSettings = field(default_factory=lambda: EmailSettings(option="all"))
    clock: datetime = START + timedelta(hours=1)
    pop3: bool = False

    @property
    def directory(self) -> MemoryEmails:
        return MemoryEmails(self.org, self.record.id)

    @property
    def links(self) -> MailLinks:
        return MailLinks(self.database, ORG_ID)

    def track_settings(self) -> TrackSettings:
        settings = self.settings
        if settings.started_at is None:
            settings = EmailSettings(**{**settings.__dict__, "started_at": moment(START)})
        return TrackSettings.from_settings(
            settings, self.record, [self.address], pop3=self.pop3, clock=lambda: self.clock
        )

    def tracker(self) -> Tracker:
        return Tracker(self.directory, self.mailbox, self.links, self.track_settings())

    def run(self) -> TrackResult:
        result = self.tracker().run()
        self.clock += timedelta(minutes=5)
        return result

    def receive(self, folder: str = "inbox", when: datetime | None = None, **fields: Any) -> str:
        """A message arrives in `folder` (received an hour after the tracking start)."""
        when = when or START + timedelta(minutes=30)
        fields.setdefault("sender", STRANGER)
        fields.setdefault("to", [self.address])
        fields.setdefault("subject", "Hello")
        fields.setdefault("body", "Hi there")
        fields.setdefault("received", moment(when))
        fields.setdefault("sent", moment(when - timedelta(minutes=1)))
        return self.mailbox.deliver(folder, **fields)

    def send(self, when: datetime | None = None, **fields: Any) -> str:
        """A message the user sent (its copy in Sent Items)."""
        fields.setdefault("sender", self.address)
        fields.setdefault("to", [STRANGER])
        return self.receive("sentitems", when, **fields)

    def with_folder(self, folder_id: str, regarding: RecordRef | None = None) -> None:
        name = self.mailbox.folders.get(folder_id, folder_id)
        folders = (*self.settings.tracked_folders, TrackedFolder(folder_id, name, regarding))
        self.settings = EmailSettings(**{**self.settings.__dict__, "tracked_folders": folders})

    def option(self, option: str, **more: Any) -> None:
        self.settings = EmailSettings(**{**self.settings.__dict__, "option": option, **more})


@dataclass
class World:
    org: MemoryEmailOrg
    users: dict[str, User]
    carol: RecordRef
    lee: RecordRef
    acme: RecordRef
    deal: RecordRef

    @property
    def alice(self) -> User:
        return self.users[ALICE]

    @property
    def bob(self) -> User:
        return self.users[BOB]

    def emails(self) -> list[Any]:
        return list(self.org.emails.values())

    def email_of(self, message_id: str) -> Any:
        [found] = self.org.with_message_id(message_id)
        return found


def make_world(page_size: int = 100) -> World:
    org = MemoryEmailOrg()
    carol = org.add_record("contacts", "c-carol", "Carol Contact", CAROL)
    lee = org.add_record("leads", "l-lee", "Lee Lead", LEE)
    acme = org.add_record("accounts", "a-acme", "Acme", ACME)
    deal = org.add_record("opportunities", "o-deal", "The big deal")
    users = {}
    for address, user_id, name in ((ALICE, "u-alice", "Alice"), (BOB, "u-bob", "Bob")):
        record = org.add_record("systemusers", user_id, name, address)
        users[address] = User(
            address,
            record,
            org,
            MemoryTrackingMailbox(address, page_size=page_size),
            new_database(),
        )
    return World(org, users, carol, lee, acme, deal)
