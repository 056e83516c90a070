"""The two ports email tracking works through: the CRM's emails and the mailbox's messages.

Tracking is one-way (mailbox → CRM) and keyed by the Internet Message-Id, not a three-way merge,
so it has its own small pipeline (`sync.mail.tracking` decides, `sync.mail.track_run` applies)
over these ports. `sync.crm.emails.DataverseEmails` and `sync.mail.memory` implement
`EmailDirectory`; `EwsSide`/`Pop3Side` (with `sync.mailbox.ews_mail`) and the in-memory
mailbox implement `TrackingMailbox`.

Settings in the profile (sync.setup.profile.Profile keys), one place for all of email:
- `tracking_option`: one of TRACKING_OPTIONS (default "none": any other takes incoming email
  from server-side sync, so it is the user's choice; `sync.mail.settings` reads and writes
  all of these);
- `track_sent_items`: bool, default True (Sent Items are tracked too; opt-out);
- `track_days_back`: int ≥ 0, default 0 (at setup: also track the last N days);
- `tracking_started_at`: ISO UTC moment set when tracking is first turned on; older messages
  are not tracked automatically (minus track_days_back);
- `tracking_token`: {"enabled": bool, "prefix": str, "digits": int} (default enabled, "CRM:",
  10 digits: `sync.mail.token`);
- `tracked_folders`: [{"id", "name", "regarding": {"entity_set", "id", "name"} | None}] (≤ 25);
- `send_crm_email`: bool, default False (CRM email in Pending Send goes out through the mailbox).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from sync.mail.facade import RecordRef
from sync.sides import Page, Result, SideError, Upsert

TRACKING_OPTIONS = ("none", "all", "replies", "records", "email_enabled")
"""Dynamics' personal options: none / all email messages / replies to email tracked in the CRM /
email from CRM contacts, leads and accounts / email from any email-enabled CRM record."""

FROM, TO, CC, BCC = 1, 2, 3, 4
"""`participationtypemask` of email parties (activityparty.md)."""


@dataclass(frozen=True)
class Party:
    """One address on a CRM email, resolved to a record or kept as `addressused`."""

    mask: int
    address: str
    record: RecordRef | None = None


@dataclass(frozen=True)
class CrmEmail:
    """A CRM email activity as tracking and correlation need it."""

    id: str
    subject: str
    message_id: str | None
    outgoing: bool
    regarding: RecordRef | None = None
    tracking_token: str | None = None
    conversation_index: str | None = None
    parties: tuple[Party, ...] = ()
    status: int | None = None
    """`statuscode` (email.md: 3 Sent, 4 Received, 6 Pending Send, 8 Failed, …)."""


@dataclass(frozen=True)
class NewEmail:
    """A CRM email to create from a tracked message; `id` is the GUID we choose (idempotency)."""

    id: str
    subject: str
    body_html: str
    message_id: str
    outgoing: bool
    sent_on: str | None
    received_on: str | None
    parties: tuple[Party, ...]
    in_reply_to: str | None = None
    conversation_index: str | None = None
    tracking_token: str | None = None
    regarding: RecordRef | None = None


@dataclass(frozen=True)
class AttachmentData:
    """A message's attachment; `content` is None when it was not fetched (over the limit)."""

    name: str
    content_type: str
    size: int
    content: bytes | None


@dataclass(frozen=True)
class NewAttachment:
    """A file to attach to CRM email `email_id`; `id` is the activitymimeattachment id we
    choose (a retry adds the same one)."""

    email_id: str
    id: str
    data: AttachmentData


class EmailDirectory(Protocol):
    """The CRM as email tracking sees it."""

    def emails_by_message_id(self, message_ids: Sequence[str]) -> dict[str, CrmEmail]:
        """CRM emails carrying these Internet Message-Ids (deduplication; In-Reply-To)."""
        ...

    def email_by_token(self, token: str) -> CrmEmail | None:
        """The CRM email with this tracking token, if any."""
        ...

    def email_by_conversation(self, conversation_index: str) -> CrmEmail | None:
        """A CRM email of the same conversation (the index's first 22 bytes), if any."""
        ...

    def resolve(self, addresses: Sequence[str], tables: Collection[str]) -> dict[str, RecordRef]:
        """Lower-cased address → the record of `tables` with that address (email-enabled
        tables; "records" option: contacts, leads, accounts)."""
        ...

    def create_email(self, email: NewEmail) -> CrmEmail:
        """Create it (parties inline); when `email.id` exists already, return that one."""
        ...

    def create_emails(self, emails: Sequence[NewEmail]) -> list[CrmEmail | SideError]:
        """Create many in as few requests as the service allows, each alone in its success or
        failure: one answer per email, in order (the email, or the error that refused it; an
        email whose id exists answers the existing one). An error of the whole call
        (throttled, away, sign-in refused) stands for every email it left unwritten."""
        ...

    def add_parties(self, email_id: str, parties: Sequence[Party]) -> None:
        """Add parties to an existing email (a second user tracking the same message)."""
        ...

    def add_attachment(self, email_id: str, attachment_id: str, data: AttachmentData) -> None:
        """Attach (as activitymimeattachment); idempotent by `attachment_id`."""
        ...

    def add_attachments(self, attachments: Sequence[NewAttachment]) -> list[SideError | None]:
        """Attach many, each alone in its success or failure: one answer per file, in order
        (None: it is there, now or before; an Invalid: the organization refused it; an error
        of the whole call stands for every file it left unanswered)."""
        ...

    def set_regarding(self, email_id: str, regarding: RecordRef | None) -> None:
        """Set or clear the email's Regarding."""
        ...

    def attachment_limit(self) -> int:
        """The organization's attachment size limit in bytes (organization.maxuploadfilesize)."""
        ...

    def search_records(self, text: str, tables: Sequence[str], limit: int) -> list[RecordRef]:
        """Records of `tables` whose primary name contains `text` (the Set Regarding search)."""
        ...


class TrackingMailbox(Protocol):
    """What tracking needs of a mailbox beyond the Side interface's reads."""

    def read_changes(self, kind: str, token: str | None, known: None = None) -> Iterator[Page]:
        """Messages of kind "messages:<folder>" ("inbox", "sentitems", a folder id)."""
        ...

    def attachments(self, item_id: str, limit: int) -> list[AttachmentData]:
        """The message's attachments; those larger than `limit` bytes come without content."""
        ...

    def set_categories(
        self, ids: Sequence[str], add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> list[Result]:
        """Add / remove categories on messages (the tracked category); one result per id."""
        ...

    def subfolders(self, parent: str = "inbox") -> list[tuple[str, str]]:
        """(id, name) of the folders under `parent` (tracked folders are chosen among them)."""
        ...

    def recent(self, folder: str, limit: int) -> list[Upsert]:
        """The newest `limit` messages of `folder`, newest first (the Mail page)."""
        ...

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        """The messages with these item ids as they are now (any folder: EWS GetItem answers
        by id; `kind` is "messages:<folder>" of where they were seen); missing ones are absent.
        Tracking re-reads a parked message or one whose CRM create was interrupted, and the
        Mail page's Track reads the message it was given (`Side.read`, added by h1a)."""
        ...
