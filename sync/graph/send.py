"""Outgoing CRM email through Microsoft Graph: a draft with our key and Message-Id, then send.

The contract is `sync.mail.outgoing.MailSender`, as EWS's (sync.mail.senders): the sent copy in
Sent Items carries the CRM email's id in our key property (the extended property EWS writes), so
after a crash "did it go out?" has an answer, and the stage never sends twice.

Why a draft and not `sendMail`: `internetMessageId` is "Updatable only if isDraft is true"
(resources/message.md), so the Message-Id the stage chose and journalled can be set only on a
draft (user-post-messages.md), then sent (message-send.md) — which keeps a copy in Sent Items.
A draft left by a crash before the send is found by its key in Drafts and sent, never made twice.

Limits kept here: an attachment is posted whole only under 3 MB (message-post-attachments.md:
larger files need an upload session, not built), so a larger one refuses the email with a clear
reason before anything is made; In-Reply-To and References cannot be set (Graph accepts only
`x-` headers in `internetMessageHeaders`), so a reply is threaded by its tracking token and
subject, as Dynamics' own correlation does.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from sync.graph import convert
from sync.graph.side import GraphSide
from sync.mail.outgoing import SentCopy, utc_now
from sync.mail.senders import sent_copy
from sync.mailbox.mime import Attachment
from sync.sides import Invalid, SideError

DRAFTS = "messages:drafts"
MAX_INLINE_ATTACHMENT = 3 * 1024 * 1024
"""message-post-attachments.md: "If the file size is under 3 MB, you can do a single POST"."""


def _recipients(addresses: Sequence[str]) -> list[dict[str, Any]]:
    return [{"emailAddress": {"address": address}} for address in addresses]


def draft_body(fields: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The draft of an outgoing message (mailbox vocabulary) carrying `key` and its Message-Id."""
    body: dict[str, Any] = {
        "subject": fields.get("subject") or "",
        "body": {
            "contentType": "html" if fields.get("body_type", "HTML") == "HTML" else "text",
            "content": fields.get("body") or "",
        },
        "toRecipients": _recipients(fields.get("to") or []),
        "ccRecipients": _recipients(fields.get("cc") or []),
        "bccRecipients": _recipients(fields.get("bcc") or []),
        "singleValueExtendedProperties": [{"id": convert.KEY_PROPERTY, "value": key}],
    }
    if fields.get("message_id"):
        body["internetMessageId"] = str(fields["message_id"])
    return body


class GraphMailSender:
    """Outgoing CRM email through Graph: draft (key, Message-Id, attachments), then send."""

    finds_sent_copies = True

    def __init__(self, side: GraphSide, address: str | None, sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self.side = side
        self.address = address
        self.sleep = sleep

    def find_sent(self, email_id: str, message_id: str) -> SentCopy | None:
        return sent_copy(self.side, email_id, message_id)

    def send(
        self,
        fields: Mapping[str, Any],
        key: str,
        attachments: Sequence[Attachment],
        handoff: Callable[[], None],
    ) -> SentCopy:
        too_large = [a.name for a in attachments if len(a.content) >= MAX_INLINE_ATTACHMENT]
        if too_large:
            raise Invalid(
                f"Attachments of 3 MB or more cannot be sent through Microsoft Graph yet: "
                f"{', '.join(too_large)}.",
                "attachment_too_large",
            )
        client = self.side.client
        left = self.side.find_by_key(DRAFTS, [key]).get(key)
        if left is not None:  # a crash after the draft was made: send that one, not another
            draft_id = left.id
        else:
            made = client.post("me/messages", draft_body(fields, key))
            draft_id = str(made["id"])
            path = f"me/messages/{quote(draft_id, safe='')}/attachments"
            for attachment in attachments:
                client.post(
                    path,
                    {
                        "@odata.type": "#microsoft.graph.fileAttachment",
                        "name": attachment.name,
                        "contentType": attachment.content_type,
                        "contentBytes": base64.b64encode(attachment.content).decode("ascii"),
                    },
                )
        handoff()
        client.post(f"me/messages/{quote(draft_id, safe='')}/send", None)
        for attempt in range(5):  # Exchange files the sent copy asynchronously
            copy = self.find_sent(key, str(fields.get("message_id") or ""))
            if copy is not None:
                return copy
            self.sleep(0.2 * (attempt + 1))
        return SentCopy(str(fields.get("message_id") or ""), utc_now())

    def maybe_sent(self, error: SideError) -> bool:
        # Whatever failed, the next run looks in Sent Items before sending again.
        return True
