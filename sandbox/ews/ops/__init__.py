"""The EWS operations the sandbox answers, by SOAP body element name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sandbox.ews.ops import attachments, find, folders, items, misc, sync
from sandbox.ews.xml import Element

if TYPE_CHECKING:
    from sandbox.ews.server import Ctx

OPERATIONS: dict[str, Callable[[Ctx, Element], Element]] = {
    "GetFolder": folders.get_folder,
    "FindFolder": folders.find_folder,
    "CreateFolder": folders.create_folder,
    "UpdateFolder": folders.update_folder,
    "DeleteFolder": folders.delete_folder,
    "SyncFolderHierarchy": folders.sync_folder_hierarchy,
    "EmptyFolder": folders.empty_folder,
    "MoveFolder": folders.move_folder,
    "GetItem": items.get_item,
    "CreateItem": items.create_item,
    "UpdateItem": items.update_item,
    "DeleteItem": items.delete_item,
    "MoveItem": items.move_item,
    "CopyItem": items.copy_item,
    "SendItem": items.send_item,
    "FindItem": find.find_item,
    "SyncFolderItems": sync.sync_folder_items,
    "CreateAttachment": attachments.create_attachment,
    "GetAttachment": attachments.get_attachment,
    "DeleteAttachment": attachments.delete_attachment,
    "ResolveNames": misc.resolve_names,
    "ConvertId": misc.convert_id,
    "Subscribe": misc.subscribe,
    "GetEvents": misc.get_events,
    "GetStreamingEvents": misc.get_streaming_events,
    "Unsubscribe": misc.unsubscribe,
}
