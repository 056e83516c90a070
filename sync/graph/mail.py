"""GraphTrackingMailbox: what email tracking needs of a Graph mailbox beyond the Side reads
(`sync.mail.ports.TrackingMailbox`), over a `GraphSide`'s client.

Messages of a folder are kind "messages:<folder>" (a well-known name such as "inbox" or
"sentitems", or a folder id); their changes come from the folder's `messages/delta`
(message-delta.md). `attachments` is one list of the message's attachments
(message-list-attachments.md: a fileAttachment carries `contentBytes`); `recent` is one page
of the folder's messages, newest first; `set_categories` reads the categories and writes the
new list in JSON batches.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from urllib.parse import quote

from sync.graph.side import GraphSide
from sync.mail.ports import AttachmentData
from sync.sides import NotFound, Page, Result, SideError, Upsert, Written

MAX_RECENT = 1000
"""The most `recent` asks for in one page ($top)."""


class GraphTrackingMailbox:
    """`TrackingMailbox` for the mailbox of one `GraphSide`."""

    name = "mailbox"

    def __init__(self, side: GraphSide) -> None:
        self.side = side
        self.client = side.client

    def read_changes(self, kind: str, token: str | None, known: None = None) -> Iterator[Page]:
        """Messages of kind "messages:<folder>" since the delta link `token`."""
        return self.side.read_changes(kind, token)

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        """Whole messages by id (any folder), as the side reads them."""
        return self.side.read(kind, ids)

    def attachments(self, item_id: str, limit: int) -> list[AttachmentData]:
        """The message's file attachments in order; those over `limit` bytes without content.
        Item and reference attachments are listed by name, without content."""
        listing = self.client.all(f"me/messages/{quote(item_id, safe='')}/attachments")
        out = []
        for attachment in listing:
            size = int(attachment.get("size") or 0)
            raw = attachment.get("contentBytes")
            content = base64.b64decode(raw) if raw is not None and size <= limit else None
            out.append(
                AttachmentData(
                    name=str(attachment.get("name") or ""),
                    content_type=str(attachment.get("contentType") or "application/octet-stream"),
                    size=size if size else len(content or b""),
                    content=content,
                )
            )
        return out

    def set_categories(
        self, ids: Sequence[str], add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> list[Result]:
        """Add / remove categories on messages; one result per id (a gone one: NotFound)."""
        current = self.client.batch(
            [
                {"method": "GET", "url": f"/me/messages/{quote(i, safe='')}?$select=categories"}
                for i in ids
            ]  # fmt: skip
        )
        results: list[Result | None] = [None] * len(ids)
        requests, where = [], []
        for index, (item_id, answer) in enumerate(zip(ids, current, strict=True)):
            if isinstance(answer, SideError):
                results[index] = answer
                continue
            names = [c for c in answer.get("categories") or [] if c not in remove]
            names += [c for c in add if c not in names]
            requests.append({"method": "PATCH", "url": f"/me/messages/{quote(item_id, safe='')}", "body": {"categories": names}})  # fmt: skip
            where.append(index)
        for index, answer in zip(where, self.client.batch(requests), strict=True):
            if isinstance(answer, SideError):
                results[index] = answer
            else:
                results[index] = Written(ids[index], answer.get("@odata.etag"))
        return [r if r is not None else NotFound("not applied") for r in results]

    def subfolders(self, parent: str = "inbox") -> list[tuple[str, str]]:
        """(id, name) of the folders right under `parent` (mailfolder-list-childfolders.md)."""
        found = self.client.all(f"me/mailFolders/{quote(parent, safe='')}/childFolders")
        return [(str(f["id"]), str(f.get("displayName") or "")) for f in found]

    def recent(self, folder: str, limit: int) -> list[Upsert]:
        """The newest `limit` messages of `folder`, newest first (one request)."""
        count = max(0, min(limit, MAX_RECENT))
        if count == 0:
            return []
        kind = f"messages:{folder}"
        page = self.client.get(
            f"me/mailFolders/{quote(folder, safe='')}/messages"
            f"?$top={count}&$orderby=receivedDateTime%20desc&{self.side.expand_query(kind)}"
        )
        return [self.side.to_upsert(kind, item) for item in page.get("value", [])]
