"""Folder operations: GetFolder, FindFolder, CreateFolder, UpdateFolder, DeleteFolder,
SyncFolderHierarchy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.ews.items import normalise
from sandbox.ews.ops.common import (
    answer_folder_id,
    check_folder_change_key,
    decode_state,
    encode_state,
    fail_all,
    folder_ext_key,
    folder_shape,
    per_node,
    render_folder,
    resolve_folder,
)
from sandbox.ews.store import Folder
from sandbox.ews.xml import (
    Element,
    EwsError,
    children,
    copy,
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

if TYPE_CHECKING:
    from sandbox.ews.server import Ctx

KIND_BY_CLASS = {
    "IPF.Appointment": "CalendarFolder",
    "IPF.Contact": "ContactsFolder",
    "IPF.Task": "TasksFolder",
}


def get_folder(ctx: Ctx, req: Element) -> Element:
    base, names = folder_shape(find(req, "m:FolderShape"))

    def answer(node: Element, msg: Element) -> None:
        folder = resolve_folder(ctx.mailbox, node)
        sub(msg, m("Folders")).append(render_folder(ctx.mailbox, folder, base, names))

    return per_node("GetFolder", children(req, "m:FolderIds"), answer)


def find_folder(ctx: Ctx, req: Element) -> Element:
    base, names = folder_shape(find(req, "m:FolderShape"))
    deep = req.get("Traversal", "Shallow") == "Deep"
    view = find(req, "m:IndexedPageFolderView")

    def answer(node: Element, msg: Element) -> None:
        parent = resolve_folder(ctx.mailbox, node)
        found = ctx.mailbox.descendants(parent) if deep else ctx.mailbox.children(parent)
        offset, limit = 0, len(found)
        if view is not None:
            offset = int(view.get("Offset", "0"))
            limit = int(view.get("MaxEntriesReturned", str(len(found))))
        page = found[offset : offset + limit]
        root = sub(
            msg,
            m("RootFolder"),
            IndexedPagingOffset=str(offset + len(page)),
            TotalItemsInView=str(len(found)),
            IncludesLastItemInRange="true" if offset + len(page) >= len(found) else "false",
        )
        folders = sub(root, t("Folders"))
        for folder in page:
            folders.append(render_folder(ctx.mailbox, folder, base, names))

    return per_node("FindFolder", children(req, "m:ParentFolderIds"), answer)


def _set_folder_field(folder: Folder, change: Element) -> None:
    value = next((c for c in change if local(c).endswith("Folder")), None)
    uri = change[0]
    if local(uri) == "ExtendedFieldURI":
        if value is None:
            raise EwsError("ErrorInvalidPropertySet", "SetFolderField needs a folder element.")
        prop = find(value, "t:ExtendedProperty")
        if prop is None:
            raise EwsError("ErrorInvalidPropertySet", "No ExtendedProperty to set.")
        folder.ext[folder_ext_key(prop)] = normalise(copy(prop))
        return
    name = (uri.get("FieldURI") or "").split(":")[-1]
    field = find(value, f"t:{name}") if value is not None else None
    if field is None:
        raise EwsError("ErrorInvalidPropertySet", f"No value for {name}.")
    if name == "DisplayName":
        folder.name = field.text or ""
    elif name == "FolderClass":
        folder.folder_class = field.text or ""
    else:
        raise EwsError("ErrorInvalidPropertySet", f"The sandbox cannot set folder field {name}.")


def _delete_folder_field(folder: Folder, change: Element) -> None:
    uri = change[0]
    if local(uri) == "ExtendedFieldURI":
        from sandbox.ews.items import ext_key

        folder.ext.pop(ext_key(uri), None)


def update_folder(ctx: Ctx, req: Element) -> Element:
    def answer(change: Element, msg: Element) -> None:
        ident = change[0]
        folder = resolve_folder(ctx.mailbox, ident)
        check_folder_change_key(folder, ident)
        staged = Folder(
            folder.id, folder.parent_id, folder.name, folder.folder_class, folder.kind,
            ext=dict(folder.ext),
        )  # fmt: skip
        for update in children(change, "t:Updates"):
            kind = local(update)
            if kind == "SetFolderField":
                _set_folder_field(staged, update)
            elif kind == "DeleteFolderField":
                _delete_folder_field(staged, update)
            else:
                raise EwsError("ErrorInvalidPropertySet", f"{kind} is not supported.")
        folder.name, folder.folder_class, folder.ext = staged.name, staged.folder_class, staged.ext
        ctx.mailbox.touch_folder(folder)
        answer_folder_id(msg, folder)

    return per_node("UpdateFolder", findall(req, "m:FolderChanges/t:FolderChange"), answer)


def create_folder(ctx: Ctx, req: Element) -> Element:
    nodes = children(req, "m:Folders")
    try:
        parent = resolve_folder(ctx.mailbox, find(req, "m:ParentFolderId"))
    except EwsError as exc:
        return fail_all("CreateFolder", exc, len(nodes))

    def answer(node: Element, msg: Element) -> None:
        name = find(node, "t:DisplayName")
        if name is None or not name.text:
            raise EwsError("ErrorInvalidFolderId", "A folder needs a DisplayName.")
        cls_node = find(node, "t:FolderClass")
        default_cls = {"CalendarFolder": "IPF.Appointment", "ContactsFolder": "IPF.Contact",
                       "TasksFolder": "IPF.Task"}.get(local(node), "IPF.Note")  # fmt: skip
        folder_class = cls_node.text if cls_node is not None and cls_node.text else default_cls
        kind = local(node) if local(node) != "Folder" else KIND_BY_CLASS.get(folder_class, "Folder")
        folder = ctx.mailbox.add_folder(parent, name.text, folder_class, kind)
        for prop in findall(node, "t:ExtendedProperty"):
            folder.ext[folder_ext_key(prop)] = normalise(copy(prop))
        answer_folder_id(msg, folder)

    return per_node("CreateFolder", nodes, answer)


def delete_folder(ctx: Ctx, req: Element) -> Element:
    def answer(node: Element, msg: Element) -> None:
        folder = resolve_folder(ctx.mailbox, node)
        if folder.distinguished:
            raise EwsError(
                "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted."
            )
        ctx.mailbox.remove_folder(folder)

    return per_node("DeleteFolder", children(req, "m:FolderIds"), answer)


def sync_folder_hierarchy(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox
    base, names = folder_shape(find(req, "m:FolderShape"))
    try:
        scope_node = find(req, "m:SyncFolderId")
        scope = resolve_folder(mbx, scope_node) if scope_node is not None else mbx.dist("root")
        start = decode_state(mbx, "hierarchy:" + scope.id, text(req, "m:SyncState"))
    except EwsError as exc:
        msg = response_message("SyncFolderHierarchyResponseMessage", exc)
        sub(msg, m("SyncState"))
        sub(msg, m("IncludesLastFolderInRange"), "true")
        return wrap_messages("SyncFolderHierarchy", [msg])
    inside = {f.id for f in mbx.descendants(scope)}
    last: dict[str, int] = {}
    created_after: set[str] = set()
    for seq, folder_id, kind in mbx.folder_log:
        if seq > start:
            last[folder_id] = seq
            if kind == "create":
                created_after.add(folder_id)
    msg = response_message("SyncFolderHierarchyResponseMessage")
    changes = el(m("Changes"))
    existing = mbx.descendants(scope)
    if start == 0:
        for folder in existing:
            sub(changes, t("Create")).append(render_folder(mbx, folder, base, names))
    else:
        for folder_id, _seq in sorted(last.items(), key=lambda kv: kv[1]):
            known = folder_id not in created_after
            changed = mbx.folders.get(folder_id)
            if changed is None or folder_id not in inside:
                if known:
                    sub(sub(changes, t("Delete")), t("FolderId"), Id=folder_id)
                continue
            tag = "Update" if known else "Create"
            sub(changes, t(tag)).append(render_folder(mbx, changed, base, names))
    sub(msg, m("SyncState"), encode_state(mbx, "hierarchy:" + scope.id, mbx.seq))
    sub(msg, m("IncludesLastFolderInRange"), "true")
    msg.append(changes)
    return wrap_messages("SyncFolderHierarchy", [msg])


def empty_folder(ctx: Ctx, req: Element) -> Element:
    """EmptyFolder: every item goes (and subfolders when DeleteSubFolders is true)."""
    mbx = ctx.mailbox
    subfolders = req.get("DeleteSubFolders", "false") in ("true", "1")

    def answer(node: Element, msg: Element) -> None:
        folder = resolve_folder(mbx, node)
        for item_id in list(folder.items):
            mbx.remove_item(mbx.items[item_id])
        if subfolders:
            for child in mbx.children(folder):
                mbx.remove_folder(child)

    return per_node("EmptyFolder", children(req, "m:FolderIds"), answer)


def move_folder(ctx: Ctx, req: Element) -> Element:
    """MoveFolder: the folder keeps its id (folders, unlike items, do in Exchange)."""
    mbx = ctx.mailbox
    nodes = children(req, "m:FolderIds")
    try:
        target = resolve_folder(mbx, find(req, "m:ToFolderId"))
    except EwsError as exc:
        return fail_all("MoveFolder", exc, len(nodes))

    def answer(node: Element, msg: Element) -> None:
        folder = resolve_folder(mbx, node)
        if folder.distinguished or folder is target or target in mbx.descendants(folder):
            raise EwsError("ErrorMoveCopyFailed", "The folder cannot be moved there.")
        folder.parent_id = target.id
        mbx.touch_folder(folder)
        answer_folder_id(msg, folder)

    return per_node("MoveFolder", nodes, answer)
