"""What the Mail page and the dashboard ask of email tracking: one small facade.

The web layer (webapp/mail.py) knows only this protocol; `sync.mail.service.MailService`
implements it over the live sides (EWS or POP3 mailbox, Dataverse), and the web tests use an
in-memory implementation. Every call is short (one page of a folder, one message): the page
stays responsive and a slow server shows as an error message, not a hung page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

SEARCHABLE = ("contacts", "accounts", "leads", "opportunities")
"""The tables "Set Regarding" searches (as the Outlook add-in's regarding lookup)."""

TRACKED_FOLDERS_MAX = 25
"""At most 25 tracked folders (Dynamics' limit)."""


@dataclass(frozen=True)
class RecordRef:
    """A CRM record named by its entity set and id, with its display name."""

    entity_set: str
    id: str
    name: str = ""

    @property
    def bind(self) -> str:
        """The `@odata.bind` value of the record."""
        return f"/{self.entity_set}({self.id})"


@dataclass(frozen=True)
class MessageRow:
    """One mailbox message as the Mail page lists it."""

    id: str
    """The mailbox item id (EWS ItemId; POP3: the message's UIDL-based id)."""
    folder: str
    """"inbox", "sentitems" or a tracked folder's id."""
    subject: str
    sender: str
    received: str
    """ISO 8601 UTC moment."""
    tracked: bool
    crm_email_id: str | None = None
    regarding: RecordRef | None = None
    pending: bool = False
    """Tracked in the mailbox (category) but not yet in the CRM: the next run creates it."""


@dataclass(frozen=True)
class FolderRow:
    """A folder under the Inbox, and whether (and with which Regarding) it is tracked."""

    id: str
    name: str
    tracked: bool
    regarding: RecordRef | None = None


@dataclass(frozen=True)
class MailCounts:
    """The dashboard's "Email tracking" and "Outgoing email" cards (this and the last run)."""

    tracked_total: int
    tracked_last_run: int
    sent_total: int
    sent_last_run: int
    failed_to_send: int
    last_run: str | None
    """ISO 8601 UTC moment of the last run that covered email, None before the first."""


class MailError(Exception):
    """A Mail-page action could not be done; the message says why, in words for the user."""


class MailFacade(Protocol):
    """The Mail page's operations. Track/untrack/regarding act at once (not at the next run):
    the user clicked and waits to see the result."""

    def recent(self, folder: str, limit: int = 50) -> Sequence[MessageRow]:
        """The newest messages of `folder` ("inbox", "sentitems" or a folder id)."""
        ...

    def track(self, message_id: str, regarding: RecordRef | None = None) -> MessageRow:
        """Track the message: the CRM email is created (or found by Message-Id) and linked."""
        ...

    def untrack(self, message_id: str) -> MessageRow:
        """Remove the category and the link; the CRM email stays."""
        ...

    def set_regarding(self, message_id: str, regarding: RecordRef | None) -> MessageRow:
        """Set (or clear, with None) the Regarding of the tracked message's CRM email;
        tracks the message first when it is not tracked yet."""
        ...

    def search_records(self, text: str, limit: int = 25) -> Sequence[RecordRef]:
        """The first `limit` records of SEARCHABLE whose name starts with / contains `text`."""
        ...

    def folders(self) -> Sequence[FolderRow]:
        """The folders under the Inbox, with their tracked state."""
        ...

    def set_folder_tracking(
        self, folder_id: str, tracked: bool, regarding: RecordRef | None = None
    ) -> FolderRow:
        """Mark a folder tracked (at most TRACKED_FOLDERS_MAX) or not; raises MailError."""
        ...

    def counts(self) -> MailCounts:
        """What the dashboard cards show."""
        ...
