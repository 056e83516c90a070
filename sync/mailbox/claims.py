"""The "only one" claims, kept in the mailbox itself (DESIGN.md §3).

Which organization and which computer synchronize a mailbox is written as an extended property
on a hidden folder under the mailbox's root ("Mailbox Sync for Dynamics 365"). Writes carry the
folder's ChangeKey, so of two computers that read the same claim and both try to take it, Exchange
accepts exactly one UpdateFolder; the other gets a stale-ChangeKey error and `ClaimTaken`.

UpdateFolder does honour the ChangeKey: the EWS reference (ResponseCode) says that for SendItem,
UpdateItem and UpdateFolder "the caller must pass in a correct and current change key", and a
missing or stale one is answered ErrorChangeKeyRequiredForWriteOperations (FolderId: the
ChangeKey "identifies a version of a folder … Use this attribute to make sure that the correct
version of a folder is used"). That code is the one a lost race gets (sync.mailbox.ews_connection
CONFLICT_ERRORS); a write is never sent without the change key the claim was read with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from exchangelib import ExtendedProperty, Folder
from exchangelib import errors as ews_errors
from exchangelib.folders import SHALLOW, FolderCollection

from sync.mailbox.ews_connection import CONFLICT_ERRORS, NOT_FOUND_ERRORS, EwsConnection
from sync.mailbox.fields import IDEMPOTENCY_PROPERTY_SET

CLAIM_FOLDER_NAME = "Mailbox Sync for Dynamics 365"
CLAIM_FIELD = "mailbox_sync_claim"
HIDDEN_FIELD = "mailbox_sync_hidden"


class _ClaimProperty(ExtendedProperty):
    """The claim as JSON, in our named-property set."""

    property_set_id = IDEMPOTENCY_PROPERTY_SET
    property_name = "claim"
    property_type = "String"


class _HiddenProperty(ExtendedProperty):
    """PR_ATTR_HIDDEN (0x10F4): Outlook does not show the folder."""

    property_tag = 0x10F4
    property_type = "Boolean"


def _register() -> None:
    names = {f.name for f in Folder.FIELDS}
    if CLAIM_FIELD not in names:
        Folder.register(CLAIM_FIELD, _ClaimProperty)
    if HIDDEN_FIELD not in names:
        Folder.register(HIDDEN_FIELD, _HiddenProperty)


_register()


@dataclass(frozen=True)
class Claim:
    """Who synchronizes this mailbox: the organization and the computer (install)."""

    org_url: str
    org_id: str
    instance_id: str
    instance_name: str
    claimed_at: str = ""
    """ISO 8601 UTC; set by `take_claim`."""

    def same_owner(self, other: Claim | None) -> bool:
        """Same organization and same install (the time of the claim does not matter)."""
        return other is not None and (self.org_id, self.instance_id) == (
            other.org_id,
            other.instance_id,
        )


class ClaimTaken(Exception):
    """Someone else changed the claim since it was read; `current` is the claim now in force."""

    def __init__(self, current: Claim | None) -> None:
        who = f"{current.instance_name} for {current.org_url}" if current else "nobody"
        super().__init__(f"The mailbox claim changed meanwhile; it is now held by {who}.")
        self.current = current


def _parse(raw: Any) -> Claim | None:
    if not raw:
        return None
    try:
        data = json.loads(str(raw))
        return Claim(**{k: str(data.get(k) or "") for k in Claim.__dataclass_fields__})
    except (ValueError, TypeError):
        return None


def hidden_folder(conn: EwsConnection, create: bool = True) -> Any:
    """The claim folder, fresh from the server (with its current ChangeKey); made if missing
    (or None when `create` is false)."""

    def get() -> Any:
        if conn.hidden_folder_id:  # found before: one GetFolder by id
            known = _by_id(conn, conn.hidden_folder_id)
            if known is not None:
                return known
            conn.hidden_folder_id = None
        root = conn.account.msg_folder_root
        found = _children_named(root, CLAIM_FOLDER_NAME)
        if found:
            conn.hidden_folder_id = found[0].id
            return found[0]
        if not create:
            return None
        folder = Folder(parent=root, name=CLAIM_FOLDER_NAME)
        setattr(folder, HIDDEN_FIELD, True)
        try:
            folder.save()
            made = refresh_folder(folder)
        except ews_errors.ErrorFolderExists:
            # Another computer made it at the same moment: use theirs.
            found = _children_named(root, CLAIM_FOLDER_NAME)
            if not found:
                raise
            made = found[0]
        conn.hidden_folder_id = made.id
        return made

    return conn.call(get, idempotent=not create)  # only a read may be sent again


def _by_id(conn: EwsConnection, folder_id: str) -> Any | None:
    """The folder with this id, fresh from the server, or None when it is gone."""
    try:
        fresh = refresh_folder(Folder(root=conn.account.root, id=folder_id))
    except NOT_FOUND_ERRORS:
        return None
    return fresh if fresh.name == CLAIM_FOLDER_NAME else None


def _children_named(root: Any, name: str) -> list[Any]:
    """Direct children of `root` called `name` (FindFolder, Shallow), re-read with GetFolder."""
    found = FolderCollection(account=root.account, folders=[root]).find_folders(depth=SHALLOW)
    return [refresh_folder(f) for f in found if not isinstance(f, Exception) and f.name == name]


def refresh_folder(folder: Any) -> Any:
    """GetFolder with our properties (FindFolder does not return extended properties)."""
    fresh = list(FolderCollection(account=folder.account, folders=[folder]).get_folders())
    if fresh and not isinstance(fresh[0], Exception):
        return fresh[0]
    raise fresh[0] if fresh else ews_errors.ErrorFolderNotFound(CLAIM_FOLDER_NAME)


def read_claim(conn: EwsConnection) -> Claim | None:
    """The claim recorded in the mailbox, or None (reading never creates the folder)."""
    return _parse(getattr(hidden_folder(conn, create=False), CLAIM_FIELD, None))


def take_claim(conn: EwsConnection, claim: Claim, expected: Claim | None) -> Claim:
    """Record `claim`, provided the claim in the mailbox is still `expected` (as read before).

    Raises ClaimTaken(current) when it changed meanwhile, by value or by ChangeKey race."""
    folder = hidden_folder(conn)
    if not getattr(folder, "changekey", None):  # the write would not be conditional: read again
        folder = conn.call(lambda: refresh_folder(folder), idempotent=True)
        if not getattr(folder, "changekey", None):
            raise ClaimTaken(_parse(getattr(folder, CLAIM_FIELD, None)))
    current = _parse(getattr(folder, CLAIM_FIELD, None))
    if current != expected:
        raise ClaimTaken(current)
    stamped = Claim(**{**asdict(claim), "claimed_at": _now()})
    setattr(folder, CLAIM_FIELD, json.dumps(asdict(stamped), sort_keys=True))

    def save() -> None:
        try:
            folder.save(update_fields=[CLAIM_FIELD])
        except CONFLICT_ERRORS as exc:
            raise _Lost() from exc

    try:
        conn.call(save)
    except _Lost:
        raise ClaimTaken(read_claim(conn)) from None
    return stamped


class _Lost(Exception):
    """The UpdateFolder lost the ChangeKey race."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
