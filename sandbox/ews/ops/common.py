"""Helpers shared by the operation handlers: id resolution, folder rendering, sync states."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable

from sandbox.ews.items import ext_key, uri_name
from sandbox.ews.store import Folder, Item, Mailbox, change_key_version
from sandbox.ews.xml import (
    Element,
    EwsError,
    el,
    find,
    findall,
    local,
    m,
    response_message,
    sub,
    t,
    text,
    wrap_messages,
)


def per_node(
    op: str, nodes: Iterable[Element], answer: Callable[[Element, Element], None]
) -> Element:
    """The m:<op>Response for a batch: `answer(node, msg)` fills one success message per node.

    As in EWS, each node succeeds or fails on its own: an EwsError turns only that node's
    message into an error (whatever `answer` had put into it is dropped)."""
    messages = []
    for node in nodes:
        msg = response_message(f"{op}ResponseMessage")
        try:
            answer(node, msg)
        except EwsError as exc:
            msg = response_message(f"{op}ResponseMessage", exc)
        messages.append(msg)
    return wrap_messages(op, messages)


def fail_all(op: str, error: EwsError, count: int) -> Element:
    """The response when a request-wide part (a target folder, a parent item) is wrong: every
    node of the batch (at least one) gets the same error."""
    return wrap_messages(op, [response_message(f"{op}ResponseMessage", error)] * max(1, count))


def answer_folder_id(msg: Element, folder: Folder) -> None:
    """m:Folders/t:<kind>/t:FolderId: what Create/Update/MoveFolder answer for a folder."""
    out = sub(sub(msg, m("Folders")), t(folder.kind))
    sub(out, t("FolderId"), Id=folder.id, ChangeKey=folder.change_key)


def resolve_folder(mbx: Mailbox, node: Element | None) -> Folder:
    """A t:FolderId / t:DistinguishedFolderId (or a container holding one) to a folder."""
    if node is None:
        raise EwsError("ErrorFolderNotFound", "No folder id given.")
    name = local(node)
    if name not in ("FolderId", "DistinguishedFolderId"):
        inner = next(iter(node), None)
        if inner is None:
            raise EwsError("ErrorFolderNotFound", "No folder id given.")
        return resolve_folder(mbx, inner)
    if name == "DistinguishedFolderId":
        address = find(node, "t:Mailbox/t:EmailAddress")
        if address is not None and (address.text or "").lower() not in ("", mbx.upn):
            raise EwsError(
                "ErrorAccessDenied", "The sandbox gives access to your own mailbox only."
            )
        return mbx.dist(node.get("Id", ""))
    return mbx.folder(node.get("Id", ""))


def check_folder_change_key(folder: Folder, node: Element) -> None:
    """UpdateFolder's optimistic concurrency, as the EWS reference states it (ResponseCode):
    ErrorChangeKeyRequiredForWriteOperations "is returned when the change key for an item is
    missing or stale. For SendItem, UpdateItem, and UpdateFolder operations, the caller must
    pass in a correct and current change key". A change key that is not one at all is
    ErrorInvalidChangeKey ("The change key is invalid.", the UpdateFolder operation page). A
    distinguished folder id carries no change key in practice (docs silent): not checked."""
    if local(node) != "FolderId":
        return
    change_key = node.get("ChangeKey")
    if not change_key or change_key_version(change_key) != folder.version:
        raise EwsError(
            "ErrorChangeKeyRequiredForWriteOperations",
            "The change key passed in the request is missing or does not match the current "
            "change key for the folder.",
        )


def resolve_item(mbx: Mailbox, node: Element) -> Item:
    if local(node) in ("OccurrenceItemId", "RecurringMasterItemId"):
        from sandbox.ews.recurrence import resolve_occurrence

        return resolve_occurrence(mbx, node)
    ident = node.get("Id", "")
    if not ident:
        raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.")
    if ident not in mbx.items:
        from sandbox.ews.recurrence import resolve_id

        occurrence = resolve_id(mbx, ident)
        if occurrence is not None:
            return occurrence
    return mbx.item(ident)


def folder_shape(node: Element | None) -> tuple[str, set[str]]:
    if node is None:
        return "Default", set()
    base = text(node, "t:BaseShape") or "Default"
    names = {uri_name(u) for u in findall(node, "t:AdditionalProperties/*")}
    return base, names


def render_folder(mbx: Mailbox, folder: Folder, base: str, names: set[str]) -> Element:
    node = el(t(folder.kind))
    sub(node, t("FolderId"), Id=folder.id, ChangeKey=folder.change_key)
    wanted = set(names)
    if base != "IdOnly":
        wanted |= {
            "ParentFolderId",
            "FolderClass",
            "DisplayName",
            "TotalCount",
            "ChildFolderCount",
            "UnreadCount",
        }
    if "ParentFolderId" in wanted and folder.parent_id:
        parent = mbx.folders.get(folder.parent_id)
        if parent is not None:
            sub(node, t("ParentFolderId"), Id=parent.id, ChangeKey=parent.change_key)
    if "FolderClass" in wanted and folder.folder_class:
        sub(node, t("FolderClass"), folder.folder_class)
    if "DisplayName" in wanted:
        sub(node, t("DisplayName"), folder.name)
    if "TotalCount" in wanted:
        sub(node, t("TotalCount"), str(len(folder.items)))
    if "ChildFolderCount" in wanted:
        sub(node, t("ChildFolderCount"), str(len(mbx.children(folder))))
    for key in sorted(n for n in wanted if n.startswith("ext:")):
        if key in folder.ext:
            node.append(_copy(folder.ext[key]))
    if "UnreadCount" in wanted and folder.kind == "Folder":
        unread = sum(1 for i in folder.items if (mbx.items[i].value("IsRead") or "false") != "true")
        sub(node, t("UnreadCount"), str(unread))
    if "DistinguishedFolderId" in wanted and folder.distinguished:
        sub(node, t("DistinguishedFolderId"), folder.distinguished)
    return node


def _copy(node: Element) -> Element:
    from sandbox.ews.xml import copy

    return copy(node)


def folder_ext_key(node: Element) -> str:
    return ext_key(find(node, "t:ExtendedFieldURI"))


def encode_state(mbx: Mailbox, scope: str, seq: int) -> str:
    """An opaque sync state: the change-log position for one folder (or the hierarchy)."""
    raw = json.dumps({"e": mbx.epoch, "s": scope, "q": seq}, separators=(",", ":"))
    return base64.b64encode(b"SBXSYNC1" + raw.encode()).decode()


def decode_state(mbx: Mailbox, scope: str, state: str | None) -> int:
    """The log position of a sync state; ErrorInvalidSyncStateData when it is not valid here."""
    if not state:
        return 0
    try:
        raw = base64.b64decode(state, validate=True)
        if not raw.startswith(b"SBXSYNC1"):
            raise ValueError("prefix")
        data = json.loads(raw[8:])
        if data["e"] != mbx.epoch or data["s"] != scope:
            raise ValueError("scope")
        return int(data["q"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EwsError(
            "ErrorInvalidSyncStateData",
            "Synchronization state data is corrupt or otherwise invalid.",
        ) from exc
