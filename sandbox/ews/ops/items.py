"""Item operations: GetItem, CreateItem, UpdateItem, DeleteItem, MoveItem, CopyItem, SendItem.

Each item in a batch succeeds or fails on its own (as in EWS); a failing item changes nothing.
Sending delivers a copy to every sandbox mailbox among the recipients, with the same Message-Id.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from sandbox.ews.items import (
    ITEM_CLASS,
    Shape,
    addresses,
    body_text,
    fields_from_element,
    mailbox_elem,
    new_item,
    normalise,
    render_item,
    uri_name,
)
from sandbox.ews.ops.common import fail_all, per_node, resolve_folder, resolve_item
from sandbox.ews.store import Folder, Item, Mailbox, change_key_version, iso, new_id, now
from sandbox.ews.tasks import settle_progress
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
    sub,
    t,
    text,
)

if TYPE_CHECKING:
    from sandbox.ews.server import Ctx, EwsServer

DEFAULT_FOLDER = {
    "Message": "drafts",
    "CalendarItem": "calendar",
    "Contact": "contacts",
    "DistributionList": "contacts",
    "Task": "tasks",
}


def _id_only(item: Item) -> Element:
    node = el(t(item.kind))
    sub(node, t("ItemId"), Id=item.id, ChangeKey=item.change_key)
    return node


# -- GetItem ---------------------------------------------------------------------------------


def get_item(ctx: Ctx, req: Element) -> Element:
    shape = Shape.parse(find(req, "m:ItemShape"))

    def answer(node: Element, msg: Element) -> None:
        item = resolve_item(ctx.mailbox, node)
        sub(msg, m("Items")).append(render_item(ctx.mailbox, item, shape))

    return per_node("GetItem", children(req, "m:ItemIds"), answer)


# -- CreateItem and sending -------------------------------------------------------------------


def _apply_mime(fields: dict[str, Element]) -> tuple[list, str | None, bytes | None]:
    node = fields.pop("MimeContent", None)
    if node is None:
        return [], None, None
    from sandbox.ews.mime import fields_from_mime

    raw = base64.b64decode(node.text or "")
    parsed, attachments, sent = fields_from_mime(raw)
    for key, value in parsed.items():
        fields.setdefault(key, value)
    return attachments, sent, raw


RESPONSES = {"ReplyToItem": "RE: ", "ReplyAllToItem": "RE: ", "ForwardItem": "FW: "}


def build_response(mbx: Mailbox, node: Element) -> Item:
    """A reply / reply-all / forward (response objects) as a new message referencing the original."""
    kind = local(node)
    reference = find(node, "t:ReferenceItemId")
    if reference is None:
        raise EwsError("ErrorInvalidReferenceItem", "ReferenceItemId is missing.")
    original = mbx.item(reference.get("Id", ""))
    given, attachments = fields_from_element(node)
    fields: dict[str, Element] = {}
    subject = given.get("Subject")
    prefix = RESPONSES[kind]
    base = original.value("Subject") or ""
    fields["Subject"] = copy(subject) if subject is not None else el(t("Subject"), prefix + base)
    new_body = given.get("NewBodyContent")
    kind_of_body, old_body = body_text(original)
    body = el(t("Body"), (new_body.text or "" if new_body is not None else "") + "\n\n" + old_body)
    body.set(
        "BodyType", new_body.get("BodyType", kind_of_body) if new_body is not None else kind_of_body
    )
    fields["Body"] = body
    for name in ("ToRecipients", "CcRecipients", "BccRecipients"):
        if name in given:
            fields[name] = copy(given[name])
    if kind != "ForwardItem" and "ToRecipients" not in given:
        to = (
            _renamed(original.fields["From"], "ToRecipients") if "From" in original.fields else None
        )
        if to is not None:
            inner = find(to, "t:Mailbox")
            to = el(t("ToRecipients"))
            if inner is not None:
                to.append(copy(inner))
            fields["ToRecipients"] = to
        if kind == "ReplyAllToItem":
            everyone = el(t("CcRecipients"))
            for name in ("ToRecipients", "CcRecipients"):
                for mb in findall(original.fields.get(name), "t:Mailbox"):
                    if (text(mb, "t:EmailAddress") or "").lower() != mbx.upn:
                        everyone.append(copy(mb))
            if len(everyone):
                fields["CcRecipients"] = everyone
    message_id = original.value("InternetMessageId")
    if message_id:
        fields["InReplyTo"] = el(t("InReplyTo"), message_id)
        refs = " ".join(p for p in (original.value("References"), message_id) if p)
        fields["References"] = el(t("References"), refs)
    item = new_item(mbx, "Message", fields)
    item.attachments = attachments
    if kind == "ForwardItem":
        item.attachments += list(original.attachments)
    return item


def build_item(mbx: Mailbox, node: Element) -> Item:
    kind = local(node)
    if kind in RESPONSES:
        return build_response(mbx, node)
    if kind not in ITEM_CLASS:
        raise EwsError("ErrorInvalidItemForOperationCreateItem", f"Cannot create a {kind}.")
    fields, attachments = fields_from_element(node)
    mime_attachments, sent, raw = _apply_mime(fields)
    item = new_item(mbx, kind, fields)
    if kind == "CalendarItem":
        from sandbox.ews.recurrence import align_master

        align_master(item)
    item.attachments = attachments + mime_attachments
    item.mime = raw
    if sent:
        fields.setdefault("DateTimeSent", el(t("DateTimeSent"), sent))
    return item


def send_message(server: EwsServer, mbx: Mailbox, item: Item, save_to: Folder | None) -> None:
    """Send: a sent copy (optional) and a delivered copy in each sandbox recipient's Inbox."""
    item.fields.pop("IsDraft", None)
    if "From" not in item.fields:
        item.fields["From"] = mailbox_elem("From", mbx.display_name, mbx.upn)
    item.fields.setdefault("Sender", _renamed(item.fields["From"], "Sender"))
    item.fields["DateTimeSent"] = el(t("DateTimeSent"), iso(now()))
    item.fields["IsRead"] = el(t("IsRead"), "true")
    recipients = {
        address.lower()
        for name in ("ToRecipients", "CcRecipients", "BccRecipients")
        for _label, address in addresses(item, name)
    }
    mime = _mime_of(item)
    snapshot = Item(
        id=item.id,
        kind=item.kind,
        folder_id="",
        fields={k: copy(v) for k, v in item.fields.items()},
        attachments=list(item.attachments),
    )
    for address in sorted(recipients):
        if address in server.upns:
            # Delivered after the sender's mailbox lock is released (no lock-order deadlock).
            server.queue_delivery(address, mime, snapshot)
    if save_to is not None:
        if item.folder_id and item.id in mbx.items:
            if item.folder_id != save_to.id:
                mbx.move_item(item, save_to)
            else:
                mbx.touch_item(item, {"IsDraft", "DateTimeSent"})
        else:
            mbx.add_item(save_to, item)
    elif item.id in mbx.items:
        mbx.remove_item(item)


def _renamed(node: Element, tag: str) -> Element:
    out = copy(node)
    out.tag = t(tag)
    return out


def _mime_of(item: Item) -> bytes:
    from sandbox.ews.mime import build_mime

    return build_mime(item)


def deliver(mbx: Mailbox, mime: bytes, folder: str = "inbox", copy_from: Item | None = None) -> str:
    """Deliver a message into a folder (by distinguished name or id); returns the item id."""
    from sandbox.ews.mime import fields_from_mime

    target = mbx.folders.get(folder) or mbx.dist(folder)
    fields, attachments, sent = fields_from_mime(mime)
    if copy_from is not None:
        for key in ("Body", "Categories", "Importance", "ConversationIndex", "ConversationTopic"):
            if key in copy_from.fields and key != "Categories":
                fields[key] = copy(copy_from.fields[key])
        fields.pop("BccRecipients", None)
        attachments = [
            type(a)(new_id(b"A"), a.name, a.content_type, a.content, a.content_id, a.is_inline)
            for a in copy_from.attachments
        ]
    fields["IsRead"] = el(t("IsRead"), "false")
    if sent:
        fields["DateTimeSent"] = el(t("DateTimeSent"), sent)
    item = new_item(mbx, "Message", fields)
    item.attachments = attachments
    item.mime = mime
    mbx.add_item(target, item, new_mail=True)
    return item.id


def _check_recipients(item: Item) -> None:
    """A message goes out only with at least one recipient (ErrorInvalidRecipients otherwise)."""
    if not any(addresses(item, n) for n in ("ToRecipients", "CcRecipients", "BccRecipients")):
        raise EwsError("ErrorInvalidRecipients", "At least one recipient isn't valid.")


def _sent_folder(mbx: Mailbox, saved_node: Element | None) -> Folder:
    """Where a sent message's copy goes: m:SavedItemFolderId when given, else Sent Items."""
    return resolve_folder(mbx, saved_node) if saved_node is not None else mbx.dist("sentitems")


def create_item(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox
    disposition = req.get("MessageDisposition", "SaveOnly")
    saved_node = find(req, "m:SavedItemFolderId")

    def answer(node: Element, msg: Element) -> None:
        item = build_item(mbx, node)
        if saved_node is not None:
            folder = resolve_folder(mbx, saved_node)
        else:
            default = DEFAULT_FOLDER.get(item.kind, "drafts")
            if item.kind == "Message" and disposition == "SendAndSaveCopy":
                default = "sentitems"
            folder = mbx.dist(default)
        items = sub(msg, m("Items"))
        if item.kind == "Message" and disposition in ("SendOnly", "SendAndSaveCopy"):
            _check_recipients(item)
            save_to = folder if disposition == "SendAndSaveCopy" else None
            send_message(ctx.server, mbx, item, save_to)
        else:
            if item.kind == "Message":
                item.fields.setdefault("IsDraft", el(t("IsDraft"), "true"))
                item.fields.setdefault("IsRead", el(t("IsRead"), "true"))
            mbx.add_item(folder, item)
            items.append(_id_only(item))

    return per_node("CreateItem", children(req, "m:Items"), answer)


# -- UpdateItem ------------------------------------------------------------------------------


def _field_value(change: Element, name: str) -> Element:
    value = next((c for c in change if local(c) not in ("FieldURI", "IndexedFieldURI", "ExtendedFieldURI")), None)  # fmt: skip
    if value is None:
        raise EwsError("ErrorInvalidPropertySet", "The update has no item element.")
    if name.startswith("ext:"):
        node = find(value, "t:ExtendedProperty")
    else:
        node = find(value, f"t:{name}")
    if node is None:
        raise EwsError("ErrorInvalidPropertySet", f"The item element has no {name}.")
    return node


def _entry(container: Element, key: str) -> Element | None:
    return next((e for e in findall(container, "t:Entry") if e.get("Key") == key), None)


def _set(fields: dict[str, Element], change: Element) -> str:
    uri = change[0]
    name = uri_name(uri)
    if name in ("ItemId", "ParentFolderId", "DateTimeCreated", "Size"):
        raise EwsError("ErrorInvalidPropertySet", f"{name} is read-only.")
    value = _field_value(change, name)
    if local(uri) != "IndexedFieldURI":
        fields[name] = normalise(copy(value))
        return name
    index = uri.get("FieldIndex", "")
    container = copy(fields[name]) if name in fields else el(t(name))
    new_entry = _entry(value, index)
    if new_entry is None:
        raise EwsError("ErrorInvalidPropertySet", f"No entry {index} in {name}.")
    old = _entry(container, index)
    if old is None:
        container.append(copy(new_entry))
    elif name == "PhysicalAddresses":
        for part in new_entry:
            existing = find(old, f"t:{local(part)}")
            if existing is not None:
                old.remove(existing)
            old.append(copy(part))
    else:
        container.replace(old, copy(new_entry))
    fields[name] = container
    return name


def _delete(fields: dict[str, Element], change: Element) -> str:
    uri = change[0]
    name = uri_name(uri)
    if local(uri) != "IndexedFieldURI":
        fields.pop(name, None)
        return name
    container = fields.get(name)
    if container is None:
        return name
    container = copy(container)
    entry = _entry(container, uri.get("FieldIndex", ""))
    if entry is not None:
        path = uri.get("FieldURI", "")
        sub_name = path.split(":")[2] if path.count(":") >= 2 else None
        if sub_name:
            part = find(entry, f"t:{sub_name}")
            if part is not None:
                entry.remove(part)
            if not len(entry):
                container.remove(entry)
        else:
            container.remove(entry)
    if len(container):
        fields[name] = container
    else:
        fields.pop(name, None)
    return name


def _append(fields: dict[str, Element], change: Element) -> str:
    uri = change[0]
    name = uri_name(uri)
    value = _field_value(change, name)
    if name not in fields:
        fields[name] = copy(value)
        return name
    merged = copy(fields[name])
    if name == "Body":
        merged.text = (merged.text or "") + (value.text or "")
    else:
        for child in value:
            merged.append(copy(child))
    fields[name] = merged
    return name


def apply_updates(item: Item, updates: Element) -> tuple[dict[str, Element], set[str]]:
    """The item's fields after the updates, and the names changed (nothing is applied yet)."""
    fields = dict(item.fields)
    changed: set[str] = set()
    for change in updates:
        kind = local(change)
        if kind == "SetItemField":
            changed.add(_set(fields, change))
        elif kind == "DeleteItemField":
            changed.add(_delete(fields, change))
        elif kind == "AppendToItemField":
            changed.add(_append(fields, change))
        else:
            raise EwsError("ErrorInvalidPropertySet", f"Unknown update {kind}.")
    return fields, changed


def check_conflict(item: Item, id_node: Element, changed: set[str], resolution: str) -> None:
    """Stale change keys: NeverOverwrite always fails, AutoResolve fails when a field collides."""
    change_key = id_node.get("ChangeKey")
    if not change_key or resolution == "AlwaysOverwrite":
        return
    version = change_key_version(change_key)
    if version >= item.version:
        return
    if resolution == "NeverOverwrite" or item.changed_since(version) & changed:
        raise EwsError(
            "ErrorIrresolvableConflict",
            "The send or update operation could not be performed because the change key passed "
            "in the request does not match the current change key for the item.",
        )


def update_item(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox
    resolution = req.get("ConflictResolution", "AutoResolve")
    disposition = req.get("MessageDisposition")

    def answer(change: Element, msg: Element) -> None:
        id_node = change[0]
        item = resolve_item(mbx, id_node)
        updates = find(change, "t:Updates")
        fields, changed = apply_updates(item, updates if updates is not None else el("x"))
        check_conflict(item, id_node, changed, resolution)
        if item.kind == "Task" and updates is not None:
            order = [uri_name(c[0]) for c in updates if local(c) == "SetItemField"]
            changed |= settle_progress(fields, order)
        if item.kind == "CalendarItem":
            from sandbox.ews.recurrence import after_update

            after_update(mbx, item, fields, changed)
        item.fields = fields
        if item.master_id is not None:
            # An exception of a series: it changes with its master, not in the folder log.
            item.version += 1
            item.changed[item.version] = changed
            item.modified = now()
        else:
            mbx.touch_item(item, changed, read_only=changed == {"IsRead"})
        items = sub(msg, m("Items"))
        if item.kind == "Message" and disposition in ("SendOnly", "SendAndSaveCopy"):
            saved = find(req, "m:SavedItemFolderId")
            save_to = _sent_folder(mbx, saved) if disposition == "SendAndSaveCopy" else None
            send_message(ctx.server, mbx, item, save_to)
        else:
            items.append(_id_only(item))
        sub(sub(msg, m("ConflictResults")), t("Count"), "0")

    return per_node("UpdateItem", findall(req, "m:ItemChanges/t:ItemChange"), answer)


# -- DeleteItem, MoveItem, CopyItem, SendItem -------------------------------------------------


def delete_item(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox
    delete_type = req.get("DeleteType", "HardDelete")

    def answer(node: Element, msg: Element) -> None:
        if local(node) == "OccurrenceItemId":
            from sandbox.ews.recurrence import delete_occurrence

            delete_occurrence(mbx, node)
        else:
            item = resolve_item(mbx, node)
            trash = mbx.dist("deleteditems")
            if item.master_id is not None:
                from sandbox.ews.recurrence import delete_occurrence_item

                delete_occurrence_item(mbx, item)
            elif delete_type == "MoveToDeletedItems" and item.folder_id != trash.id:
                mbx.move_item(item, trash)
            else:
                mbx.remove_item(item)

    return per_node("DeleteItem", children(req, "m:ItemIds"), answer)


def _move_or_copy(ctx: Ctx, req: Element, op: str) -> Element:
    mbx = ctx.mailbox
    nodes = children(req, "m:ItemIds")
    try:
        target = resolve_folder(mbx, find(req, "m:ToFolderId"))
    except EwsError as exc:
        return fail_all(op, exc, len(nodes))

    def answer(node: Element, msg: Element) -> None:
        item = resolve_item(mbx, node)
        if op == "MoveItem":
            moved = mbx.move_item(item, target)
        else:
            moved = Item(
                id=new_id(b"I"),
                kind=item.kind,
                folder_id="",
                fields={k: copy(v) for k, v in item.fields.items()},
                attachments=list(item.attachments),
                mime=item.mime,
            )
            mbx.add_item(target, moved)
        sub(msg, m("Items")).append(_id_only(moved))

    return per_node(op, nodes, answer)


def move_item(ctx: Ctx, req: Element) -> Element:
    return _move_or_copy(ctx, req, "MoveItem")


def copy_item(ctx: Ctx, req: Element) -> Element:
    return _move_or_copy(ctx, req, "CopyItem")


def send_item(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox
    save = req.get("SaveItemToFolder", "true") == "true"
    saved_node = find(req, "m:SavedItemFolderId")

    def answer(node: Element, msg: Element) -> None:
        item = resolve_item(mbx, node)
        change_key = node.get("ChangeKey")
        if change_key and change_key_version(change_key) != item.version:
            raise EwsError(
                "ErrorStaleObject",
                "The change key passed in the request does not match the current change key.",
            )
        if item.kind != "Message":
            raise EwsError("ErrorInvalidItemForOperationSendItem", "Only messages can be sent.")
        save_to = _sent_folder(mbx, saved_node) if save else None
        _check_recipients(item)
        send_message(ctx.server, mbx, item, save_to)

    return per_node("SendItem", children(req, "m:ItemIds"), answer)
