"""Attachment operations: CreateAttachment, GetAttachment, DeleteAttachment.

Adding or removing an attachment changes the parent item (new change key, a sync Update).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from sandbox.ews.items import ITEM_CLASS, attachment_elem, read_attachment
from sandbox.ews.mime import attached_item_mime
from sandbox.ews.ops.common import fail_all, per_node, resolve_item
from sandbox.ews.store import Attachment, Item, Mailbox, change_key_version
from sandbox.ews.xml import (
    Element,
    EwsError,
    children,
    find,
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


def _find_attachment(mbx: Mailbox, ident: str) -> tuple[Item, Attachment]:
    for item in mbx.items.values():
        for att in item.attachments:
            if att.id == ident:
                return item, att
    raise EwsError("ErrorAttachmentNotFound", "The attachment could not be found.")


def create_attachment(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox
    parent = find(req, "m:ParentItemId")
    nodes = list(children(req, "m:Attachments"))
    try:
        if parent is None:
            raise EwsError("ErrorInvalidIdMalformed", "ParentItemId is missing.")
        item = resolve_item(mbx, parent)
        change_key = parent.get("RootItemChangeKey") or parent.get("ChangeKey")
        if change_key and change_key_version(change_key) < item.version:
            raise EwsError(
                "ErrorStaleObject", "The change key does not match the current change key."
            )
    except EwsError as exc:
        return fail_all("CreateAttachment", exc, len(nodes))
    messages = []
    added: list[Attachment | None] = []
    for node in nodes:
        try:
            att = read_attachment(node)
            item.attachments.append(att)
            added.append(att)
            msg = response_message("CreateAttachmentResponseMessage")
            messages.append(msg)
        except (EwsError, ValueError) as exc:
            error = (
                exc if isinstance(exc, EwsError) else EwsError("ErrorInvalidAttachment", str(exc))
            )
            messages.append(response_message("CreateAttachmentResponseMessage", error))
            added.append(None)
    if any(added):
        mbx.touch_item(item, {"Attachments"})
    for msg, done in zip(messages, added, strict=True):
        if done is not None:
            kind = "ItemAttachment" if done.item_xml is not None else "FileAttachment"
            node = sub(sub(msg, m("Attachments")), t(kind))
            sub(
                node,
                t("AttachmentId"),
                Id=done.id,
                RootItemId=item.id,
                RootItemChangeKey=item.change_key,
            )
    return wrap_messages("CreateAttachment", messages)


def get_attachment(ctx: Ctx, req: Element) -> Element:
    shape = find(req, "m:AttachmentShape")
    with_mime = shape is not None and (text(shape, "t:IncludeMimeContent") or "") == "true"

    def answer(node: Element, msg: Element) -> None:
        item, att = _find_attachment(ctx.mailbox, node.get("Id", ""))
        found = attachment_elem(item, att, content=True)
        if with_mime and att.item_xml is not None:
            # IncludeMimeContent: an item attachment's item comes with its MimeContent
            # (attachmentshape.md)
            attached = next((c for c in found if local(c) in ITEM_CLASS), None)
            if attached is not None:
                raw = attached_item_mime(att)
                sub(
                    attached, t("MimeContent"), base64.b64encode(raw).decode(), CharacterSet="UTF-8"
                )
        sub(msg, m("Attachments")).append(found)

    return per_node("GetAttachment", children(req, "m:AttachmentIds"), answer)


def delete_attachment(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox

    def answer(node: Element, msg: Element) -> None:
        item, att = _find_attachment(mbx, node.get("Id", ""))
        item.attachments.remove(att)
        mbx.touch_item(item, {"Attachments"})
        sub(msg, m("RootItemId"), RootItemId=item.id, RootItemChangeKey=item.change_key)

    return per_node("DeleteAttachment", children(req, "m:AttachmentIds"), answer)
