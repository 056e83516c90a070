"""In-memory mailboxes: folders, items kept as their EWS XML fields, change keys, change logs.

Items keep every field element the client sent (unknown ones too), keyed by local name, so any
field is echoed back as written. Each folder has a change log (sequence number, item id, kind) that
SyncFolderItems reads from an opaque position; each mailbox has an event list for subscriptions.
One lock per mailbox: a request runs under it, so a request is atomic.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sandbox.ews.xml import Element, EwsError

# distinguished id -> (display name, folder class, element kind, parent distinguished id)
DISTINGUISHED: dict[str, tuple[str, str, str, str | None]] = {
    "root": ("", "", "Folder", None),
    "msgfolderroot": ("Top of Information Store", "IPF.Note", "Folder", "root"),
    "inbox": ("Inbox", "IPF.Note", "Folder", "msgfolderroot"),
    "sentitems": ("Sent Items", "IPF.Note", "Folder", "msgfolderroot"),
    "deleteditems": ("Deleted Items", "IPF.Note", "Folder", "msgfolderroot"),
    "drafts": ("Drafts", "IPF.Note", "Folder", "msgfolderroot"),
    "outbox": ("Outbox", "IPF.Note", "Folder", "msgfolderroot"),
    "junkemail": ("Junk Email", "IPF.Note", "Folder", "msgfolderroot"),
    "calendar": ("Calendar", "IPF.Appointment", "CalendarFolder", "msgfolderroot"),
    "contacts": ("Contacts", "IPF.Contact", "ContactsFolder", "msgfolderroot"),
    "tasks": ("Tasks", "IPF.Task", "TasksFolder", "msgfolderroot"),
    "notes": ("Notes", "IPF.StickyNote", "Folder", "msgfolderroot"),
    "journal": ("Journal", "IPF.Journal", "Folder", "msgfolderroot"),
    "conversationhistory": ("Conversation History", "IPF.Note", "Folder", "msgfolderroot"),
    "recoverableitemsroot": ("Recoverable Items", "", "Folder", "root"),
    "recoverableitemsdeletions": ("Deletions", "", "Folder", "recoverableitemsroot"),
}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(kind: bytes) -> str:
    """An opaque, stable id in the style of EWS ids (base64 of binary)."""
    return base64.b64encode(b"\x00\x00\x00" + kind + uuid.uuid4().bytes + os.urandom(8)).decode()


def make_change_key(version: int, ident: str) -> str:
    digest = hashlib.sha1(ident.encode()).digest()[:6]
    return base64.b64encode(b"CQAAAB" + struct.pack(">I", version) + digest).decode()


def change_key_version(change_key: str) -> int:
    """The version a change key was issued for; ErrorInvalidChangeKey when it is not ours."""
    try:
        raw = base64.b64decode(change_key, validate=True)
        if not raw.startswith(b"CQAAAB") or len(raw) != 16:
            raise ValueError
        return int(struct.unpack(">I", raw[6:10])[0])
    except ValueError as exc:
        raise EwsError("ErrorInvalidChangeKey", "The change key is invalid.") from exc


@dataclass
class Attachment:
    id: str
    name: str
    content_type: str
    content: bytes
    content_id: str | None = None
    is_inline: bool = False
    modified: datetime = field(default_factory=now)
    item_xml: Element | None = None  # an ItemAttachment's item, as sent


@dataclass
class Item:
    id: str
    kind: str  # element name: Message, CalendarItem, Contact, Task, Item, ...
    folder_id: str
    fields: dict[str, Element]
    version: int = 1
    created: datetime = field(default_factory=now)
    modified: datetime = field(default_factory=now)
    changed: dict[int, set[str]] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    seq_in_folder: int = 0
    content_seq: int = 0  # last log position that changed more than the read flag
    mime: bytes | None = None  # the original MIME when the item came as MIME
    # Recurring series: a master keeps its deleted occurrence indexes and exception item ids;
    # an occurrence or exception points at its master and its 1-based instance index.
    deleted_occurrences: set[int] = field(default_factory=set)
    exceptions: dict[int, str] = field(default_factory=dict)
    master_id: str | None = None
    index: int = 0

    @property
    def change_key(self) -> str:
        return make_change_key(self.version, self.id)

    def changed_since(self, version: int) -> set[str]:
        keys: set[str] = set()
        for v, names in self.changed.items():
            if v > version:
                keys |= names
        return keys

    def value(self, name: str) -> str | None:
        node = self.fields.get(name)
        return None if node is None else (node.text or "")


@dataclass
class Folder:
    id: str
    parent_id: str | None
    name: str
    folder_class: str
    kind: str  # Folder, CalendarFolder, ContactsFolder, TasksFolder, SearchFolder
    distinguished: str | None = None
    version: int = 1
    ext: dict[str, Element] = field(default_factory=dict)
    items: dict[str, None] = field(default_factory=dict)  # ordered set of item ids
    log: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, item id, kind)

    @property
    def change_key(self) -> str:
        return make_change_key(self.version, self.id)


@dataclass
class Event:
    seq: int
    kind: str  # CreatedEvent, ModifiedEvent, DeletedEvent, MovedEvent, NewMailEvent
    at: datetime
    item_id: str | None
    folder_id: str
    parent_folder_id: str
    old_item_id: str | None = None
    old_parent_folder_id: str | None = None


class Mailbox:
    """One user's mailbox. Callers hold `lock` for a whole request."""

    def __init__(self, upn: str, display_name: str) -> None:
        self.upn = upn
        self.display_name = display_name
        self.lock = threading.RLock()
        self.epoch = uuid.uuid4().hex[:8]
        self.seq = 0
        self.folders: dict[str, Folder] = {}
        self.distinguished: dict[str, str] = {}
        self.items: dict[str, Item] = {}
        self.folder_log: list[tuple[int, str, str]] = []
        self.events: list[Event] = []
        self._make_default_folders()

    # -- folders ---------------------------------------------------------------------------
    def _make_default_folders(self) -> None:
        for dist, (name, cls, kind, parent) in DISTINGUISHED.items():
            parent_id = self.distinguished[parent] if parent else None
            folder = Folder(new_id(b"F"), parent_id, name, cls, kind, distinguished=dist)
            self.folders[folder.id] = folder
            self.distinguished[dist] = folder.id

    def folder(self, ident: str) -> Folder:
        folder = self.folders.get(ident)
        if folder is None:
            raise EwsError(
                "ErrorFolderNotFound", "The specified folder could not be found in the store."
            )
        return folder

    def dist(self, name: str) -> Folder:
        ident = self.distinguished.get(name.lower())
        if ident is None:
            raise EwsError(
                "ErrorFolderNotFound", "The specified folder could not be found in the store."
            )
        return self.folders[ident]

    def children(self, folder: Folder) -> list[Folder]:
        return [f for f in self.folders.values() if f.parent_id == folder.id]

    def descendants(self, folder: Folder) -> list[Folder]:
        out: list[Folder] = []
        for child in self.children(folder):
            out.append(child)
            out.extend(self.descendants(child))
        return out

    def add_folder(self, parent: Folder, name: str, folder_class: str, kind: str) -> Folder:
        if any(f.name.lower() == name.lower() for f in self.children(parent)):
            raise EwsError("ErrorFolderExists", "A folder with the specified name already exists.")
        folder = Folder(new_id(b"F"), parent.id, name, folder_class, kind)
        self.folders[folder.id] = folder
        self._log_folder(folder, "create")
        return folder

    def touch_folder(self, folder: Folder) -> None:
        folder.version += 1
        self._log_folder(folder, "update")

    def remove_folder(self, folder: Folder) -> None:
        for child in self.children(folder):
            self.remove_folder(child)
        for item_id in list(folder.items):
            self.remove_item(self.items[item_id])
        del self.folders[folder.id]
        self._log_folder(folder, "delete")

    def _log_folder(self, folder: Folder, kind: str) -> None:
        self.seq += 1
        self.folder_log.append((self.seq, folder.id, kind))
        event = {"create": "CreatedEvent", "update": "ModifiedEvent", "delete": "DeletedEvent"}
        self.events.append(
            Event(self.seq, event[kind], now(), None, folder.id, folder.parent_id or "")
        )

    # -- items -----------------------------------------------------------------------------
    def item(self, ident: str) -> Item:
        item = self.items.get(ident)
        if item is None:
            raise EwsError("ErrorItemNotFound", "The specified object was not found in the store.")
        return item

    def add_item(self, folder: Folder, item: Item, new_mail: bool = False) -> Item:
        item.folder_id = folder.id
        self.items[item.id] = item
        folder.items[item.id] = None
        self.seq += 1
        item.seq_in_folder = item.content_seq = self.seq
        folder.log.append((self.seq, item.id, "create"))
        self.events.append(Event(self.seq, "CreatedEvent", now(), item.id, folder.id, folder.id))
        if new_mail:
            self.events.append(
                Event(self.seq, "NewMailEvent", now(), item.id, folder.id, folder.id)
            )
        return item

    def touch_item(self, item: Item, keys: set[str], read_only: bool = False) -> None:
        """Record a change: new version (so a new change key) and a log entry."""
        item.version += 1
        item.changed[item.version] = set(keys)
        item.modified = now()
        folder = self.folders[item.folder_id]
        self.seq += 1
        folder.log.append((self.seq, item.id, "read" if read_only else "update"))
        if not read_only:
            item.content_seq = self.seq
        self.events.append(Event(self.seq, "ModifiedEvent", now(), item.id, folder.id, folder.id))

    def remove_item(self, item: Item) -> None:
        for exception_id in item.exceptions.values():
            self.items.pop(exception_id, None)
        folder = self.folders[item.folder_id]
        folder.items.pop(item.id, None)
        self.items.pop(item.id, None)
        self.seq += 1
        folder.log.append((self.seq, item.id, "delete"))
        self.events.append(Event(self.seq, "DeletedEvent", now(), item.id, folder.id, folder.id))

    def move_item(self, item: Item, target: Folder) -> Item:
        """Moving gives the item a new id (as Exchange does); the old id stops resolving."""
        old_id, old_folder = item.id, item.folder_id
        self.remove_item(item)
        item.id = new_id(b"I")
        item.version += 1
        item.changed[item.version] = {"ParentFolderId"}
        self.add_item(target, item)
        self.events.append(
            Event(self.seq, "MovedEvent", now(), item.id, target.id, target.id, old_id, old_folder)
        )
        return item

    def reset(self) -> None:
        """Empty every folder, drop custom folders and start a new sync epoch."""
        for folder in list(self.folders.values()):
            if folder.distinguished is None and folder.id in self.folders:
                self.remove_folder(folder)
        for folder in self.folders.values():
            folder.items.clear()
            folder.log.clear()
            folder.ext.clear()
            folder.version += 1
        self.items.clear()
        self.folder_log.clear()
        self.events.clear()
        self.epoch = uuid.uuid4().hex[:8]

    def counts(self) -> dict[str, int]:
        """Items per distinguished folder (tests)."""
        return {d: len(self.folders[i].items) for d, i in self.distinguished.items()}

    def items_in(self, folder: str) -> list[Item]:
        """The items of a folder by distinguished name or id (tests)."""
        target = self.folders.get(folder) or self.dist(folder)
        return [self.items[i] for i in target.items]
