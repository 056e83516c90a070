"""The sandbox Graph's data: one mailbox per demo user, items as Graph JSON, and a change log.

Every write bumps one sequence number per mailbox; an item remembers the number of its last
change and a delete leaves a tombstone, so a delta token is just "collection + number". Tokens
carry the mailbox's epoch: `expire_tokens()` starts a new epoch and every older token is
answered 410 Gone (syncStateNotFound), as Graph does for an expired sync state.
"""

from __future__ import annotations

import base64
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

WELL_KNOWN = ("inbox", "sentitems", "drafts", "deleteditems")
FOLDER_NAMES = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(prefix: str) -> str:
    """An opaque, URL-safe id in Graph's style (base64 of a random value)."""
    raw = prefix.encode() + b"\x00" + uuid.uuid4().bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class Collection:
    """Items of one delta scope: a mail folder's messages, contacts, events, a To Do list."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    tombstones: dict[str, int] = field(default_factory=dict)
    """id → sequence number of its delete."""


@dataclass
class GraphMailbox:
    """One user's mailbox. Callers hold `lock` around reads and writes."""

    upn: str
    display_name: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    seq: int = 0
    epoch: str = field(default_factory=lambda: secrets.token_hex(4))
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    """folder id → Graph mailFolder JSON (without counts)."""
    well_known: dict[str, str] = field(default_factory=dict)
    collections: dict[str, Collection] = field(default_factory=dict)
    """scope → collection; scopes: "contacts", "events", "folder:<id>", "todo:<list id>"."""
    todo_lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    attachments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    series_ids: set[str] = field(default_factory=set)
    """Ids of every series master made (a master is never an entry of the calendar view)."""
    meeting_messages: list[dict[str, Any]] = field(default_factory=list)
    """Meeting requests, updates and cancellations Graph sent for the organizer's changes."""

    def __post_init__(self) -> None:
        for name in WELL_KNOWN:
            self.add_folder(FOLDER_NAMES[name], None, well_known=name)
        self.add_todo_list("Tasks", well_known="defaultList")

    def add_folder(
        self, name: str, parent: str | None, well_known: str | None = None, hidden: bool = False
    ) -> dict[str, Any]:
        folder_id = new_id("folder")
        folder = {
            "id": folder_id,
            "displayName": name,
            "parentFolderId": parent or "msgfolderroot",
            "childFolderCount": 0,
            "isHidden": hidden,
        }
        self.folders[folder_id] = folder
        if parent and parent in self.folders:
            self.folders[parent]["childFolderCount"] += 1
        if well_known:
            self.well_known[well_known] = folder_id
        self.collections[f"folder:{folder_id}"] = Collection()
        return folder

    def add_todo_list(self, name: str, well_known: str = "none") -> dict[str, Any]:
        list_id = new_id("list")
        todo = {
            "id": list_id,
            "displayName": name,
            "isOwner": True,
            "isShared": False,
            "wellknownListName": well_known,
        }
        self.todo_lists[list_id] = todo
        self.collections[f"todo:{list_id}"] = Collection()
        return todo

    def folder_id(self, ref: str) -> str | None:
        """A folder by id or well-known name (case-insensitive, as Graph accepts them)."""
        if ref in self.folders:
            return ref
        return self.well_known.get(ref.lower())

    def collection(self, scope: str) -> Collection:
        return self.collections.setdefault(scope, Collection())

    def touch(self, item: dict[str, Any]) -> None:
        """A change: new sequence number, change key and modification time."""
        self.seq += 1
        item["_seq"] = self.seq
        item["changeKey"] = secrets.token_urlsafe(12)
        item["lastModifiedDateTime"] = now_iso()

    def put(self, scope: str, item: dict[str, Any]) -> dict[str, Any]:
        coll = self.collection(scope)
        item.setdefault("createdDateTime", now_iso())
        self.touch(item)
        item.setdefault("_made", self.seq)  # creation order (ties of a timestamp)
        coll.items[item["id"]] = item
        coll.tombstones.pop(item["id"], None)
        return item

    def remove(self, scope: str, item_id: str) -> dict[str, Any] | None:
        coll = self.collection(scope)
        item = coll.items.pop(item_id, None)
        if item is not None:
            self.seq += 1
            coll.tombstones[item_id] = self.seq
            self.attachments.pop(item_id, None)
        return item

    def find(self, item_id: str, prefix: str = "") -> tuple[str, dict[str, Any]] | None:
        """(scope, item) of an id in any collection whose scope starts with `prefix`."""
        for scope, coll in self.collections.items():
            if scope.startswith(prefix) and item_id in coll.items:
                return scope, coll.items[item_id]
        return None

    def expire_tokens(self) -> None:
        """Every delta token issued so far is refused from now on (410 Gone)."""
        with self.lock:
            self.epoch = secrets.token_hex(4)


def encode_token(**values: Any) -> str:
    text = "|".join(f"{k}={v}" for k, v in values.items())
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, str] | None:
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        return dict(part.split("=", 1) for part in text.split("|"))
    except (ValueError, UnicodeDecodeError):
        return None
