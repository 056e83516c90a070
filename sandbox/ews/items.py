"""Items as EWS XML: reading item elements from requests, computing server fields, rendering shapes.

Field URIs map to element names by the part after the colon ("item:Subject" -> Subject), except the
indexed contact fields; extended properties are keyed by their normalised ExtendedFieldURI.
"""

from __future__ import annotations

import base64
import contextlib
import html
import re
import uuid
from dataclasses import dataclass, field

from sandbox.ews.store import Attachment, Item, Mailbox, iso, new_id
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
    sub,
    t,
    text,
)

INDEXED = {
    "contacts:EmailAddress": "EmailAddresses",
    "contacts:PhoneNumber": "PhoneNumbers",
    "contacts:PhysicalAddress": "PhysicalAddresses",
    "contacts:ImAddress": "ImAddresses",
}

ITEM_CLASS = {
    "Message": "IPM.Note",
    "CalendarItem": "IPM.Appointment",
    "Contact": "IPM.Contact",
    "Task": "IPM.Task",
    "PostItem": "IPM.Post",
    "DistributionList": "IPM.DistList",
    "Item": "IPM.Note",
}

# The start of the EWS ItemType sequence; type-specific fields follow in the order stored.
ORDER = [
    "MimeContent", "ItemId", "ParentFolderId", "ItemClass", "Subject", "Sensitivity", "Body",
    "Attachments", "DateTimeReceived", "Size", "Categories", "Importance", "InReplyTo",
    "IsSubmitted", "IsDraft", "IsFromMe", "IsResend", "IsUnmodified", "InternetMessageHeaders",
    "DateTimeSent", "DateTimeCreated", "ResponseObjects", "ReminderDueBy", "ReminderIsSet",
    "ReminderMinutesBeforeStart", "DisplayCc", "DisplayTo", "HasAttachments",
    "ExtendedProperty", "Culture", "EffectiveRights", "LastModifiedName", "LastModifiedTime",
    "IsAssociated", "ConversationId", "UniqueBody",
]  # fmt: skip
_RANK = {name: i for i, name in enumerate(ORDER)}

READ_ONLY = {
    "ItemId", "ParentFolderId", "DateTimeReceived", "Size", "DateTimeCreated", "LastModifiedTime",
    "LastModifiedName", "HasAttachments", "DisplayTo", "DisplayCc", "EffectiveRights",
    "ConversationId", "IsSubmitted", "IsFromMe", "IsResend", "IsUnmodified", "ResponseObjects",
}  # fmt: skip


def ext_key(uri: Element | None) -> str:
    """A normalised key for an ExtendedFieldURI (case and number format do not matter)."""
    if uri is None:
        raise EwsError("ErrorInvalidExtendedProperty", "ExtendedFieldURI missing.")
    parts = []
    for attr in (
        "DistinguishedPropertySetId",
        "PropertySetId",
        "PropertyTag",
        "PropertyName",
        "PropertyId",
    ):
        value = uri.get(attr)
        if value is None:
            parts.append("")
            continue
        if attr in ("PropertyTag", "PropertyId"):
            with contextlib.suppress(ValueError):
                value = str(int(value, 16) if value.lower().startswith("0x") else int(value))
        elif attr == "PropertySetId":
            value = value.lower()
        parts.append(value)
    return "ext:" + "|".join(parts)


def uri_name(uri: Element) -> str:
    """The field key a FieldURI / IndexedFieldURI / ExtendedFieldURI element stands for."""
    kind = local(uri)
    if kind == "ExtendedFieldURI":
        return ext_key(uri)
    path = uri.get("FieldURI") or ""
    if kind == "IndexedFieldURI":
        base = ":".join(path.split(":")[:2])
        return INDEXED.get(base, path.split(":")[-1])
    return path.split(":")[-1]


@dataclass
class Shape:
    base: str = "Default"
    names: set[str] = field(default_factory=set)
    body_type: str | None = None

    @classmethod
    def parse(cls, elem: Element | None) -> Shape:
        if elem is None:
            return cls()
        shape = cls(base=(find(elem, "t:BaseShape").text or "Default"))  # type: ignore[union-attr]
        body_type = find(elem, "t:BodyType")
        if body_type is not None:
            shape.body_type = body_type.text
        for uri in children(elem, "t:AdditionalProperties"):
            shape.names.add(uri_name(uri))
        return shape


# -- reading items from requests -------------------------------------------------------------


def read_attachment(node: Element) -> Attachment:
    kind = local(node)
    name = find(node, "t:Name")
    ctype = find(node, "t:ContentType")
    cid = find(node, "t:ContentId")
    inline = find(node, "t:IsInline")
    if kind == "FileAttachment":
        content_node = find(node, "t:Content")
        content = base64.b64decode(content_node.text or "") if content_node is not None else b""
        item_xml = None
    else:
        content = b""
        item_xml = next((copy(c) for c in node if local(c) in ITEM_CLASS), None)
    return Attachment(
        id=new_id(b"A"),
        name=(name.text or "") if name is not None else "",
        content_type=(ctype.text or "application/octet-stream")
        if ctype is not None
        else "application/octet-stream",
        content=content,
        content_id=cid.text if cid is not None else None,
        is_inline=inline is not None and inline.text == "true",
        item_xml=item_xml,
    )


def fields_from_element(elem: Element) -> tuple[dict[str, Element], list[Attachment]]:
    """The stored fields of an item element from CreateItem (read-only fields dropped)."""
    fields: dict[str, Element] = {}
    attachments: list[Attachment] = []
    for child in elem:
        name = local(child)
        if name == "ExtendedProperty":
            fields[ext_key(find(child, "t:ExtendedFieldURI"))] = normalise(copy(child))
        elif name == "Attachments":
            attachments.extend(read_attachment(a) for a in child)
        elif name not in READ_ONLY:
            fields[name] = normalise(copy(child))
    return fields, attachments


_BOOLEAN_NAME = re.compile(r"^(Is|Has|Allow)[A-Z]|^(ReminderIsSet|MeetingRequestWasSent)$")


def _is_boolean(node: Element) -> bool:
    if _BOOLEAN_NAME.match(local(node)):
        return True
    if local(node) == "Value":
        prop = node.getparent()
        if prop is not None and local(prop) == "Values":
            prop = prop.getparent()
        uri = find(prop, "t:ExtendedFieldURI") if prop is not None else None
        return uri is not None and uri.get("PropertyType", "").startswith("Boolean")
    return False


def normalise(node: Element) -> Element:
    """Values as Exchange answers them: booleans as true/false (exchangelib sends xs:boolean's
    1/0 and reads back only true/false), recurrence dates with a zone designator."""
    for leaf in node.iter():
        if len(leaf) == 0 and leaf.text in ("1", "0") and _is_boolean(leaf):
            leaf.text = "true" if leaf.text == "1" else "false"
    if local(node) == "Recurrence":
        for part in node.iter(t("StartDate"), t("EndDate")):
            if part.text and len(part.text) == 10:
                part.text += "Z"
    return node


def new_item(mbx: Mailbox, kind: str, fields: dict[str, Element]) -> Item:
    """A new item with the defaults the server fills in."""
    item = Item(id=new_id(b"I"), kind=kind, folder_id="", fields=fields)
    if kind == "Task":
        settle_progress(fields, list(fields))  # in the order the request gave them
    if kind == "CalendarItem" and "UID" not in fields:
        fields["UID"] = el(t("UID"), uuid.uuid4().hex.upper())
    if kind == "Message":
        if "InternetMessageId" not in fields:
            fields["InternetMessageId"] = el(
                t("InternetMessageId"), f"<{uuid.uuid4().hex}@sandbox.example>"
            )
        if "ConversationIndex" not in fields:
            fields["ConversationIndex"] = el(
                t("ConversationIndex"), base64.b64encode(b"\x01" + uuid.uuid4().bytes).decode()
            )
    return item


def mailbox_elem(tag: str, name: str, address: str) -> Element:
    node = el(t(tag))
    mb = sub(node, t("Mailbox"))
    sub(mb, t("Name"), name)
    sub(mb, t("EmailAddress"), address)
    sub(mb, t("RoutingType"), "SMTP")
    sub(mb, t("MailboxType"), "Mailbox")
    return node


def addresses(item: Item, name: str) -> list[tuple[str, str]]:
    """(name, address) of the recipients in a recipient-list or single-mailbox field."""
    node = item.fields.get(name)
    out = []
    for mb in node.iter(t("Mailbox")) if node is not None else []:
        address = text(mb, "t:EmailAddress") or ""
        label = text(mb, "t:Name") or ""
        out.append((label, address))
    return out


def body_text(item: Item) -> tuple[str, str]:
    """(body type, body) of an item; ("Text", "") when none."""
    node = item.fields.get("Body")
    if node is None:
        return "Text", ""
    return node.get("BodyType", "Text"), node.text or ""


def html_to_text(value: str) -> str:
    value = re.sub(r"(?is)<(script|style).*?</\1>", "", value)
    value = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", value)
    return html.unescape(re.sub(r"<[^>]+>", "", value)).strip()


def text_to_html(value: str) -> str:
    return f"<html><body><pre>{html.escape(value)}</pre></body></html>"


# -- computed fields -------------------------------------------------------------------------


def computed(mbx: Mailbox, item: Item, name: str, shape: Shape) -> Element | None:
    """A field the server fills in (or a default), or None."""
    f = item.fields
    if name == "ItemId":
        return el(t("ItemId"), Id=item.id, ChangeKey=item.change_key)
    if name == "ParentFolderId":
        folder = mbx.folders[item.folder_id]
        return el(t("ParentFolderId"), Id=folder.id, ChangeKey=folder.change_key)
    if name == "ItemClass":
        return el(t("ItemClass"), ITEM_CLASS.get(item.kind, "IPM.Note"))
    if name == "DateTimeReceived":
        return el(t(name), iso(item.created))
    if name == "DateTimeCreated":
        return el(t(name), iso(item.created))
    if name == "LastModifiedTime":
        return el(t(name), iso(item.modified))
    if name == "LastModifiedName":
        return el(t(name), mbx.display_name)
    if name == "DateTimeSent" and item.kind == "Message":
        return el(t(name), iso(item.created))
    if name == "Size":
        size = sum(len(v.text or "") for v in f.values()) + sum(
            len(a.content) for a in item.attachments
        )
        return el(t("Size"), str(size + 512))
    if name == "HasAttachments":
        return el(t(name), "true" if any(not a.is_inline for a in item.attachments) else "false")
    if name == "Attachments" and item.attachments:
        node = el(t("Attachments"))
        for att in item.attachments:
            node.append(attachment_elem(item, att, content=False))
        return node
    if name in ("IsAssociated", "IsSubmitted", "IsResend", "IsUnmodified"):
        return el(t(name), "false")
    if name == "IsDraft":
        return el(t(name), "false")
    if name == "IsFromMe" and item.kind == "Message":
        sender = addresses(item, "From")
        return el(t(name), "true" if sender and sender[0][1].lower() == mbx.upn else "false")
    if name == "Importance":
        return el(t(name), "Normal")
    if name == "Sensitivity":
        return el(t(name), "Normal")
    if name == "Culture":
        return el(t(name), "en-US")
    if name in ("DisplayTo", "DisplayCc"):
        source = "ToRecipients" if name == "DisplayTo" else "CcRecipients"
        names = [n or a for n, a in addresses(item, source)]
        return el(t(name), "; ".join(names)) if names else None
    if name == "ConversationId":
        seed = (item.value("ConversationTopic") or item.value("Subject") or item.id).lower()
        seed = re.sub(r"^((re|fw|fwd|aw|wg)\s*:\s*)+", "", seed)
        return el(t(name), Id=base64.b64encode(uuid.uuid5(uuid.NAMESPACE_OID, seed).bytes).decode())
    if name == "EffectiveRights":
        node = el(t(name))
        for right in (
            "CreateAssociated",
            "CreateContents",
            "CreateHierarchy",
            "Delete",
            "Modify",
            "Read",
        ):
            sub(node, t(right), "true")
        return node
    if name in ("TextBody", "UniqueBody"):
        kind, value = body_text(item)
        if name == "TextBody":
            return el(t(name), html_to_text(value) if kind == "HTML" else value, BodyType="Text")
        return el(t(name), value, BodyType=kind)
    if name == "ReminderIsSet":
        return el(t(name), "false")
    if name == "ReminderMinutesBeforeStart" and item.kind in ("CalendarItem", "Message", "Task"):
        return el(t(name), "15")
    if name == "MimeContent" and item.kind == "Message":
        from sandbox.ews.mime import build_mime

        raw = item.mime or build_mime(item)
        return el(t(name), base64.b64encode(raw).decode(), CharacterSet="UTF-8")
    if item.kind == "Message":
        if name in ("IsRead",):
            return el(t(name), "false")
        if name in ("IsReadReceiptRequested", "IsDeliveryReceiptRequested", "IsResponseRequested"):
            return el(t(name), "false")
        if name in ("From", "Sender") and "From" not in f and "Sender" not in f:
            return mailbox_elem(name, mbx.display_name, mbx.upn)
        if name in ("ReceivedBy", "ReceivedRepresenting"):
            sender = addresses(item, "From")
            if sender and sender[0][1].lower() == mbx.upn:
                return None
            return mailbox_elem(name, mbx.display_name, mbx.upn)
        if name == "Sender" and "From" in f:
            return copy_as(f["From"], "Sender")
        if name == "From" and "Sender" in f:
            return copy_as(f["Sender"], "From")
    if item.kind == "Contact":
        if name == "DisplayName":
            parts = [item.value(n) for n in ("GivenName", "MiddleName", "Surname")]
            display = " ".join(p for p in parts if p) or item.value("CompanyName") or ""
            return el(t(name), display)
        if name == "FileAs":
            last, first = item.value("Surname"), item.value("GivenName")
            return el(t(name), ", ".join(p for p in (last, first) if p))
    if item.kind == "CalendarItem":
        return computed_calendar(mbx, item, name)
    if item.kind == "Task":
        if name == "Status":
            return el(t(name), "NotStarted")
        if name == "PercentComplete":
            return el(t(name), "0")
        if name == "IsComplete":
            return el(t(name), "true" if item.value("Status") == "Completed" else "false")
        if name == "IsRecurring":
            return el(t(name), "true" if "Recurrence" in f else "false")
    return None


def computed_calendar(mbx: Mailbox, item: Item, name: str) -> Element | None:
    f = item.fields
    if name in ("StartTimeZone", "EndTimeZone"):
        # Exchange always names the zone; items made without one are in UTC.
        return el(t(name), Id="UTC", Name="(UTC) Coordinated Universal Time")
    if name == "CalendarItemType":
        if item.master_id is not None:
            return el(t(name), "Exception" if item.id in mbx.items else "Occurrence")
        return el(t(name), "RecurringMaster" if "Recurrence" in f else "Single")
    if name == "IsRecurring":
        return el(t(name), "true" if item.master_id is not None else "false")
    if name == "Organizer":
        return mailbox_elem("Organizer", mbx.display_name, mbx.upn)
    if name == "MyResponseType":
        return el(t(name), "Organizer")
    if name == "IsMeeting":
        has = any(n in f for n in ("RequiredAttendees", "OptionalAttendees", "Resources"))
        return el(t(name), "true" if has else "false")
    if name in ("IsCancelled", "IsAllDayEvent", "IsOnlineMeeting"):
        return el(t(name), "false")
    if name == "LegacyFreeBusyStatus":
        return el(t(name), "Busy")
    if name == "AppointmentSequenceNumber":
        return el(t(name), "0")
    if name == "AppointmentState":
        return el(t(name), "0")
    if name in ("FirstOccurrence", "LastOccurrence", "ModifiedOccurrences", "DeletedOccurrences"):
        from sandbox.ews.recurrence import occurrence_info

        return occurrence_info(mbx, item, name)
    return None


def copy_as(node: Element, tag: str) -> Element:
    out = copy(node)
    out.tag = t(tag)
    return out


def attachment_elem(item: Item, att: Attachment, content: bool) -> Element:
    kind = "ItemAttachment" if att.item_xml is not None else "FileAttachment"
    node = el(t(kind))
    sub(node, t("AttachmentId"), Id=att.id, RootItemId=item.id, RootItemChangeKey=item.change_key)
    sub(node, t("Name"), att.name)
    sub(node, t("ContentType"), att.content_type)
    if att.content_id:
        sub(node, t("ContentId"), att.content_id)
    sub(node, t("Size"), str(len(att.content)))
    sub(node, t("LastModifiedTime"), iso(att.modified))
    sub(node, t("IsInline"), "true" if att.is_inline else "false")
    if kind == "FileAttachment":
        sub(node, t("IsContactPhoto"), "false")
        if content:
            sub(node, t("Content"), base64.b64encode(att.content).decode())
    elif content and att.item_xml is not None:
        node.append(copy(att.item_xml))
    return node


# -- rendering -------------------------------------------------------------------------------

ALL_DEFAULTS = {
    "ItemId", "ParentFolderId", "ItemClass", "Subject", "Sensitivity", "Body", "Attachments",
    "DateTimeReceived", "Size", "Categories", "Importance", "IsSubmitted", "IsDraft", "IsFromMe",
    "IsResend", "IsUnmodified", "DateTimeSent", "DateTimeCreated", "ReminderIsSet",
    "ReminderMinutesBeforeStart", "DisplayCc", "DisplayTo", "HasAttachments", "Culture",
    "EffectiveRights", "LastModifiedName", "LastModifiedTime", "IsAssociated", "ConversationId",
}  # fmt: skip
KIND_DEFAULTS = {
    "Message": {"From", "Sender", "IsRead", "InternetMessageId", "IsReadReceiptRequested"},
    "Contact": {"DisplayName", "FileAs"},
    "CalendarItem": {
        "UID",
        "CalendarItemType",
        "Organizer",
        "MyResponseType",
        "IsMeeting",
        "IsCancelled",
        "IsAllDayEvent",
        "LegacyFreeBusyStatus",
        "FirstOccurrence",
        "LastOccurrence",
        "ModifiedOccurrences",
        "DeletedOccurrences",
        "StartTimeZone",
        "EndTimeZone",
    },  # fmt: skip
    "Task": {"Status", "PercentComplete", "IsComplete"},
}


def render_item(mbx: Mailbox, item: Item, shape: Shape) -> Element:
    """The item element for a response, as the shape asks."""
    names: set[str] = {"ItemId"}
    if shape.base in ("Default", "AllProperties"):
        names |= {k for k in item.fields if not k.startswith("ext:")}
        names |= ALL_DEFAULTS | KIND_DEFAULTS.get(item.kind, set())
        names.discard("MimeContent")
    names |= shape.names
    node = el(t(item.kind))
    chosen: list[Element] = []
    for name in names:
        if name.startswith("ext:"):
            if name in item.fields:
                chosen.append(copy(item.fields[name]))
            continue
        if name == "Attachments":
            value = computed(mbx, item, name, shape)
        elif name in item.fields:
            value = copy(item.fields[name])
        else:
            value = computed(mbx, item, name, shape)
        if value is None:
            continue
        if name == "Body" and shape.body_type in ("Text", "HTML"):
            value = convert_body(value, shape.body_type)
        chosen.append(value)
    chosen.sort(key=lambda e: _RANK.get(local(e), len(_RANK)))
    for value in chosen:
        node.append(value)
    return node


def convert_body(node: Element, body_type: str) -> Element:
    kind = node.get("BodyType", "Text")
    if kind == body_type:
        return node
    value = node.text or ""
    out = el(t("Body"), html_to_text(value) if body_type == "Text" else text_to_html(value))
    out.set("BodyType", body_type)
    return out


def field_value(mbx: Mailbox, item: Item, name: str) -> str | None:
    """The text of a field for restrictions and sorting (extended properties: their Value)."""
    node = item.fields.get(name)
    if node is None and not name.startswith("ext:"):
        node = computed(mbx, item, name, Shape())
    if node is None:
        return None
    if name.startswith("ext:"):
        value = find(node, "t:Value")
        if value is not None:
            return value.text or ""
        return "\n".join(v.text or "" for v in findall(node, "t:Values/t:Value"))
    if local(node) in ("ItemId", "ParentFolderId", "ConversationId"):
        return node.get("Id")
    mailbox = find(node, ".//t:EmailAddress")
    if mailbox is not None and not (node.text or "").strip():
        return mailbox.text
    return node.text or ""
