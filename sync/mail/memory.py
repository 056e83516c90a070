"""In-memory `EmailDirectory` and `TrackingMailbox`, faithful enough to drive the tests.

`MemoryEmailOrg` is one CRM organization's emails, attachments and email-enabled records;
`MemoryEmails(org, user_id)` is one user's view of it (several users share an org, as two
sandbox users share contoso). As in Dataverse, nothing makes `messageid` unique: two creates
with two ids and one Message-Id make two emails — deduplication is the tracker's job, and the
invariants of the tests check it. A create with an id that exists returns the existing row
(Dataverse answers a duplicate key, the real directory reads the row).

`MemoryTrackingMailbox` is a `MemoryMailbox` whose kinds are "messages:<folder>": a message
can be moved (a new id in the new folder, as EWS may give), categorised, and carries
attachments. Both take a `hook(point, operation)` to throttle or crash at any call.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sync.mail.correlate import HEADER_BYTES, _index_bytes, normalize_id
from sync.mail.facade import RecordRef
from sync.mail.ports import AttachmentData, CrmEmail, NewAttachment, NewEmail, Party
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.memory import MemoryMailbox
from sync.sides import (
    AuthError,
    Invalid,
    KnownVersions,
    NotFound,
    Page,
    Result,
    SideError,
    Throttled,
    TokenExpired,
    Unavailable,
    Upsert,
    Written,
)

Hook = Callable[[str, str], None]
"""hook(point, operation): point "before" or "after"; raise to fail or crash there."""

WHOLE = (Throttled, Unavailable, AuthError, TokenExpired)
"""Errors of a whole request, never of one email in it."""
DEFAULT_LIMIT = 5 * 1024 * 1024
"""Dataverse's default attachment size limit (organization.maxuploadfilesize: 5 MB)."""


@dataclass
class StoredEmail:
    id: str
    owner: str
    email: NewEmail
    parties: list[Party] = field(default_factory=list)
    regarding: RecordRef | None = None
    attachments: dict[str, AttachmentData] = field(default_factory=dict)

    def as_crm(self) -> CrmEmail:
        return CrmEmail(
            id=self.id,
            subject=self.email.subject,
            message_id=self.email.message_id,
            outgoing=self.email.outgoing,
            regarding=self.regarding,
            tracking_token=self.email.tracking_token,
            conversation_index=self.email.conversation_index,
            parties=tuple(self.parties),
            status=3 if self.email.outgoing else 4,
        )


class MemoryEmailOrg:
    """One organization: emails, attachments, and the records addresses resolve to."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.emails: dict[str, StoredEmail] = {}
        self.records: dict[str, dict[str, tuple[str, list[str]]]] = {}
        """entity set → {id: (name, addresses)}"""
        self.limit = limit
        self.hook: Hook | None = None
        self.calls: Counter[str] = Counter()

    def add_record(self, entity_set: str, record_id: str, name: str, *addresses: str) -> RecordRef:
        self.records.setdefault(entity_set, {})[record_id] = (name, [a.lower() for a in addresses])
        return RecordRef(entity_set, record_id, name)

    def _call(self, operation: str, point: str) -> None:
        if point == "before":
            self.calls[operation] += 1
        if self.hook is not None:
            self.hook(point, operation)

    def with_message_id(self, message_id: str) -> list[StoredEmail]:
        return [e for e in self.emails.values() if e.email.message_id == message_id]


class MemoryEmails:
    """`EmailDirectory` of one user (`user_id`, a systemusers id) over a `MemoryEmailOrg`."""

    def __init__(self, org: MemoryEmailOrg, user_id: str) -> None:
        self.org = org
        self.user_id = user_id

    def _crm(self, stored: StoredEmail) -> CrmEmail:
        return stored.as_crm()

    def emails_by_message_id(self, message_ids: Sequence[str]) -> dict[str, CrmEmail]:
        self.org._call("emails_by_message_id", "before")
        wanted = {normalize_id(i) for i in message_ids}
        found: dict[str, CrmEmail] = {}
        for stored in sorted(self.org.emails.values(), key=lambda e: e.id):
            if stored.email.message_id in wanted:
                found.setdefault(stored.email.message_id, self._crm(stored))
        self.org._call("emails_by_message_id", "after")
        return found

    def email_by_token(self, token: str) -> CrmEmail | None:
        self.org._call("email_by_token", "before")
        for stored in self.org.emails.values():
            if stored.email.tracking_token and stored.email.tracking_token.lower() == token.lower():
                return self._crm(stored)
        return None

    def email_by_conversation(self, conversation_index: str) -> CrmEmail | None:
        self.org._call("email_by_conversation", "before")
        raw = _index_bytes(conversation_index)
        if raw is None or len(raw) < HEADER_BYTES:
            return None
        for stored in self.org.emails.values():
            other = _index_bytes(stored.email.conversation_index)
            if other is not None and other[:HEADER_BYTES] == raw[:HEADER_BYTES]:
                return self._crm(stored)
        return None

    def resolve(self, addresses: Sequence[str], tables: Collection[str]) -> dict[str, RecordRef]:
        self.org._call("resolve", "before")
        found: dict[str, RecordRef] = {}
        for address in addresses:
            wanted = address.strip().lower()
            for table in tables:
                match = next(
                    (
                        RecordRef(table, rid, name)
                        for rid, (name, known) in sorted(self.org.records.get(table, {}).items())
                        if wanted in known
                    ),
                    None,
                )
                if match is not None:
                    found[wanted] = match
                    break
        return found

    def create_email(self, email: NewEmail) -> CrmEmail:
        self.org._call("create_email", "before")
        stored = self.org.emails.get(email.id)
        if stored is None:
            stored = StoredEmail(
                email.id, self.user_id, email, list(email.parties), email.regarding
            )
            self.org.emails[email.id] = stored
        self.org._call("create_email", "after")
        return self._crm(stored)

    def create_emails(self, emails: Sequence[NewEmail]) -> list[CrmEmail | SideError]:
        """One call (as one `$batch`), each email as `create_email` makes it: an error of the
        whole call (throttled, away, sign-in) answers for it and every email after it, as a
        request the service refused or stopped answering; another error is that email's."""
        self.org._call("create_emails", "before")
        answers: list[CrmEmail | SideError] = []
        for index, email in enumerate(emails):
            try:
                answers.append(self.create_email(email))
            except WHOLE as whole:
                answers += [whole] * (len(emails) - index)
                break
            except SideError as error:
                answers.append(error)
        return answers

    def add_parties(self, email_id: str, parties: Sequence[Party]) -> None:
        self.org._call("add_parties", "before")
        stored = self.org.emails.get(email_id)
        if stored is None:
            raise NotFound(f"email {email_id} does not exist", "0x80040217")
        stored.parties.extend(parties)
        self.org._call("add_parties", "after")

    def add_attachment(self, email_id: str, attachment_id: str, data: AttachmentData) -> None:
        self.org._call("add_attachment", "before")
        stored = self.org.emails.get(email_id)
        if stored is None:
            raise NotFound(f"email {email_id} does not exist", "0x80040217")
        if data.content is None or data.size > self.org.limit:
            raise Invalid("The attachment is larger than the organization allows.", "0x80043e09")
        stored.attachments.setdefault(attachment_id, data)
        self.org._call("add_attachment", "after")

    def add_attachments(self, attachments: Sequence[NewAttachment]) -> list[SideError | None]:
        """One call, each file as `add_attachment` adds it (errors as in `create_emails`)."""
        self.org._call("add_attachments", "before")
        answers: list[SideError | None] = []
        for index, attachment in enumerate(attachments):
            try:
                self.add_attachment(attachment.email_id, attachment.id, attachment.data)
                answers.append(None)
            except WHOLE as whole:
                answers += [whole] * (len(attachments) - index)
                break
            except SideError as error:
                answers.append(error)
        return answers

    def set_regarding(self, email_id: str, regarding: RecordRef | None) -> None:
        self.org._call("set_regarding", "before")
        stored = self.org.emails.get(email_id)
        if stored is None:
            raise NotFound(f"email {email_id} does not exist", "0x80040217")
        stored.regarding = regarding
        self.org._call("set_regarding", "after")

    def attachment_limit(self) -> int:
        self.org._call("attachment_limit", "before")
        return self.org.limit

    def search_records(self, text: str, tables: Sequence[str], limit: int) -> list[RecordRef]:
        self.org._call("search_records", "before")
        wanted = text.strip().lower()
        found: list[RecordRef] = []
        for table in tables:
            for rid, (name, _addresses) in sorted(self.org.records.get(table, {}).items()):
                if wanted in name.lower():
                    found.append(RecordRef(table, rid, name))
        return found[:limit]


class MemoryTrackingMailbox(MemoryMailbox):
    """A mailbox of messages: kind "messages:<folder>" per folder, ids unique across folders."""

    def __init__(self, address: str, page_size: int = 100, can_categorize: bool = True) -> None:
        super().__init__(page_size)
        self.address = address
        self.can_categorize = can_categorize
        self.folders: dict[str, str] = {}
        """Subfolders of the Inbox: id → name."""
        self.attached: dict[str, list[AttachmentData]] = {}
        self.mail_hook: Hook | None = None
        self._folder_ids = itertools.count(1)

    def _new_id(self) -> str:
        return f"{self.address.split('@')[0]}-item-{next(self._ids)}"

    def _mail_call(self, operation: str, point: str) -> None:
        if point == "before":
            self.calls[operation] += 1
        if self.mail_hook is not None:
            self.mail_hook(point, operation)

    # --- what the user (or the world) does -------------------------------------------------------

    def add_folder(self, name: str) -> str:
        folder_id = f"folder-{next(self._folder_ids)}-{name.lower()}"
        self.folders[folder_id] = name
        return folder_id

    def deliver(
        self,
        folder: str = "inbox",
        attachments: Sequence[AttachmentData] = (),
        **fields: Any,
    ) -> str:
        """A message arrives (or is filed) in `folder`; returns its item id."""
        fields.setdefault("categories", [])
        fields.setdefault("body_type", "Text")
        fields["folder"] = folder
        fields["has_attachments"] = bool(attachments)
        record = self.put(f"messages:{folder}", fields)
        if attachments:
            self.attached[record.id] = list(attachments)
        return record.id

    def find(self, item_id: str) -> tuple[str, dict[str, Any]] | None:
        """(folder, fields) of the message `item_id`."""
        for kind, table in self.tables.items():
            if kind.startswith("messages:") and item_id in table.records:
                return kind.split(":", 1)[1], table.records[item_id].fields
        return None

    def move(self, item_id: str, folder: str) -> str:
        """Move a message to `folder`: it gets a new id there (EWS ids can change on a move)."""
        found = self.find(item_id)
        assert found is not None, item_id
        old_folder, fields = found
        self.remove(f"messages:{old_folder}", item_id)
        moved = {k: v for k, v in fields.items() if k not in ("folder", "has_attachments")}
        new_id = self.deliver(folder, self.attached.pop(item_id, []), **moved)
        return new_id

    def categorize(self, item_id: str, categories: list[str]) -> None:
        found = self.find(item_id)
        assert found is not None, item_id
        self.edit(f"messages:{found[0]}", item_id, {"categories": list(categories)})

    def delete_message(self, item_id: str) -> None:
        found = self.find(item_id)
        assert found is not None, item_id
        self.remove(f"messages:{found[0]}", item_id)
        self.attached.pop(item_id, None)

    # --- TrackingMailbox ----------------------------------------------------------------------

    def read_changes(
        self, kind: str, token: str | None, known: KnownVersions | None = None
    ) -> Iterator[Page]:
        if self.mail_hook is not None:  # counted by MemorySide
            self.mail_hook("before", "read_changes")
        yield from super().read_changes(kind, token, known)

    def _position(self, kind: str, token: str) -> int:
        # MemorySide's token is "kind:epoch:end" and these kinds hold a colon themselves
        head, _, end = token.rpartition(":")
        name, _, epoch = head.rpartition(":")
        table = self.table(kind)
        if name != kind or not (epoch + end).isdigit():
            raise TokenExpired(f"token {token!r} is not for {kind}", code="bad-token")
        if int(epoch) != table.epoch or int(end) > len(table.log):
            raise TokenExpired("the sync state is no longer valid", code="expired")
        return int(end)

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        self._mail_call("read", "before")
        found: dict[str, Upsert] = {}
        for item_id in ids:
            where = self.find(item_id)
            if where is not None:
                record = self.records(f"messages:{where[0]}")[item_id]
                found[item_id] = self._upsert(record)
        return found

    def attachments(self, item_id: str, limit: int) -> list[AttachmentData]:
        self._mail_call("attachments", "before")
        return [
            a if a.size <= limit else replace(a, content=None)
            for a in self.attached.get(item_id, [])
        ]

    def set_categories(
        self, ids: Sequence[str], add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> list[Result]:
        self._mail_call("set_categories", "before")
        results: list[Result] = []
        for item_id in ids:
            where = self.find(item_id)
            if not self.can_categorize:
                results.append(Invalid("POP3 messages have no categories", "no-categories"))
                continue
            if where is None:
                results.append(NotFound(f"{item_id} does not exist", "ErrorItemNotFound"))
                continue
            kind = f"messages:{where[0]}"
            have = list(where[1].get("categories") or [])
            want = [c for c in have if c not in remove] + [c for c in add if c not in have]
            if want != have:
                record = self.edit(kind, item_id, {"categories": want})
            else:
                record = self.records(kind)[item_id]
            results.append(Written(item_id, record.version))
        self._mail_call("set_categories", "after")
        return results

    def subfolders(self, parent: str = "inbox") -> list[tuple[str, str]]:
        self._mail_call("subfolders", "before")
        return sorted(self.folders.items(), key=lambda pair: pair[1]) if parent == "inbox" else []

    def recent(self, folder: str, limit: int) -> list[Upsert]:
        self._mail_call("recent", "before")
        records = list(self.records(f"messages:{folder}").values())
        records.sort(key=lambda r: (str(r.fields.get("received") or ""), r.id), reverse=True)
        return [self._upsert(r) for r in records[:limit]]

    def tracked_ids(self) -> set[str]:
        """Every message carrying the tracked category."""
        return {
            item_id
            for kind, table in self.tables.items()
            if kind.startswith("messages:")
            for item_id, record in table.records.items()
            if TRACKED_CATEGORY in (record.fields.get("categories") or [])
        }
