"""CreateItem and GetItem without exchangelib item objects (issue 13).

Building an exchangelib `Contact` and serialising it (`clean`, `to_xml`, the per-attribute
version checks) was over half of an initial sync's CPU, and parsing the GetItem answer back into
items most of the rest. Here the request bodies are written as text straight from the neutral
vocabulary, in the EWS schema's element order (docs/web-service-reference/contact.md, task.md:
the ItemType elements first, then the kind's own), with the same values and defaults
exchangelib would send; answers are read with one pass over their XML into vocabulary dicts.

The requests still go through exchangelib's service machinery (`EWSAccountService`): the SOAP
envelope, sign-in, TLS, ErrorServerBusy back-off and per-item ResponseCode errors stay its own.
CreateItem: contacts, tasks and single appointments (a series' recurrence is serialised by
exchangelib, in the same request); GetItem: contacts and tasks. Messages, updates and the
calendar's reads keep the exchangelib path.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from exchangelib import CalendarItem, Contact, Task
from exchangelib.fields import CharField, ChoiceField
from exchangelib.properties import HTMLBody
from exchangelib.services.common import EWSAccountService, folder_ids_element
from exchangelib.util import MNS, TNS
from lxml import etree

from sync.mailbox import ews_convert as convert
from sync.mailbox.fields import IDEMPOTENCY_PROPERTY_NAME, IDEMPOTENCY_PROPERTY_SET, MODIFIED

_T = "{" + TNS + "}"
_M = "{" + MNS + "}"
_ILLEGAL = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufdd0-\ufddf\ufffe\uffff]")
"""Characters XML 1.0 cannot carry: replaced by "?" (what exchangelib does too)."""


def _esc(value: Any) -> str:
    return escape(_ILLEGAL.sub("?", str(value)))


def _leaf(tag: str, value: Any) -> str:
    return f"<t:{tag}>{_esc(value)}</t:{tag}>"


_KEY_URI = (
    f'<t:ExtendedFieldURI PropertySetId="{IDEMPOTENCY_PROPERTY_SET}" '
    f'PropertyName="{IDEMPOTENCY_PROPERTY_NAME}" PropertyType="String"/>'
)


# --- limits checked per item (what exchangelib's clean() refused, item by item) ----------------


def _limits(cls: type, names: Iterable[str]) -> dict[str, tuple[int | None, frozenset[str]]]:
    """Max length (CharField) and allowed values (ChoiceField) of the given exchangelib fields."""
    out = {}
    for name in names:
        field = cls.get_field_by_fieldname(name)  # type: ignore[attr-defined]
        length = field.max_length if isinstance(field, CharField) else None
        choices = (
            frozenset(c.value for c in field.choices) if isinstance(field, ChoiceField) else None
        )
        out[name] = (length, choices or frozenset())
    return out


_CONTACT_LIMITS = _limits(Contact, ("given_name", "middle_name", "surname"))
_TASK_LIMITS = _limits(Task, ("subject", "importance", "status"))


def _check(limits: Mapping[str, tuple[int | None, frozenset[str]]], name: str, value: Any) -> None:
    length, choices = limits[name]
    if value is None:
        return
    if length is not None and len(str(value)) > length:
        raise ValueError(f"'{name}' value {str(value)[:40]!r}… exceeds length {length}")
    if choices and value not in choices:
        raise ValueError(
            f"Invalid choice {value!r} for field '{name}'. Valid choices are {choices}"
        )


# --- item bodies ---------------------------------------------------------------------------------


def _item_head(
    vocab: Mapping[str, Any],
    key: str,
    subject: str | None,
    importance: str | None,
    reminder: bool = False,
    minutes: int = 0,
) -> list[str]:
    """The ItemType elements we send, in schema order, with exchangelib's defaults."""
    parts = []
    if subject is not None:
        parts.append(_leaf("Subject", subject))
    parts.append("<t:Sensitivity>Normal</t:Sensitivity>")
    body = vocab.get("body")
    if body:
        parts.append(f'<t:Body BodyType="Text">{_esc(body)}</t:Body>')
    categories = list(vocab.get("categories") or [])
    if any(not isinstance(c, str) for c in categories):
        raise TypeError(f"Field 'categories' value {categories!r} must hold text only")
    if categories:
        parts.append(
            "<t:Categories>" + "".join(_leaf("String", c) for c in categories) + "</t:Categories>"
        )
    parts.append(_leaf("Importance", importance or "Normal"))
    parts.append(_leaf("ReminderIsSet", "true" if reminder else "false"))
    parts.append(_leaf("ReminderMinutesBeforeStart", minutes))
    parts.append(f"<t:ExtendedProperty>{_KEY_URI}{_leaf('Value', key)}</t:ExtendedProperty>")
    return parts


def _day(value: Any, at: str) -> str | None:
    """A vocabulary date (or moment) as the date-time EWS stores for a date field."""
    if not value:
        return None
    day = dt.date.fromisoformat(str(value)[:10])
    return f"{day.isoformat()}T{at}Z"


_CONTACT_TEXT_BEFORE = (
    ("given_name", "GivenName"),
    ("middle_name", "MiddleName"),
    ("nickname", "Nickname"),
    ("company_name", "CompanyName"),
)
_CONTACT_TEXT_AFTER = (
    ("business_homepage", "BusinessHomePage"),
    ("department", "Department"),
    ("generation", "Generation"),
    ("job_title", "JobTitle"),
)
_ADDRESS_ORDER = (
    ("street", "Street"),
    ("city", "City"),
    ("state", "State"),
    ("country", "CountryOrRegion"),
    ("postal_code", "PostalCode"),
)
"""PhysicalAddress Entry children in schema order (entry-physicaladdress.md)."""
_ADDRESS_TAGS = dict(_ADDRESS_ORDER)


def contact_xml(vocab: Mapping[str, Any], key: str) -> str:
    """A `t:Contact` for CreateItem; ValueError for data EWS would refuse."""
    text = {n: convert._text(vocab.get(n)) for n in convert._CONTACT_PLAIN}
    for name in ("given_name", "middle_name", "surname"):
        _check(_CONTACT_LIMITS, name, text[name])
    parts = _item_head(vocab, key, None, None)
    parts.append(_leaf("DisplayName", convert._display_name(vocab)))
    parts.extend(_leaf(tag, text[n]) for n, tag in _CONTACT_TEXT_BEFORE if text[n])
    entries = [
        f'<t:Entry Key="{label}">{_esc(vocab[n])}</t:Entry>'
        for n, label in convert._EMAILS.items()
        if vocab.get(n)
    ]
    if entries:
        parts.append("<t:EmailAddresses>" + "".join(entries) + "</t:EmailAddresses>")
    addresses = []
    for prefix, label in convert._ADDRESSES.items():
        inner = "".join(
            _leaf(tag, vocab[f"{prefix}_{part}"])
            for part, tag in _ADDRESS_ORDER
            if vocab.get(f"{prefix}_{part}")
        )
        if inner:
            addresses.append(f'<t:Entry Key="{label}">{inner}</t:Entry>')
    if addresses:
        parts.append("<t:PhysicalAddresses>" + "".join(addresses) + "</t:PhysicalAddresses>")
    phones = [
        f'<t:Entry Key="{label}">{_esc(vocab[n])}</t:Entry>'
        for n, label in convert._PHONES.items()
        if vocab.get(n)
    ]
    if phones:
        parts.append("<t:PhoneNumbers>" + "".join(phones) + "</t:PhoneNumbers>")
    birthday = _day(vocab.get("birthday"), "11:59:00")  # exchangelib's time for these dates
    if birthday:
        parts.append(_leaf("Birthday", birthday))
    parts.extend(_leaf(tag, text[n]) for n, tag in _CONTACT_TEXT_AFTER if text[n])
    parts.append("<t:PostalAddressIndex>None</t:PostalAddressIndex>")
    if text["surname"]:
        parts.append(_leaf("Surname", text["surname"]))
    anniversary = _day(vocab.get("wedding_anniversary"), "11:59:00")
    if anniversary:
        parts.append(_leaf("WeddingAnniversary", anniversary))
    return "<t:Contact>" + "".join(parts) + "</t:Contact>"


def task_xml(vocab: Mapping[str, Any], key: str) -> str:
    """A `t:Task` for CreateItem; ValueError for data EWS would refuse."""
    subject = convert._text(vocab.get("subject"))
    importance = convert._text(vocab.get("importance"))
    status, percent = "NotStarted", 0
    if "status" in vocab or "percent_complete" in vocab:
        status, percent = convert.task_progress(
            vocab.get("status"),
            vocab.get("percent_complete"),
            status_given="status" in vocab,
            percent_given="percent_complete" in vocab,
        )
    _check(_TASK_LIMITS, "subject", subject)
    _check(_TASK_LIMITS, "importance", importance)
    _check(_TASK_LIMITS, "status", status)
    start = _day(vocab.get("start_date"), "00:00:00")
    due = _day(vocab.get("due_date"), "00:00:00")
    if start and due and due < start:
        due = start  # what exchangelib's Task.clean() does
    parts = _item_head(vocab, key, subject, importance)
    if due:
        parts.append(_leaf("DueDate", due))
    parts.append(_leaf("PercentComplete", Decimal(percent)))
    if start:
        parts.append(_leaf("StartDate", start))
    parts.append(_leaf("Status", status))
    return "<t:Task>" + "".join(parts) + "</t:Task>"


_CALENDAR_LIMITS = _limits(CalendarItem, ("subject", "legacy_free_busy_status"))
_ZONE_IDS: dict[str, str] = {}


def _zone_id(tz: Any) -> str:
    """The Windows time zone id EWS names a zone by (StartTimeZone Id)."""
    name = str(tz.key)
    if name not in _ZONE_IDS:
        _ZONE_IDS[name] = str(tz.ms_id)
    return _ZONE_IDS[name]


def _local(moment: dt.datetime) -> str:
    """A date-time with its zone's offset, "Z" in UTC (how exchangelib writes them)."""
    offset = moment.utcoffset()
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if not offset:
        return text + "Z" if str(moment.tzinfo) in ("UTC", "Etc/UTC") else text + "+00:00"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _attendees_xml(tag: str, addresses: Any) -> str:
    entries = "".join(
        f"<t:Attendee><t:Mailbox>{_leaf('EmailAddress', a)}<t:RoutingType>SMTP</t:RoutingType>"
        "<t:MailboxType>Mailbox</t:MailboxType></t:Mailbox>"
        "<t:ResponseType>Unknown</t:ResponseType></t:Attendee>"
        for a in addresses or []
    )
    return f"<t:{tag}>{entries}</t:{tag}>" if entries else ""


def appointment_xml(vocab: Mapping[str, Any], key: str) -> str | None:
    """A `t:CalendarItem` for CreateItem of a single appointment; None for a series (its
    recurrence is written by exchangelib: see `create_payload`)."""
    if vocab.get("recurrence"):
        return None
    subject = convert._text(vocab.get("subject"))
    show_as = (vocab.get("show_as") or "Busy") if "show_as" in vocab else "Busy"
    _check(_CALENDAR_LIMITS, "subject", subject)
    _check(_CALENDAR_LIMITS, "legacy_free_busy_status", show_as)
    tz = convert.series_timezone(vocab)
    all_day = bool(vocab.get("is_all_day"))
    start = convert.parse_moment(vocab["start"]).astimezone(tz)
    end = convert.parse_moment(vocab["end"]).astimezone(tz)
    if all_day:  # whole days in the zone: midnight of the first day, of the day after the last
        start = dt.datetime(start.year, start.month, start.day, tzinfo=tz)
        end = dt.datetime(end.year, end.month, end.day, tzinfo=tz)
        backwards = end.date() <= start.date()  # no last day on or after the first
    else:
        backwards = end < start
    if backwards:  # refused per item, as exchangelib's CalendarItem.clean() did
        raise ValueError(f"'end' must be greater than 'start' ({start} -> {end})")
    reminder = bool(vocab.get("reminder_is_set")) if "reminder_is_set" in vocab else False
    minutes = int(vocab.get("reminder_minutes") or 0)
    if minutes < 0:
        raise ValueError(f"Value {minutes} on field 'reminder_minutes' must be 0 or more")
    parts = _item_head(vocab, key, subject, None, reminder, minutes)
    parts.append(_leaf("Start", _local(start)))
    parts.append(_leaf("End", _local(end)))
    parts.append(_leaf("IsAllDayEvent", "true" if all_day else "false"))
    parts.append(_leaf("LegacyFreeBusyStatus", show_as))
    location = convert._text(vocab.get("location"))
    if location:
        parts.append(_leaf("Location", location))
    parts.append(_attendees_xml("RequiredAttendees", vocab.get("required_attendees")))
    parts.append(_attendees_xml("OptionalAttendees", vocab.get("optional_attendees")))
    zone = _zone_id(tz)
    parts.append(f'<t:StartTimeZone Id="{zone}"/><t:EndTimeZone Id="{zone}"/>')
    return "<t:CalendarItem>" + "".join(parts) + "</t:CalendarItem>"


ITEM_XML = {"contacts": contact_xml, "tasks": task_xml, "appointments": appointment_xml}
"""The kinds whose CreateItem bodies are written here (a builder may answer None: see
`exchangelib_xml`)."""
READ_KINDS = frozenset({"contacts", "tasks"})
"""The kinds whose GetItem answers are read here."""


def exchangelib_xml(item: Any, version: Any) -> str:
    """An exchangelib item's own CreateItem element as text, for what we do not write
    ourselves (a recurring series): it joins the batch's other items in one request."""
    item.clean(version=version)
    return str(etree.tostring(item.to_xml(version=version), encoding="unicode"))


_PARSER = etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)
"""For our own payload texts: a 10 MB contact note is one text node, over lxml's default
limit (10,000,000 bytes); the texts are built here, escaped, so nothing external is parsed."""


def _element(text: str) -> Any:
    return etree.fromstring(text.encode("utf-8"), _PARSER)


def create_payload(items: Sequence[str], folder: Any, version: Any) -> Any:
    """The `m:CreateItem` element for prebuilt item texts, saved in `folder` (no invitations)."""
    text = (
        f'<m:CreateItem xmlns:m="{MNS}" xmlns:t="{TNS}" MessageDisposition="SaveOnly" '
        f'SendMeetingInvitations="SendToNone"><m:Items>{"".join(items)}</m:Items></m:CreateItem>'
    )
    payload = _element(text)
    where = folder_ids_element(folders=[folder], version=version, tag="m:SavedItemFolderId")
    payload.insert(0, where)
    return payload


def get_payload(kind: str, ids: Sequence[str]) -> Any:
    """The `m:GetItem` element asking for the kind's fields (IdOnly plus `FIELD_URIS`)."""
    items = "".join(f"<t:ItemId Id={quoteattr(i)}/>" for i in ids)
    text = (
        f'<m:GetItem xmlns:m="{MNS}" xmlns:t="{TNS}"><m:ItemShape>'
        f"<t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>{FIELD_URIS[kind]}"
        f"</t:AdditionalProperties></m:ItemShape><m:ItemIds>{items}</m:ItemIds></m:GetItem>"
    )
    return _element(text)


def _uris(plain: Iterable[str], indexed: Iterable[tuple[str, str]] = ()) -> str:
    out = [_KEY_URI]
    out += [f'<t:FieldURI FieldURI="{u}"/>' for u in plain]
    out += [f'<t:IndexedFieldURI FieldURI="{u}" FieldIndex="{i}"/>' for u, i in indexed]
    return "".join(out)


FIELD_URIS = {
    "contacts": _uris(
        [f"contacts:{tag}" for _, tag in (*_CONTACT_TEXT_BEFORE, *_CONTACT_TEXT_AFTER)]
        + ["contacts:Surname", "contacts:Birthday", "contacts:WeddingAnniversary"]
        + ["item:Body", "item:Categories", "item:LastModifiedTime"],
        [("contacts:EmailAddress", label) for label in convert._EMAILS.values()]
        + [("contacts:PhoneNumber", label) for label in convert._PHONES.values()]
        + [
            (f"contacts:PhysicalAddress:{tag}", label)
            for label in convert._ADDRESSES.values()
            for _, tag in _ADDRESS_ORDER
        ],
    ),
    "tasks": _uris(
        ["item:Subject", "item:Body", "item:Importance", "item:Categories"]
        + ["item:LastModifiedTime", "task:StartDate", "task:DueDate", "task:Status"]
        + ["task:PercentComplete", "task:CompleteDate"]
    ),
}
"""What GetItem asks for, per kind: the fields `read_item` turns into the vocabulary."""


# --- services --------------------------------------------------------------------------------------


class PrebuiltCreateItem(EWSAccountService):
    """CreateItem with a body built above: yields (id, change key) or the item's error."""

    SERVICE_NAME = "CreateItem"
    element_container_name = f"{_M}Items"

    def call(self, payload: Any) -> Iterator[Any]:
        return self._elems_to_objs(self._get_elements(payload=payload))

    def _elem_to_obj(self, elem: Any) -> tuple[str, str | None]:
        found = elem.find(f"{_T}ItemId")
        return found.get("Id"), found.get("ChangeKey")


class PrebuiltGetItem(EWSAccountService):
    """GetItem with a body built above: yields each item's XML element or its error."""

    SERVICE_NAME = "GetItem"
    element_container_name = f"{_M}Items"

    def call(self, payload: Any) -> Iterator[Any]:
        return self._elems_to_objs(self._get_elements(payload=payload))

    def _elem_to_obj(self, elem: Any) -> Any:
        return elem


# --- reading answers -------------------------------------------------------------------------------


def _moment(value: str | None) -> str | None:
    """An EWS date-time as the vocabulary's `YYYY-MM-DDTHH:MM:SSZ` (UTC)."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return convert.moment(parsed)


def _date_of(value: str | None) -> dt.date | None:
    """The date of a date field's date-time (as exchangelib reads it: its own date when the
    value carries an offset, the UTC date otherwise)."""
    if not value:
        return None
    if len(value) == 25:
        return dt.datetime.fromisoformat(value).date()
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC)
    return parsed.date()


def _body(elem: Any) -> str | None:
    if elem is None or not elem.text:
        return None
    if elem.get("BodyType") == "HTML":
        return convert.body_text(HTMLBody(elem.text))
    return str(elem.text)


def _indexed(elem: Any) -> dict[str, Any]:
    return {e.get("Key"): e for e in elem} if elem is not None else {}


def read_item(kind: str, elem: Any) -> tuple[str, str | None, str | None, dict[str, Any]]:
    """(id, change key, CRM key, vocabulary) of a contact or task element of a GetItem answer."""
    by_tag: dict[str, Any] = {}
    key = None
    for child in elem:
        tag = child.tag[len(_T) :] if child.tag.startswith(_T) else child.tag
        if tag == "ExtendedProperty":
            value = child.find(f"{_T}Value")
            key = value.text if value is not None and value.text else key
        else:
            by_tag[tag] = child
    item_id = by_tag["ItemId"]
    fields = _contact_read(by_tag) if kind == "contacts" else _task_read(by_tag)
    modified = _moment(_text(by_tag.get("LastModifiedTime")))
    if modified is not None:
        fields.setdefault(MODIFIED, modified)
    return item_id.get("Id"), item_id.get("ChangeKey"), key, fields


def _text(elem: Any) -> str | None:
    return elem.text if elem is not None and elem.text != "" else None


def _categories(by_tag: Mapping[str, Any]) -> list[str]:
    elem = by_tag.get("Categories")
    return [s.text for s in elem if s.text] if elem is not None else []


def _contact_read(by_tag: Mapping[str, Any]) -> dict[str, Any]:
    plain = {
        "given_name": "GivenName",
        "middle_name": "MiddleName",
        "surname": "Surname",
        "generation": "Generation",
        "nickname": "Nickname",
        "job_title": "JobTitle",
        "department": "Department",
        "company_name": "CompanyName",
        "business_homepage": "BusinessHomePage",
    }
    out: dict[str, Any] = {n: _text(by_tag.get(tag)) for n, tag in plain.items()}
    out = {n: out[n] for n in convert._CONTACT_PLAIN}  # the vocabulary's order
    emails = _indexed(by_tag.get("EmailAddresses"))
    for name, label in convert._EMAILS.items():
        out[name] = _text(emails.get(label))
    phones = _indexed(by_tag.get("PhoneNumbers"))
    for name, label in convert._PHONES.items():
        out[name] = _text(phones.get(label))
    addresses = _indexed(by_tag.get("PhysicalAddresses"))
    for prefix, label in convert._ADDRESSES.items():
        entry = addresses.get(label)
        for part in convert._ADDRESS_PARTS:
            tag = _ADDRESS_TAGS[part]
            out[f"{prefix}_{part}"] = _text(entry.find(f"{_T}{tag}")) if entry is not None else None
    birthday = _date_of(_text(by_tag.get("Birthday")))
    anniversary = _date_of(_text(by_tag.get("WeddingAnniversary")))
    out["birthday"] = birthday.isoformat() if birthday else None
    out["wedding_anniversary"] = anniversary.isoformat() if anniversary else None
    out["body"] = _body(by_tag.get("Body"))
    out["categories"] = _categories(by_tag)
    return out


def _task_read(by_tag: Mapping[str, Any]) -> dict[str, Any]:
    percent = _text(by_tag.get("PercentComplete"))
    start = _date_of(_text(by_tag.get("StartDate")))
    due = _date_of(_text(by_tag.get("DueDate")))
    return {
        "subject": _text(by_tag.get("Subject")),
        "body": _body(by_tag.get("Body")),
        "start_date": convert.moment(start),
        "due_date": convert.moment(due),
        "status": _text(by_tag.get("Status")),
        "percent_complete": int(Decimal(percent)) if percent is not None else None,
        "importance": _text(by_tag.get("Importance")),
        "complete_date": _moment(_text(by_tag.get("CompleteDate"))),
        "categories": _categories(by_tag),
    }


# --- UpdateItem ------------------------------------------------------------------------------------

_UPDATABLE: dict[str, dict[str, tuple[str, str]]] = {
    "contacts": {
        "body": ("item:Body", "Body"),
        "categories": ("item:Categories", "Categories"),
        "display_name": ("contacts:DisplayName", "DisplayName"),
        **{n: (f"contacts:{tag}", tag) for n, tag in _CONTACT_TEXT_BEFORE},
        "birthday": ("contacts:Birthday", "Birthday"),
        **{n: (f"contacts:{tag}", tag) for n, tag in _CONTACT_TEXT_AFTER},
        "surname": ("contacts:Surname", "Surname"),
        "wedding_anniversary": ("contacts:WeddingAnniversary", "WeddingAnniversary"),
    },
    "tasks": {
        "subject": ("item:Subject", "Subject"),
        "body": ("item:Body", "Body"),
        "categories": ("item:Categories", "Categories"),
        "importance": ("item:Importance", "Importance"),
        "due_date": ("task:DueDate", "DueDate"),
        "percent_complete": ("task:PercentComplete", "PercentComplete"),
        "start_date": ("task:StartDate", "StartDate"),
        "status": ("task:Status", "Status"),
    },
}
"""The item attributes an UpdateItem written here may carry, in schema order (contact.md,
task.md), with their FieldURI and element; others (a contact's indexed addresses and numbers)
are written by exchangelib."""
_ELEMENT = {"contacts": "Contact", "tasks": "Task"}
_DAY_TIME = {"birthday": "11:59:00", "wedding_anniversary": "11:59:00"}


def _value_xml(name: str, tag: str, value: Any) -> str:
    if tag == "Body":
        return f'<t:Body BodyType="Text">{_esc(value)}</t:Body>'
    if tag == "Categories":
        return "<t:Categories>" + "".join(_leaf("String", c) for c in value) + "</t:Categories>"
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return _leaf(tag, f"{value.isoformat()}T{_DAY_TIME.get(name, '00:00:00')}Z")
    return _leaf(tag, value)


def item_change(kind: str, item: Any, names: Sequence[str]) -> str | None:
    """A `t:ItemChange` setting (or deleting, when empty) the exchangelib item's attributes
    `names`; None when one of them is not written here."""
    fields = _UPDATABLE.get(kind)
    if fields is None or any(n not in fields for n in names):
        return None
    wanted = set(names)
    element = _ELEMENT[kind]
    updates = []
    for name, (uri, tag) in fields.items():  # schema order
        if name not in wanted:
            continue
        value = getattr(item, name)
        if value is None or value == [] or value == "":
            updates.append(f'<t:DeleteItemField><t:FieldURI FieldURI="{uri}"/></t:DeleteItemField>')
        else:
            inner = _value_xml(name, tag, value)
            updates.append(
                f'<t:SetItemField><t:FieldURI FieldURI="{uri}"/>'
                f"<t:{element}>{inner}</t:{element}></t:SetItemField>"
            )
    key = f" ChangeKey={quoteattr(item.changekey)}" if item.changekey else ""
    return (
        f"<t:ItemChange><t:ItemId Id={quoteattr(item.id)}{key}/>"
        f"<t:Updates>{''.join(updates)}</t:Updates></t:ItemChange>"
    )


def update_payload(changes: Sequence[str], resolution: str, read_receipts_attr: bool) -> Any:
    """The `m:UpdateItem` element for prebuilt item changes (never meeting updates)."""
    suppress = ' SuppressReadReceipts="true"' if read_receipts_attr else ""
    text = (
        f'<m:UpdateItem xmlns:m="{MNS}" xmlns:t="{TNS}" ConflictResolution="{resolution}" '
        f'MessageDisposition="SaveOnly" SendMeetingInvitationsOrCancellations="SendToNone"'
        f"{suppress}><m:ItemChanges>{''.join(changes)}</m:ItemChanges></m:UpdateItem>"
    )
    return _element(text)


class PrebuiltUpdateItem(EWSAccountService):
    """UpdateItem with a body built above: yields (id, change key) or the item's error."""

    SERVICE_NAME = "UpdateItem"
    element_container_name = f"{_M}Items"

    def call(self, payload: Any) -> Iterator[Any]:
        return self._elems_to_objs(self._get_elements(payload=payload))

    def _elem_to_obj(self, elem: Any) -> tuple[str, str | None]:
        found = elem.find(f"{_T}ItemId")
        return found.get("Id"), found.get("ChangeKey")


UPDATE_KINDS = frozenset(_UPDATABLE)
"""The kinds whose UpdateItem requests are written here."""


def first_change(payload: Any) -> str:
    """The first `t:ItemChange` of an exchangelib UpdateItem payload, as text."""
    change = payload.find(f"{_M}ItemChanges")[0]
    return str(etree.tostring(change, encoding="unicode"))
