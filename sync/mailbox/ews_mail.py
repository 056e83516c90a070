"""EwsTrackingMailbox: what email tracking needs of an Exchange mailbox beyond the Side reads
(`sync.mail.ports.TrackingMailbox`), over an `EwsSide`'s connection.

Each method is one EWS request, or two: `attachments` is a GetItem of the attachment list
(names, types, sizes: GetItem "does return metadata about an attached item or file",
getitem-operation.md) and, only for those within the limit, one GetAttachment of all of them;
`recent` is a single FindItem, newest first — so it carries what FindItem returns (a summary:
no body, no recipient lists, and only the display name of the sender: finditem-operation.md),
enough for a list; the tracking run reads the full message with `read`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any

from exchangelib import ItemId, Message
from exchangelib.attachments import FileAttachment, ItemAttachment
from exchangelib.fields import FieldOrder, FieldPath
from exchangelib.folders import SHALLOW, FolderCollection
from exchangelib.items import ID_ONLY
from exchangelib.services import FindItem, GetAttachment, GetItem

from sync.mail.ports import AttachmentData
from sync.mailbox import ews_convert as convert
from sync.mailbox.ews import EwsSide
from sync.mailbox.ews_connection import side_error
from sync.sides import NotFound, Page, Result, Upsert

MAX_RECENT = 1000
"""FindItem pages hold at most 1,000 items (DESIGN.md §3): `recent` asks for one page."""

SUMMARY_FIELDS = (
    "subject",
    "author",
    "datetime_received",
    "datetime_sent",
    "message_id",
    "in_reply_to",
    "references",
    "conversation_index",
    "categories",
    "has_attachments",
    convert.KEY_FIELD,
)
"""What `recent` asks FindItem for: first-class FindItem properties (email-properties-and-
elements-in-ews-in-exchange.md, Table 1), Categories and our key property. exchangelib calls
several of them "complex" and would add a GetItem; the FindItem service takes them as they are."""


def _base64(value: Any) -> str | None:
    return base64.b64encode(value).decode("ascii") if value else None


def _eml_name(name: str | None) -> str:
    """An attached message's file name: its name, ending in .eml (the MIME we store)."""
    text = (name or "message").strip() or "message"
    return text if text.lower().endswith((".eml", ".msg")) else text + ".eml"


# --- perfmail (issue 13) ---
_ATTACHMENTS = Message.get_field_by_fieldname("attachments")


class _AttachmentListing(GetItem):
    """GetItem answering each item's attachment list only. exchangelib's `Item()` calls
    `attach(all of them)` once per attachment, each time comparing every pair by hashing every
    field: cubic, so a message with 500 attachments took minutes to parse. The list field
    alone parses in linear time, in the order `Item.attachments` has (ids use the index)."""

    def _elem_to_obj(self, elem: Any) -> Any:
        return _ATTACHMENTS.from_xml(elem=elem, account=self.account)


# --- end perfmail ---


class EwsTrackingMailbox:
    """`TrackingMailbox` for the mailbox of one `EwsSide` (its connection and folders)."""

    name = "mailbox"

    def __init__(self, side: EwsSide) -> None:
        self.side = side

    @property
    def account(self) -> Any:
        return self.side.account

    def _folder(self, folder: str) -> Any:
        """ "inbox", "sentitems" or a folder id, looked up once (the side caches it)."""
        return self.side.folder(f"messages:{folder}")

    # --- reading -------------------------------------------------------------------------------

    def read_changes(self, kind: str, token: str | None, known: None = None) -> Iterator[Page]:
        """Messages of kind "messages:<folder>" since `token` (the side's SyncFolderItems)."""
        return self.side.read_changes(kind, token)

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        """Whole messages by id (GetItem), as the side reads them."""
        return self.side.read(kind, ids)

    def attachments(self, item_id: str, limit: int) -> list[AttachmentData]:
        """The message's attachments, in order: those of at most `limit` bytes (the size
        Exchange reports for each) with their content, the others without. An attached message
        (ItemAttachment) comes as its MIME (message/rfc822, IncludeMimeContent)."""
        account = self.account

        # --- perfmail (issue 13): the list parsed alone, linear in the attachments ---
        def listing() -> list[Any]:
            service = _AttachmentListing(account=account)
            fields = {FieldPath(field=_ATTACHMENTS)}
            return list(service.call(items=[ItemId(id=item_id)], additional_fields=fields,
                                     shape=ID_ONLY))  # fmt: skip

        [listed] = self.side.connection.call(listing, idempotent=True)
        if isinstance(listed, Exception):
            raise side_error(listed)
        attached = [a for a in listed or [] if isinstance(a, FileAttachment | ItemAttachment)]
        # --- end perfmail ---
        wanted = [a for a in attached if (a.size or 0) <= limit]
        contents: dict[str, bytes] = {}
        if wanted:

            def fetch() -> list[Any]:
                service = GetAttachment(account=account)
                return list(
                    service.call(
                        items=[a.attachment_id for a in wanted],
                        include_mime_content=True,
                        body_type=None,
                        filter_html_content=None,
                        additional_fields=None,
                    )
                )

            for attachment, got in zip(
                wanted, self.side.connection.call(fetch, idempotent=True), strict=True
            ):
                if isinstance(got, Exception):
                    error = side_error(got)
                    if isinstance(error, NotFound):
                        continue  # removed meanwhile: listed without content
                    raise error
                contents[attachment.attachment_id.id] = _content(got)
        out = []
        for attachment in attached:
            content = contents.get(attachment.attachment_id.id)
            is_item = isinstance(attachment, ItemAttachment)
            out.append(
                AttachmentData(
                    name=_eml_name(attachment.name) if is_item else attachment.name or "",
                    content_type="message/rfc822"
                    if is_item
                    else attachment.content_type or "application/octet-stream",
                    size=attachment.size if attachment.size is not None else len(content or b""),
                    content=content,
                )
            )
        return out

    def subfolders(self, parent: str = "inbox") -> list[tuple[str, str]]:
        """(id, name) of the folders right under `parent` (one shallow FindFolder)."""
        top = self._folder(parent)

        def find() -> list[Any]:
            return list(
                FolderCollection(account=self.account, folders=[top]).find_folders(depth=SHALLOW)
            )

        found = self.side.connection.call(find, idempotent=True)
        return [(f.id, f.name or "") for f in found if not isinstance(f, Exception)]

    def recent(self, folder: str, limit: int) -> list[Upsert]:
        """The newest `limit` messages of `folder`, newest first: one FindItem sorted by
        DateTimeReceived descending. Fields: a summary (see the module docstring) — `sender`
        is the sender's address where the server gives one, else their display name, which is
        `sender_name`; no body, no recipients."""
        count = max(0, min(limit, MAX_RECENT))
        if count == 0:
            return []
        target = self._folder(folder)
        fields = [FieldPath(field=Message.get_field_by_fieldname(n)) for n in SUMMARY_FIELDS]
        received = FieldPath(field=Message.get_field_by_fieldname("datetime_received"))
        order = [FieldOrder(field_path=received, reverse=True)]

        def find() -> list[Any]:
            service = FindItem(account=self.account, page_size=count)
            return list(
                service.call(
                    folders=[target],
                    additional_fields=fields,
                    restriction=None,
                    order_fields=order,
                    shape=ID_ONLY,
                    query_string=None,
                    depth=SHALLOW,
                    calendar_view=None,
                    max_items=count,
                    offset=0,
                )
            )

        label = folder
        out = []
        for item in self.side.connection.call(find, idempotent=True):
            if isinstance(item, Exception):
                raise side_error(item)
            if not isinstance(item, Message):
                continue  # meeting requests and other non-mail items
            author = item.author
            name = (author.name or author.email_address) if author else None
            fields_out = {
                "subject": item.subject,
                "sender": (author.email_address or author.name) if author else None,
                "sender_name": name,
                "received": convert.moment(item.datetime_received),
                "sent": convert.moment(item.datetime_sent),
                "message_id": item.message_id,
                "in_reply_to": item.in_reply_to,
                "references": item.references,
                "conversation_index": _base64(item.conversation_index),
                "categories": list(item.categories or []),
                "has_attachments": bool(item.has_attachments),
                "folder": label,
            }
            out.append(
                Upsert(
                    id=item.id,
                    version=item.changekey,
                    fields=fields_out,
                    key=convert.item_key(item),
                )
            )
        return out

    # --- writing -------------------------------------------------------------------------------

    def set_categories(
        self, ids: Sequence[str], add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> list[Result]:
        """Add / remove categories on messages of any folder; one result per id (the side's
        GetItem of the categories, then one UpdateItem of those that change)."""
        return self.side.set_categories(ids, add=add, remove=remove, kind="messages")


def _content(attachment: Any) -> bytes:
    """The bytes of a fetched attachment: a file's content, an item's MIME."""
    if isinstance(attachment, ItemAttachment):
        item = attachment.item
        mime = getattr(item, "mime_content", None) if item is not None else None
        return bytes(mime or b"")
    return bytes(attachment.content or b"")
