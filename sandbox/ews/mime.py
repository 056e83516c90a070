"""MIME for sandbox messages: build RFC 5322 text from an item, and items from delivered MIME.

Exchange keeps the Internet headers of a message (Message-Id, In-Reply-To, References, Date,
From, To, Cc) and serves them as MimeContent; this mirrors that with the standard email package.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.message import EmailMessage
from email.parser import BytesParser

from sandbox.ews.items import addresses, body_text, mailbox_elem
from sandbox.ews.store import Attachment, Item, iso, new_id
from sandbox.ews.xml import Element, el, sub, t


def _format(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(email.utils.formataddr((n, a)) if n else a for n, a in pairs)


def build_mime(item: Item) -> bytes:
    """The message as MIME (headers from the item's fields, body, file attachments)."""
    msg = EmailMessage(policy=email.policy.SMTP)
    sender = addresses(item, "From") or addresses(item, "Sender")
    if sender:
        msg["From"] = _format(sender[:1])
    for field, header in (("ToRecipients", "To"), ("CcRecipients", "Cc")):
        pairs = addresses(item, field)
        if pairs:
            msg[header] = _format(pairs)
    msg["Subject"] = item.value("Subject") or ""
    sent = item.value("DateTimeSent")
    msg["Date"] = email.utils.format_datetime(item.created) if not sent else _rfc_date(sent)
    msg["Message-ID"] = item.value("InternetMessageId") or f"<{item.id[:20]}@sandbox.example>"
    if item.value("InReplyTo"):
        msg["In-Reply-To"] = item.value("InReplyTo") or ""
    if item.value("References"):
        msg["References"] = item.value("References") or ""
    kind, body = body_text(item)
    if kind == "HTML":
        msg.set_content(body, subtype="html")
    else:
        msg.set_content(body)
    for att in item.attachments:
        if att.item_xml is not None:
            continue
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(
            att.content,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=att.name,
        )
    return msg.as_bytes()


def _rfc_date(value: str) -> str:
    from datetime import datetime

    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return email.utils.format_datetime(moment)


def _recipients(tag: str, header: str | None) -> Element | None:
    if not header:
        return None
    pairs = email.utils.getaddresses([header])
    if not pairs:
        return None
    node = el(t(tag))
    for name, address in pairs:
        mb = sub(node, t("Mailbox"))
        if name:
            sub(mb, t("Name"), name)
        sub(mb, t("EmailAddress"), address)
        sub(mb, t("RoutingType"), "SMTP")
        sub(mb, t("MailboxType"), "OneOff")
    return node


def fields_from_mime(raw: bytes) -> tuple[dict[str, Element], list[Attachment], str | None]:
    """Item fields, attachments and the sent time (ISO) of a MIME message."""
    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    fields: dict[str, Element] = {}
    fields["Subject"] = el(t("Subject"), str(msg.get("Subject", "")))
    body_part = msg.get_body(preferencelist=("html", "plain"))
    if body_part is not None:
        is_html = body_part.get_content_subtype() == "html"
        body = el(t("Body"), body_part.get_content())
        body.set("BodyType", "HTML" if is_html else "Text")
        fields["Body"] = body
    sender = email.utils.getaddresses([str(msg.get("From", ""))])
    if sender and sender[0][1]:
        name, address = sender[0]
        fields["From"] = mailbox_elem("From", name or address, address)
        fields["Sender"] = mailbox_elem("Sender", name or address, address)
    for tag, header in (("ToRecipients", "To"), ("CcRecipients", "Cc"), ("BccRecipients", "Bcc")):
        node = _recipients(tag, str(msg.get(header, "")) or None)
        if node is not None:
            fields[tag] = node
    for tag, header in (
        ("InternetMessageId", "Message-ID"),
        ("InReplyTo", "In-Reply-To"),
        ("References", "References"),
    ):
        if msg.get(header):
            fields[tag] = el(t(tag), " ".join(str(msg[header]).split()))
    headers = el(t("InternetMessageHeaders"))
    for key, value in msg.items():
        sub(headers, t("InternetMessageHeader"), str(value), HeaderName=key)
    fields["InternetMessageHeaders"] = headers
    sent = None
    if msg.get("Date"):
        try:
            sent = iso(email.utils.parsedate_to_datetime(str(msg["Date"])))
        except (TypeError, ValueError):
            sent = None
    attachments = []
    for part in msg.iter_attachments():
        if part.get_content_type() == "message/rfc822":
            attachments.append(_item_attachment(part))
            continue
        payload = part.get_payload(decode=True) or b""
        attachments.append(
            Attachment(
                id=new_id(b"A"),
                name=part.get_filename() or "attachment",
                content_type=part.get_content_type(),
                content=payload if isinstance(payload, bytes) else b"",
                content_id=(str(part["Content-ID"]).strip("<>") if part["Content-ID"] else None),
                is_inline=part.get_content_disposition() == "inline",
            )
        )
    return fields, attachments, sent


def _item_attachment(part: EmailMessage) -> Attachment:
    """An attached message (message/rfc822) as Exchange keeps it: an ItemAttachment holding a
    Message item, its MIME kept for GetAttachment's IncludeMimeContent."""
    inner = part.get_content()
    raw = inner.as_bytes() if isinstance(inner, EmailMessage) else bytes(inner or b"")
    fields, _, _ = fields_from_mime(raw)
    message = el(t("Message"))
    for value in fields.values():
        message.append(value)
    subject = fields["Subject"].text or "message"
    return Attachment(
        id=new_id(b"A"),
        name=part.get_filename() or subject,
        content_type="message/rfc822",
        content=raw,
        item_xml=message,
    )


def attached_item_mime(att: Attachment) -> bytes:
    """The MIME of an ItemAttachment's item: as delivered, else built from its fields."""
    from sandbox.ews.items import fields_from_element, local

    if att.content:
        return att.content
    assert att.item_xml is not None
    fields, attachments = fields_from_element(att.item_xml)
    item = Item(id=att.id, kind=local(att.item_xml), folder_id="", fields=fields)
    item.attachments = attachments
    return build_mime(item)
