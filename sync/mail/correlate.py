"""Which CRM email a message answers, in Dynamics' order (pure: lookups are given).

1. In-Reply-To, then References (newest first): the Internet Message-Ids of the messages it
   answers, matched against `email.messageid`;
2. the tracking token in the subject (`email.trackingtoken`, see `sync.mail.token`);
3. the conversation index: Outlook's PR_CONVERSATION_INDEX is a 22-byte header (reserved byte,
   time, conversation GUID) followed by one 5-byte block per reply, so a message whose index is
   longer than 22 bytes continues a conversation, and its first 22 bytes name it.

The run first asks which ids, tokens and conversations to look up (`wanted_*`), fetches them in
as few requests as it can, then calls `correlate` per message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.mail.ports import CrmEmail
from sync.mail.token import find_token

HEADER_BYTES = 22
"""The conversation index's header (MS-OXOMSG / ScCreateConversationIndex); 5 bytes a reply."""

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


def normalize_id(value: str | None) -> str | None:
    """An Internet Message-Id in its canonical form `<local@domain>` (None when empty)."""
    if not value:
        return None
    found = _MESSAGE_ID.search(value)
    if found:
        return found.group(0)
    text = value.strip().strip("<>").strip()
    return f"<{text}>" if text and not any(c.isspace() for c in text) else None


def message_id_of(fields: Mapping[str, Any], item_id: str) -> str:
    """The message's Message-Id, or a stable stand-in for a message without one (drafts,
    some automated mail): derived from the mailbox item id, so a re-run or a new install
    finds the CRM email made for it."""
    found = normalize_id(fields.get("message_id"))
    if found:
        return found
    digest = hashlib.sha256(item_id.encode()).hexdigest()[:32]
    return f"<{digest}@no-message-id.mailbox-sync.invalid>"


def referenced_ids(fields: Mapping[str, Any]) -> list[str]:
    """In-Reply-To first, then References newest first, without repeats."""
    ids: list[str] = []
    reply = normalize_id(fields.get("in_reply_to"))
    if reply:
        ids.append(reply)
    references = str(fields.get("references") or "")
    ids += reversed(_MESSAGE_ID.findall(references))
    own = normalize_id(fields.get("message_id"))
    return [i for i in dict.fromkeys(ids) if i != own]


def _index_bytes(index: str | None) -> bytes | None:
    if not index:
        return None
    try:
        return base64.b64decode(index, validate=False)
    except (binascii.Error, ValueError):
        return None


def conversation_root(index: str | None) -> str | None:
    """The conversation a reply belongs to (base64 of its index's first 22 bytes); None for a
    first message (an index of the header alone) or an unreadable index."""
    raw = _index_bytes(index)
    if raw is None or len(raw) <= HEADER_BYTES:
        return None
    return base64.b64encode(raw[:HEADER_BYTES]).decode()


@dataclass(frozen=True)
class Lookups:
    """What the CRM answered: emails by Message-Id, by token, by conversation root."""

    by_message_id: Mapping[str, CrmEmail] = field(default_factory=dict)
    by_token: Mapping[str, CrmEmail | None] = field(default_factory=dict)
    by_conversation: Mapping[str, CrmEmail | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Correlation:
    email: CrmEmail
    how: str
    """"reference" (In-Reply-To / References), "token" or "conversation"."""


def wanted_tokens(fields: Mapping[str, Any], prefix: str | None) -> str | None:
    return find_token(fields.get("subject"), prefix) if prefix else None


def correlate(
    fields: Mapping[str, Any], lookups: Lookups, prefix: str | None
) -> Correlation | None:
    """The CRM email `fields` answers, by the first rule that finds one (None: no thread)."""
    own = normalize_id(fields.get("message_id"))
    for referenced in referenced_ids(fields):
        found = lookups.by_message_id.get(referenced)
        if found is not None:
            return Correlation(found, "reference")
    token = wanted_tokens(fields, prefix)
    if token:
        found = lookups.by_token.get(token)
        if found is not None and found.message_id != own:
            return Correlation(found, "token")
    root = conversation_root(fields.get("conversation_index"))
    if root:
        found = lookups.by_conversation.get(root)
        if found is not None and found.message_id != own:
            return Correlation(found, "conversation")
    return None


def needs_more(fields: Mapping[str, Any], lookups: Lookups) -> bool:
    """Whether the references alone found nothing (the token and conversation are worth a
    request only then)."""
    return not any(i in lookups.by_message_id for i in referenced_ids(fields))


def all_referenced(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every Message-Id the messages refer to, once."""
    ids: dict[str, None] = {}
    for fields in messages:
        ids.update(dict.fromkeys(referenced_ids(fields)))
    return list(ids)
