"""Graph JSON ⇄ the mailbox vocabulary of `sync.mailbox.fields`, for contacts and To Do tasks.

Contacts (resources/contact.md): the e-mail addresses, phones and addresses are lists and
objects in Graph, so a change to one part is written as the whole property. Graph's contact
has no fax, other phone or wedding anniversary: they are MAPI properties, written as single-
value extended properties by their tags (PidTagBusinessFaxNumber 0x3A24,
PidTagOtherTelephoneNumber 0x3A1F, PidTagWeddingAnniversary 0x3A41).

To Do tasks (resources/todotask.md) have no percent complete and no extended properties: the
CRM id and the percent live in one open extension, `EXTENSION` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync.mailbox.fields import IDEMPOTENCY_PROPERTY_NAME, IDEMPOTENCY_PROPERTY_SET

KEY_PROPERTY = f"String {{{IDEMPOTENCY_PROPERTY_SET}}} Name {IDEMPOTENCY_PROPERTY_NAME}"
"""The CRM id on contacts, events and messages: the same named property EWS writes."""
EXTENSION = "com.dynamics365.mailboxsync"
"""The open extension on To Do tasks: {"crmId": …, "percentComplete": …}."""
FAX, OTHER_PHONE, ANNIVERSARY = "String 0x3A24", "String 0x3A1F", "SystemTime 0x3A41"
CONTACT_PROPERTIES = (KEY_PROPERTY, FAX, OTHER_PHONE, ANNIVERSARY)

_SIMPLE_CONTACT = {
    "given_name": "givenName",
    "middle_name": "middleName",
    "surname": "surname",
    "generation": "generation",
    "nickname": "nickName",
    "job_title": "jobTitle",
    "department": "department",
    "company_name": "companyName",
    "mobile_phone": "mobilePhone",
    "business_homepage": "businessHomePage",
    "body": "personalNotes",
}
_ADDRESS = {
    "street": "street",
    "city": "city",
    "state": "state",
    "postal_code": "postalCode",
    "country": "countryOrRegion",
}
_EXTENDED_CONTACT = {"business_fax": FAX, "other_phone": OTHER_PHONE}


def _props(item: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(p.get("id", "")).lower(): p.get("value")
        for p in item.get("singleValueExtendedProperties") or []
    }


def item_key(item: Mapping[str, Any]) -> str | None:
    """The CRM id an item carries (extended property or, on a task, the open extension)."""
    value = _props(item).get(KEY_PROPERTY.lower())
    if value:
        return str(value)
    ext = task_extension(item)
    return str(ext["crmId"]) if ext.get("crmId") else None


def task_extension(item: Mapping[str, Any]) -> dict[str, Any]:
    for ext in item.get("extensions") or []:
        if ext.get("extensionName") == EXTENSION or ext.get("id") == EXTENSION:
            return dict(ext)
    return {}


def _none(value: Any) -> Any:
    return value if value not in ("", [], {}) else None


def _date(value: Any) -> str | None:
    return str(value)[:10] if value else None


# --- contacts -----------------------------------------------------------------------------------


def contact_to_vocab(item: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {v: _none(item.get(g)) for v, g in _SIMPLE_CONTACT.items()}
    emails = [e.get("address") for e in item.get("emailAddresses") or []]
    for i in range(3):
        out[f"email_address_{i + 1}"] = _none(emails[i]) if i < len(emails) else None
    out["business_phone"] = _none((item.get("businessPhones") or [None])[0])
    out["home_phone"] = _none((item.get("homePhones") or [None])[0])
    for prefix, prop in (("business", "businessAddress"), ("home", "homeAddress")):
        address = item.get(prop) or {}
        for v, g in _ADDRESS.items():
            out[f"{prefix}_{v}"] = _none(address.get(g))
    props = _props(item)
    for v, pid in _EXTENDED_CONTACT.items():
        out[v] = _none(props.get(pid.lower()))
    out["birthday"] = _date(item.get("birthday"))
    out["wedding_anniversary"] = _date(props.get(ANNIVERSARY.lower()))
    out["categories"] = list(item.get("categories") or [])
    out["modified"] = item.get("lastModifiedDateTime")
    return out


def contact_to_graph(fields: Mapping[str, Any], full: Mapping[str, Any]) -> dict[str, Any]:
    """The Graph properties to send for a change of `fields`; `full` is the whole new vocab
    (a list or address property is written whole)."""
    body: dict[str, Any] = {}
    ext: list[dict[str, str]] = []
    for name in fields:
        if name in _SIMPLE_CONTACT:
            body[_SIMPLE_CONTACT[name]] = full.get(name)
        elif name.startswith("email_address_"):
            body["emailAddresses"] = [
                {"address": full[f"email_address_{i}"], "name": full[f"email_address_{i}"]}
                for i in (1, 2, 3)
                if full.get(f"email_address_{i}")
            ]
        elif name == "business_phone":
            body["businessPhones"] = [full[name]] if full.get(name) else []
        elif name == "home_phone":
            body["homePhones"] = [full[name]] if full.get(name) else []
        elif name.startswith(("business_", "home_")) and name.split("_", 1)[1] in _ADDRESS:
            prefix = name.split("_", 1)[0]
            body[f"{prefix}Address"] = {
                g: full.get(f"{prefix}_{v}") or None for v, g in _ADDRESS.items()
            }
        elif name in _EXTENDED_CONTACT:
            ext.append({"id": _EXTENDED_CONTACT[name], "value": full.get(name) or ""})
        elif name == "birthday":
            body["birthday"] = f"{full[name]}T00:00:00Z" if full.get(name) else None
        elif name == "wedding_anniversary":
            value = full.get(name)
            ext.append({"id": ANNIVERSARY, "value": f"{value}T00:00:00Z" if value else ""})
        elif name == "categories":
            body["categories"] = list(full.get(name) or [])
    if ext:
        body["singleValueExtendedProperties"] = ext
    return body


# --- To Do tasks --------------------------------------------------------------------------------

STATUS_TO_GRAPH = {
    "NotStarted": "notStarted",
    "InProgress": "inProgress",
    "Completed": "completed",
    "WaitingOnOthers": "waitingOnOthers",
    "Deferred": "deferred",
}
STATUS_FROM_GRAPH = {v: k for k, v in STATUS_TO_GRAPH.items()}


def _moment(value: Any) -> str | None:
    """A dateTimeTimeZone (UTC, as the client asks for) as an ISO moment."""
    if not isinstance(value, Mapping) or not value.get("dateTime"):
        return None
    return str(value["dateTime"])[:19] + "Z"


def _dtz(value: Any) -> dict[str, str] | None:
    if not value:
        return None
    return {"dateTime": str(value).rstrip("Z")[:19], "timeZone": "UTC"}


def task_to_vocab(item: Mapping[str, Any]) -> dict[str, Any]:
    body = item.get("body") or {}
    ext = task_extension(item)
    percent = ext.get("percentComplete")
    status = STATUS_FROM_GRAPH.get(str(item.get("status")), "NotStarted")
    return {
        "subject": _none(item.get("title")),
        "body": _none(body.get("content")),
        "start_date": _moment(item.get("startDateTime")),
        "due_date": _moment(item.get("dueDateTime")),
        "status": status,
        "percent_complete": int(percent)
        if percent not in (None, "")
        else (100 if status == "Completed" else 0),
        "importance": str(item.get("importance") or "normal").capitalize(),
        "complete_date": _moment(item.get("completedDateTime")),
        "categories": list(item.get("categories") or []),
        "modified": item.get("lastModifiedDateTime"),
    }


def task_to_graph(fields: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "subject":
            body["title"] = value or ""
        elif name == "body":
            body["body"] = {"content": value or "", "contentType": "text"}
        elif name == "start_date":
            body["startDateTime"] = _dtz(value)
        elif name == "due_date":
            body["dueDateTime"] = _dtz(value)
        elif name == "status" and value:
            body["status"] = STATUS_TO_GRAPH[str(value)]
        elif name == "importance" and value:
            body["importance"] = str(value).lower()
        elif name == "categories":
            body["categories"] = list(value or [])
    return body


def task_extension_body(key: str | None, percent: Any) -> dict[str, Any]:
    return {
        "@odata.type": "microsoft.graph.openTypeExtension",
        "extensionName": EXTENSION,
        "crmId": key,
        "percentComplete": int(percent) if percent not in (None, "") else None,
    }


# --- messages (read only: email tracking) -------------------------------------------------------


def _address(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return None
    email = value.get("emailAddress") or {}
    return email.get("address") or email.get("name") or None


def _header(item: Mapping[str, Any], name: str) -> str | None:
    for header in item.get("internetMessageHeaders") or []:
        if str(header.get("name", "")).lower() == name.lower():
            return str(header.get("value") or "") or None
    return None


def message_to_vocab(item: Mapping[str, Any], folder: str) -> dict[str, Any]:
    """resources/message.md → MESSAGE_FIELDS. In-Reply-To and References come from
    `internetMessageHeaders` (only present when the message carries them)."""
    body = item.get("body") or {}
    return {
        "message_id": item.get("internetMessageId"),
        "in_reply_to": _header(item, "In-Reply-To"),
        "references": _header(item, "References"),
        "conversation_index": item.get("conversationIndex") or None,
        "subject": _none(item.get("subject")),
        "sender": _address(item.get("from") or item.get("sender")),
        "to": [a for a in map(_address, item.get("toRecipients") or []) if a],
        "cc": [a for a in map(_address, item.get("ccRecipients") or []) if a],
        "bcc": [a for a in map(_address, item.get("bccRecipients") or []) if a],
        "body": _none(body.get("content")),
        "body_type": "HTML" if str(body.get("contentType", "")).lower() == "html" else "Text",
        "received": _z(item.get("receivedDateTime")),
        "sent": _z(item.get("sentDateTime")),
        "categories": list(item.get("categories") or []),
        "folder": folder,
        "has_attachments": bool(item.get("hasAttachments")),
        "modified": item.get("lastModifiedDateTime"),
    }


def _z(value: Any) -> str | None:
    return str(value)[:19] + "Z" if value else None
