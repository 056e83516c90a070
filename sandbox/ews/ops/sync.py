"""SyncFolderItems: changes since an opaque sync state, at most MaxChangesReturned (1-512) a call.

The state is a position in the folder's change log. Each item is reported once per call, at its
first log entry after the position, with its state now: Create (new since the position), Update,
ReadFlagChange (only IsRead changed) or Delete; items created and deleted in between are skipped.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from sandbox.ews.items import Shape, render_item
from sandbox.ews.ops.common import decode_state, encode_state, resolve_folder
from sandbox.ews.xml import (
    Element,
    EwsError,
    SoapFault,
    el,
    find,
    findall,
    m,
    response_message,
    sub,
    t,
    text,
    wrap_messages,
)

if TYPE_CHECKING:
    from sandbox.ews.server import Ctx


def sync_folder_items(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox
    shape = Shape.parse(find(req, "m:ItemShape"))
    max_text = text(req, "m:MaxChangesReturned") or "512"
    try:
        max_changes = int(max_text)
    except ValueError:
        max_changes = 0
    if not 1 <= max_changes <= 512:
        raise SoapFault(
            "ErrorSchemaValidation",
            "The request failed schema validation: MaxChangesReturned must be from 1 to 512.",
        )
    ignore = {n.get("Id") for n in findall(req, "m:Ignore/t:ItemId")}
    try:
        folder = resolve_folder(mbx, find(req, "m:SyncFolderId"))
        start = decode_state(mbx, folder.id, text(req, "m:SyncState"))
    except EwsError as exc:
        # Exchange keeps the (empty) SyncState and IncludesLastItemInRange in errors too.
        msg = response_message("SyncFolderItemsResponseMessage", exc)
        sub(msg, m("SyncState"))
        sub(msg, m("IncludesLastItemInRange"), "true")
        return wrap_messages("SyncFolderItems", [msg])
    log = folder.log
    first = bisect.bisect_right(log, start, key=lambda e: e[0])
    changes = el(m("Changes"))
    handled: set[str] = set()
    emitted = 0
    position = start
    stopped_at = len(log)
    for index in range(first, len(log)):
        seq, item_id, kind = log[index]
        position = seq
        if item_id in handled:
            continue
        handled.add(item_id)
        exists = item_id in folder.items
        created_after = kind == "create"
        if item_id in ignore or (created_after and not exists):
            continue
        if created_after:
            sub(changes, t("Create")).append(render_item(mbx, mbx.items[item_id], shape))
        elif not exists:
            sub(sub(changes, t("Delete")), t("ItemId"), Id=item_id)
        elif mbx.items[item_id].content_seq <= start:
            item = mbx.items[item_id]
            flag = sub(changes, t("ReadFlagChange"))
            sub(flag, t("ItemId"), Id=item.id, ChangeKey=item.change_key)
            sub(flag, t("IsRead"), item.value("IsRead") or "false")
        else:
            sub(changes, t("Update")).append(render_item(mbx, mbx.items[item_id], shape))
        emitted += 1
        if emitted >= max_changes:
            stopped_at = index + 1
            break
    last = all(log[i][1] in handled for i in range(stopped_at, len(log)))
    if last:
        position = mbx.seq
    msg = response_message("SyncFolderItemsResponseMessage")
    sub(msg, m("SyncState"), encode_state(mbx, folder.id, position))
    sub(msg, m("IncludesLastItemInRange"), "true" if last else "false")
    msg.append(changes)
    return wrap_messages("SyncFolderItems", [msg])
