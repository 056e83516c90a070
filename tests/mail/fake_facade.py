"""An in-memory `MailFacade` for the Mail page's tests: a few folders of messages, a few CRM
records to search, and a switch to make the next call fail as a slow or refusing server would;
and the app those tests use (`mail_app`, set up with `complete_setup`).

It keeps the contract's rules that the page relies on (at most TRACKED_FOLDERS_MAX tracked
folders, Set Regarding tracks an untracked message first, untrack keeps the CRM email) so a
page that got them wrong fails here, not only against the live service.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flask import Flask

from sync.mail.facade import (
    SEARCHABLE,
    TRACKED_FOLDERS_MAX,
    FolderRow,
    MailCounts,
    MailError,
    MailFacade,
    MessageRow,
    RecordRef,
)
from sync.setup.ports import MailboxConfig
from sync.setup.profile import CHOICES_SAVED, INSTANCE_DECIDED, MAILBOX_TESTED, Profile
from sync.store.db import Database
from sync.store.models import Organization


def _guid(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


DEMO_RECORDS: tuple[RecordRef, ...] = (
    RecordRef("contacts", _guid("c-ada"), "Ada Lovelace"),
    RecordRef("contacts", _guid("c-alan"), "Alan Turing"),
    RecordRef("contacts", _guid("c-yamada"), "山田 花子"),
    RecordRef("accounts", _guid("a-contoso"), "Contoso Ltd"),
    RecordRef("accounts", _guid("a-fabrikam"), "Fabrikam, Inc."),
    RecordRef("leads", _guid("l-adatum"), "Adatum lead: 40 laptops"),
    RecordRef("opportunities", _guid("o-contoso"), "Contoso: 200 licences"),
)


def demo_messages() -> list[MessageRow]:
    """Inbox, Sent Items and one tracked folder's messages, newest first per folder."""
    rows = [
        MessageRow(
            id=f"AAMkAD{n:04d}/inbox+id==",
            folder="inbox",
            subject=subject,
            sender=sender,
            received=f"2025-03-{20 - n:02d}T09:{n:02d}:00Z",
            tracked=False,
        )
        for n, (subject, sender) in enumerate(
            [
                ("Quote for 40 laptops", "buyer@adatum.example"),
                ("Meeting next week", "ada@contoso.example"),
                ("見積もりのお願い", "hanako@fabrikam.example"),
            ]
        )
    ]
    rows.append(
        MessageRow(
            id="AAMkAD0100/sent==",
            folder="sentitems",
            subject="Re: Quote for 40 laptops",
            sender="alice@contoso.example",
            received="2025-03-20T10:00:00Z",
            tracked=True,
            crm_email_id=_guid("e-sent"),
            regarding=DEMO_RECORDS[5],
        )
    )
    rows.append(
        MessageRow(
            id="AAMkAD0200/projects==",
            folder="folder-projects",
            subject="Project kick-off",
            sender="alan@contoso.example",
            received="2025-03-18T08:00:00Z",
            tracked=True,
            crm_email_id=_guid("e-project"),
        )
    )
    return rows


def demo_folders() -> list[FolderRow]:
    return [
        FolderRow("folder-projects", "Projects", True, DEMO_RECORDS[3]),
        FolderRow("folder-news", "Newsletters", False),
    ]


@dataclass
class FakeMailFacade:
    """`MailFacade` over lists; `calls` records each mutating call for the tests to check."""

    messages: list[MessageRow] = field(default_factory=demo_messages)
    records: list[RecordRef] = field(default_factory=lambda: list(DEMO_RECORDS))
    folder_rows: list[FolderRow] = field(default_factory=demo_folders)
    fail_with: str | None = None
    """The next call raises MailError with this text (then the switch resets)."""
    calls: list[tuple[str, object]] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            text, self.fail_with = self.fail_with, None
            raise MailError(text)

    def _find(self, message_id: str) -> int:
        for index, row in enumerate(self.messages):
            if row.id == message_id:
                return index
        raise MailError("This message is no longer in the mailbox.")

    def _put(self, index: int, row: MessageRow) -> MessageRow:
        self.messages[index] = row
        return row

    def recent(self, folder: str, limit: int = 50) -> Sequence[MessageRow]:
        self._maybe_fail()
        rows = [row for row in self.messages if row.folder == folder]
        return sorted(rows, key=lambda row: row.received, reverse=True)[:limit]

    def track(self, message_id: str, regarding: RecordRef | None = None) -> MessageRow:
        self._maybe_fail()
        self.calls.append(("track", message_id))
        index = self._find(message_id)
        row = self.messages[index]
        email_id = row.crm_email_id or _guid("email:" + message_id)
        return self._put(
            index,
            replace(row, tracked=True, crm_email_id=email_id, regarding=regarding or row.regarding),
        )

    def untrack(self, message_id: str) -> MessageRow:
        self._maybe_fail()
        self.calls.append(("untrack", message_id))
        index = self._find(message_id)
        row = self.messages[index]
        return self._put(index, replace(row, tracked=False, crm_email_id=None, regarding=None))

    def set_regarding(self, message_id: str, regarding: RecordRef | None) -> MessageRow:
        self._maybe_fail()
        self.calls.append(("regarding", (message_id, regarding)))
        index = self._find(message_id)
        row = self.messages[index]
        email_id = row.crm_email_id or _guid("email:" + message_id)
        return self._put(
            index, replace(row, tracked=True, crm_email_id=email_id, regarding=regarding)
        )

    def search_records(self, text: str, limit: int = 25) -> Sequence[RecordRef]:
        self._maybe_fail()
        self.searches.append(text)
        needle = text.casefold()
        found = [
            r for r in self.records if r.entity_set in SEARCHABLE and needle in r.name.casefold()
        ]
        found.sort(key=lambda r: (not r.name.casefold().startswith(needle), r.name))
        return found[:limit]

    def folders(self) -> Sequence[FolderRow]:
        self._maybe_fail()
        return list(self.folder_rows)

    def set_folder_tracking(
        self, folder_id: str, tracked: bool, regarding: RecordRef | None = None
    ) -> FolderRow:
        self._maybe_fail()
        self.calls.append(("folder", (folder_id, tracked, regarding)))
        index = next((i for i, f in enumerate(self.folder_rows) if f.id == folder_id), None)
        if index is None:
            raise MailError("This folder is no longer in the mailbox.")
        tracked_now = sum(1 for f in self.folder_rows if f.tracked and f.id != folder_id)
        if tracked and tracked_now >= TRACKED_FOLDERS_MAX:
            raise MailError(
                f"At most {TRACKED_FOLDERS_MAX} folders can be tracked. "
                "Stop tracking another folder first."
            )
        row = replace(
            self.folder_rows[index], tracked=tracked, regarding=regarding if tracked else None
        )
        self.folder_rows[index] = row
        return row

    def counts(self) -> MailCounts:
        tracked = sum(1 for row in self.messages if row.tracked)
        return MailCounts(tracked, 0, 0, 0, 0, None)


# --- the app the Mail page's tests use -----------------------------------------------------


def mail_app(data_dir: Path, facade: MailFacade | None, **config: Any) -> Flask:
    """The real app on `data_dir` with `facade` as its Mail facade (None: email not set up)."""
    from webapp import create_app
    from webapp.mail import FACADE_KEY

    settings: dict[str, Any] = {
        "DATA_DIR": str(data_dir),
        "LOGIN_TOKEN": "test-login-token",
        "SETUP_REDIRECT": False,
    }
    app = create_app({**settings, **config})
    app.extensions[FACADE_KEY] = (lambda: facade) if facade is not None else None
    return app


def complete_setup(database: Database, data_dir: Path) -> None:
    """Store what the wizard stores, so the profile counts as set up (the Mail menu shows)."""
    with database.session() as session:
        session.add(
            Organization(
                id="00000000-0000-0000-0000-00000000000a",
                unique_name="contoso",
                friendly_name="Contoso",
                url="https://contoso.example",
                api_url="https://contoso.example/api/data/v9.2",
                role="synchronizing",
            )
        )
    profile = Profile(database, data_dir)
    profile.save_mailbox(MailboxConfig("exchange", "alice@contoso.example"), {})
    for key in (MAILBOX_TESTED, INSTANCE_DECIDED, CHOICES_SAVED):
        profile.set(key, True)
    assert profile.is_complete()
