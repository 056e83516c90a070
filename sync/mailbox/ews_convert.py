"""exchangelib items ⇄ the neutral mailbox vocabulary of `sync.mailbox.fields`.

`to_vocab(kind, item)` reads an item into a flat dict; `apply_vocab(kind, item, changes, base)`
writes changed vocabulary fields onto an item and returns the exchangelib field names to send, so
an update carries only what changed. `base` is the item's current vocabulary (or {} on create):
some vocabulary fields live inside one EWS field (the three e-mail addresses, the phone numbers,
the addresses; start/end/time zone of an appointment) that must be sent whole.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from exchangelib import (
    UTC,
    CalendarItem,
    Contact,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
    Message,
    Task,
)
from exchangelib.indexed_properties import EmailAddress, PhoneNumber, PhysicalAddress
from exchangelib.items import Item
from exchangelib.properties import Attendee, Body, HTMLBody, Mailbox

from sync.mailbox import ews_recurrence
from sync.mailbox.fields import IDEMPOTENCY_PROPERTY_NAME, IDEMPOTENCY_PROPERTY_SET, MODIFIED

KEY_FIELD = "mailbox_sync_crmid"
"""The attribute name under which the idempotency property is registered on item classes."""


class CrmIdProperty(ExtendedProperty):
    """The CRM id we write on every item we create (named string property in our GUID set)."""

    property_set_id = IDEMPOTENCY_PROPERTY_SET
    property_name = IDEMPOTENCY_PROPERTY_NAME
    property_type = "String"


ITEM_CLASSES: dict[str, type[Item]] = {
    "contacts": Contact,
    "tasks": Task,
    "appointments": CalendarItem,
    "messages": Message,
}


def register_properties() -> None:
    """Register the key property on every item class we use (idempotent, process-wide)."""
    for cls in ITEM_CLASSES.values():
        if KEY_FIELD not in {f.name for f in cls.FIELDS}:
            cls.register(KEY_FIELD, CrmIdProperty)


register_properties()


def base_kind(kind: str) -> str:
    """ "messages:<folder>" and "email" are messages; other kinds are themselves."""
    if kind == "email" or kind.startswith("messages"):
        return "messages"
    if kind not in ITEM_CLASSES:
        raise ValueError(f"unknown mailbox kind {kind!r}")
    return kind


_CONTACT_PLAIN = (
    "given_name",
    "middle_name",
    "surname",
    "generation",
    "nickname",
    "job_title",
    "department",
    "company_name",
    "business_homepage",
)
"""Contact fields that are plain text both in exchangelib and in the vocabulary."""

FETCH_FIELDS: dict[str, tuple[str, ...]] = {
    "contacts": (
        *_CONTACT_PLAIN,
        "email_addresses",
        "phone_numbers",
        "physical_addresses",
        "birthday",
        "wedding_anniversary",
        "body",
        "categories",
        "last_modified_time",
        KEY_FIELD,
    ),
    "tasks": (
        "subject",
        "body",
        "start_date",
        "due_date",
        "status",
        "percent_complete",
        "importance",
        "complete_date",
        "categories",
        "last_modified_time",
        KEY_FIELD,
    ),
    "appointments": (
        "subject",
        "body",
        "location",
        "start",
        "end",
        "is_all_day",
        "legacy_free_busy_status",
        "organizer",
        "required_attendees",
        "optional_attendees",
        "reminder_is_set",
        "reminder_minutes_before_start",
        "recurrence",
        "type",
        "modified_occurrences",
        "deleted_occurrences",
        "_start_timezone",
        "_end_timezone",
        "categories",
        "last_modified_time",
        KEY_FIELD,
    ),
    "messages": (
        "message_id",
        "in_reply_to",
        "references",
        "conversation_index",
        "subject",
        "author",
        "sender",
        "to_recipients",
        "cc_recipients",
        "bcc_recipients",
        "body",
        "datetime_received",
        "datetime_sent",
        "categories",
        "has_attachments",
        KEY_FIELD,
    ),
}
"""The exchangelib fields GetItem asks for, per kind (never MimeContent or attachments)."""


# --- values ------------------------------------------------------------------------------------


def moment(value: Any) -> str | None:
    """An aware datetime (or a date: its midnight UTC) as `YYYY-MM-DDTHH:MM:SSZ`."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", value.utctimetuple())  # plain UTC, no EWS tz


def parse_moment(value: str) -> EWSDateTime:
    """An ISO 8601 moment (with Z or an offset) as an EWSDateTime in UTC."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    parsed = parsed.astimezone(dt.UTC)
    return EWSDateTime(
        parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute, parsed.second, tzinfo=UTC
    )


def _date(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    return str(value.isoformat())


def _ews_date(value: str | None) -> EWSDate | None:
    if not value:
        return None
    d = dt.date.fromisoformat(value[:10])
    return EWSDate(d.year, d.month, d.day)


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _base64(value: Any) -> str | None:
    """exchangelib decodes Base64 fields to bytes; the vocabulary keeps them as base64 text."""
    if not value:
        return None
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else str(value)


_TAG = re.compile(r"<[^>]+>")


def body_text(body: Any) -> str | None:
    """The body as plain text (HTML bodies of items made in Outlook lose their markup)."""
    if body is None or str(body) == "":
        return None
    if isinstance(body, HTMLBody):
        return html.unescape(_TAG.sub("", str(body))).strip() or None
    return str(body)


def _addresses(values: Any) -> list[str]:
    out = []
    for value in values or []:
        mailbox = getattr(value, "mailbox", value)
        address = getattr(mailbox, "email_address", None)
        if address:
            out.append(str(address))
    return out


def _mailboxes(values: Any) -> list[Mailbox]:
    return [Mailbox(email_address=a) for a in values or []]


def _attendees(values: Any) -> list[Attendee]:
    return [
        Attendee(mailbox=Mailbox(email_address=a), response_type="Unknown") for a in values or []
    ]


def _set_each(
    item: Item,
    changes: Mapping[str, Any],
    touched: list[str],
    names: Iterable[str],
    convert: Callable[[Any], Any] = _text,
) -> None:
    """Set each of `names` that `changes` holds, converted, on the same-named item field."""
    for name in names:
        if name in changes:
            setattr(item, name, convert(changes[name]))
            touched.append(name)


def _set_categories(item: Item, changes: Mapping[str, Any], touched: list[str]) -> None:
    if "categories" in changes:
        item.categories = list(changes["categories"] or []) or None
        touched.append("categories")


def _set_text_body_and_categories(
    item: Item, changes: Mapping[str, Any], touched: list[str]
) -> None:
    """A plain-text body (contacts, tasks, appointments keep no HTML) and the categories."""
    if "body" in changes:
        item.body = Body(changes["body"]) if changes["body"] else None
        touched.append("body")
    _set_categories(item, changes, touched)


# --- contacts ----------------------------------------------------------------------------------

_EMAILS = {"email_address_1": "EmailAddress1", "email_address_2": "EmailAddress2"}
_EMAILS["email_address_3"] = "EmailAddress3"
_PHONES = {
    "business_phone": "BusinessPhone",
    "home_phone": "HomePhone",
    "mobile_phone": "MobilePhone",
    "other_phone": "OtherTelephone",
    "business_fax": "BusinessFax",
}
_ADDRESS_PARTS = {
    "street": "street",
    "city": "city",
    "state": "state",
    "postal_code": "zipcode",
    "country": "country",
}
_ADDRESSES = {"business": "Business", "home": "Home"}
_NAME_FIELDS = ("given_name", "middle_name", "surname", "company_name", "email_address_1")


def _contact_to_vocab(item: Contact) -> dict[str, Any]:
    out: dict[str, Any] = {name: _text(getattr(item, name, None)) for name in _CONTACT_PLAIN}
    emails = {e.label: e.email for e in item.email_addresses or []}
    for name, label in _EMAILS.items():
        out[name] = _text(emails.get(label))
    phones = {p.label: p.phone_number for p in item.phone_numbers or []}
    for name, label in _PHONES.items():
        out[name] = _text(phones.get(label))
    addresses = {a.label: a for a in item.physical_addresses or []}
    for prefix, label in _ADDRESSES.items():
        address = addresses.get(label)
        for part, attr in _ADDRESS_PARTS.items():
            out[f"{prefix}_{part}"] = _text(getattr(address, attr, None)) if address else None
    out["birthday"] = _date(item.birthday)
    out["wedding_anniversary"] = _date(item.wedding_anniversary)
    out["body"] = body_text(item.body)
    out["categories"] = list(item.categories or [])
    return out


def _display_name(values: Mapping[str, Any]) -> str:
    names = [values.get(n) for n in ("given_name", "middle_name", "surname")]
    joined = " ".join(str(n) for n in names if n)
    return joined or str(values.get("company_name") or values.get("email_address_1") or "(no name)")


def _apply_contact(
    item: Contact, changes: Mapping[str, Any], base: Mapping[str, Any], new: bool
) -> list[str]:
    merged = {**base, **changes}
    touched: list[str] = []
    _set_each(item, changes, touched, _CONTACT_PLAIN)
    if any(n in changes for n in _EMAILS):
        item.email_addresses = [
            EmailAddress(label=label, email=merged[n])
            for n, label in _EMAILS.items()
            if merged.get(n)
        ]
        touched.append("email_addresses")
    if any(n in changes for n in _PHONES):
        item.phone_numbers = [
            PhoneNumber(label=label, phone_number=merged[n])
            for n, label in _PHONES.items()
            if merged.get(n)
        ]
        touched.append("phone_numbers")
    address_names = [f"{p}_{part}" for p in _ADDRESSES for part in _ADDRESS_PARTS]
    if any(n in changes for n in address_names):
        addresses = []
        for prefix, label in _ADDRESSES.items():
            parts = {attr: merged.get(f"{prefix}_{part}") for part, attr in _ADDRESS_PARTS.items()}
            if any(parts.values()):
                addresses.append(PhysicalAddress(label=label, **parts))
        item.physical_addresses = addresses
        touched.append("physical_addresses")
    _set_each(item, changes, touched, ("birthday", "wedding_anniversary"), _ews_date)
    _set_text_body_and_categories(item, changes, touched)
    if new or any(n in changes for n in _NAME_FIELDS):
        item.display_name = _display_name(merged)
        touched.append("display_name")
    return touched


# --- tasks -------------------------------------------------------------------------------------


def _task_to_vocab(item: Task) -> dict[str, Any]:
    percent = item.percent_complete
    return {
        "subject": _text(item.subject),
        "body": body_text(item.body),
        "start_date": moment(item.start_date),
        "due_date": moment(item.due_date),
        "status": _text(item.status),
        "percent_complete": int(percent) if percent is not None else None,
        "importance": _text(item.importance),
        "complete_date": moment(item.complete_date),
        "categories": list(item.categories or []),
    }


def task_progress(
    status: str | None, percent: Any, status_given: bool = True, percent_given: bool = True
) -> tuple[str, int]:
    """A (status, percent) pair Exchange keeps as sent. EWS makes Completed, 100 % and a
    completion date one thing and NotStarted 0 % (Status, PercentComplete: whichever it
    processes last wins), and exchangelib resets the percent of an inconsistent pair before
    sending: either way the sync would read back something other than it wrote.

    What the caller gives decides and the other value follows; given both: Completed ⇒ 100,
    100 ⇒ Completed, NotStarted with a percent ⇒ InProgress (the CRM mapping's rule)."""
    status = status or "NotStarted"
    done = max(0, min(100, int(percent or 0)))
    if status_given and status == "Completed":
        return "Completed", 100
    if percent_given and done == 100:
        return "Completed", 100
    if status == "NotStarted" and done:
        return ("InProgress", done) if percent_given else ("NotStarted", 0)
    if status == "Completed":  # a percent below 100 reopens the task
        return ("InProgress" if done else "NotStarted"), done
    if done == 100:  # a status other than Completed reopens it (our choice: from 0 %)
        return status, 0
    return status, done


def _set_task_progress(
    item: Task, changes: Mapping[str, Any], base: Mapping[str, Any], new: bool, touched: list[str]
) -> None:
    """Status and percent as one consistent pair; a value that follows from the other is sent
    only when it differs from the item's (or on create)."""
    if "status" not in changes and "percent_complete" not in changes:
        return
    status, percent = task_progress(
        changes.get("status", base.get("status")),
        changes.get("percent_complete", base.get("percent_complete")),
        status_given="status" in changes,
        percent_given="percent_complete" in changes,
    )
    if new or "status" in changes or status != base.get("status"):
        item.status = status
        touched.append("status")
    if new or "percent_complete" in changes or percent != base.get("percent_complete"):
        item.percent_complete = Decimal(percent)
        touched.append("percent_complete")


def _apply_task(
    item: Task, changes: Mapping[str, Any], base: Mapping[str, Any], new: bool
) -> list[str]:
    touched: list[str] = []
    _set_each(item, changes, touched, ("subject", "importance"))
    _set_each(item, changes, touched, ("start_date", "due_date"), _ews_date)
    _set_task_progress(item, changes, base, new, touched)
    _set_text_body_and_categories(item, changes, touched)
    return touched  # complete_date is set by Exchange when the status becomes Completed


# --- appointments ------------------------------------------------------------------------------


def _tz_key(tz: Any) -> str | None:
    return str(tz.key) if tz is not None and getattr(tz, "key", None) else None


def _appointment_to_vocab(item: CalendarItem) -> dict[str, Any]:
    tz = item._start_timezone
    all_day = bool(item.is_all_day)
    start, end = item.start, item.end
    if all_day and start is not None and not isinstance(start, dt.datetime):
        zone = tz or UTC
        start = EWSDateTime(start.year, start.month, start.day, tzinfo=zone)
        last = end + dt.timedelta(days=1)  # exchangelib gives the last day, inclusive
        end = EWSDateTime(last.year, last.month, last.day, tzinfo=zone)
    deleted = sorted(m for m in (moment(o.start) for o in item.deleted_occurrences or []) if m)
    modified = sorted(
        (
            {
                "original_start": moment(o.original_start),
                "start": moment(o.start),
                "end": moment(o.end),
            }
            for o in item.modified_occurrences or []
        ),
        key=lambda o: o["original_start"] or "",
    )
    return {
        "subject": _text(item.subject),
        "body": body_text(item.body),
        "location": _text(item.location),
        "start": moment(start),
        "end": moment(end),
        "timezone": _tz_key(tz),
        "is_all_day": all_day,
        "show_as": _text(item.legacy_free_busy_status),
        "organizer": _addresses([item.organizer])[0] if item.organizer else None,
        "required_attendees": _addresses(item.required_attendees),
        "optional_attendees": _addresses(item.optional_attendees),
        "reminder_is_set": bool(item.reminder_is_set),
        "reminder_minutes": item.reminder_minutes_before_start,
        "recurrence": ews_recurrence.to_vocab(item.recurrence),
        "deleted_occurrences": deleted,
        "modified_occurrences": modified,
        "categories": list(item.categories or []),
    }


def series_timezone(values: Mapping[str, Any]) -> EWSTimeZone:
    """The appointment's time zone (UTC when it has none)."""
    name = values.get("timezone")
    return EWSTimeZone(name) if name else UTC


def local_date(value: str, tz: EWSTimeZone) -> dt.date:
    """The date of a UTC moment in the series' time zone."""
    return dt.date(*parse_moment(value).astimezone(tz).timetuple()[:3])


_TIME_FIELDS = ("start", "end", "timezone", "is_all_day")


def _apply_appointment(
    item: CalendarItem, changes: Mapping[str, Any], base: Mapping[str, Any], new: bool
) -> list[str]:
    merged = {**base, **changes}
    touched: list[str] = []
    _set_each(item, changes, touched, ("subject", "location"))
    tz = series_timezone(merged)
    if any(n in changes for n in _TIME_FIELDS) or "recurrence" in changes:
        item._start_timezone = tz
        item._end_timezone = tz
        item.is_all_day = bool(merged.get("is_all_day"))
        start, end = parse_moment(merged["start"]), parse_moment(merged["end"])
        if item.is_all_day:
            first = start.astimezone(tz)
            after = end.astimezone(tz)
            item.start = EWSDate(first.year, first.month, first.day)
            last = dt.date(after.year, after.month, after.day) - dt.timedelta(days=1)
            item.end = EWSDate(last.year, last.month, last.day)
        else:
            item.start = start.astimezone(tz)
            item.end = end.astimezone(tz)
        touched += ["start", "end", "is_all_day"]
    if "show_as" in changes:
        item.legacy_free_busy_status = changes["show_as"] or "Busy"
        touched.append("legacy_free_busy_status")
    _set_each(
        item, changes, touched, ("required_attendees", "optional_attendees"),
        lambda value: _attendees(value) or None,
    )  # fmt: skip
    if "reminder_is_set" in changes:
        item.reminder_is_set = bool(changes["reminder_is_set"])
        touched.append("reminder_is_set")
    if "reminder_minutes" in changes:
        item.reminder_minutes_before_start = int(changes["reminder_minutes"] or 0)
        touched.append("reminder_minutes_before_start")
    if "recurrence" in changes:
        first_day = local_date(merged["start"], tz)
        item.recurrence = ews_recurrence.from_vocab(changes["recurrence"], first_day)
        touched.append("recurrence")
    _set_text_body_and_categories(item, changes, touched)
    return touched  # organizer is read-only; occurrences are written by the side (by index)


# --- messages ----------------------------------------------------------------------------------


def _message_to_vocab(item: Message) -> dict[str, Any]:
    author = item.author or item.sender
    body = item.body
    return {
        "message_id": _text(item.message_id),
        "in_reply_to": _text(item.in_reply_to),
        "references": _text(item.references),
        "conversation_index": _base64(item.conversation_index),
        "subject": _text(item.subject),
        "sender": _addresses([author])[0] if author else None,
        "to": _addresses(item.to_recipients),
        "cc": _addresses(item.cc_recipients),
        "bcc": _addresses(item.bcc_recipients),
        "body": str(body) if body else None,
        "body_type": "HTML" if isinstance(body, HTMLBody) else "Text",
        "received": moment(item.datetime_received),
        "sent": moment(item.datetime_sent),
        "categories": list(item.categories or []),
        "has_attachments": bool(item.has_attachments),
    }


def _apply_message(
    item: Message, changes: Mapping[str, Any], base: Mapping[str, Any], new: bool
) -> list[str]:
    merged = {**base, **changes}
    touched: list[str] = []
    _set_each(item, changes, touched, ("subject", "in_reply_to", "references"))
    if changes.get("message_id") and new:
        item.message_id = changes["message_id"]
        touched.append("message_id")
    if "body" in changes or "body_type" in changes:
        text = merged.get("body") or ""
        item.body = HTMLBody(text) if merged.get("body_type") == "HTML" else Body(text)
        touched.append("body")
    for name, attr in (("to", "to_recipients"), ("cc", "cc_recipients"), ("bcc", "bcc_recipients")):
        if name in changes:
            setattr(item, attr, _mailboxes(changes[name]) or None)
            touched.append(attr)
    _set_categories(item, changes, touched)
    return touched


# --- dispatch ----------------------------------------------------------------------------------

_TO_VOCAB = {
    "contacts": _contact_to_vocab,
    "tasks": _task_to_vocab,
    "appointments": _appointment_to_vocab,
    "messages": _message_to_vocab,
}
_APPLY = {
    "contacts": _apply_contact,
    "tasks": _apply_task,
    "appointments": _apply_appointment,
    "messages": _apply_message,
}


def to_vocab(kind: str, item: Item) -> dict[str, Any]:
    """The vocabulary dict of an exchangelib item of `kind`, with `modified`: when the item
    last changed (a re-link that finds the sides different says which changed last)."""
    fields = dict(_TO_VOCAB[base_kind(kind)](item))
    modified = getattr(item, "last_modified_time", None)
    if modified is not None:
        fields.setdefault(MODIFIED, moment(modified))
    return fields


def apply_vocab(
    kind: str,
    item: Item,
    changes: Mapping[str, Any],
    base: Mapping[str, Any] | None = None,
    new: bool = True,
) -> list[str]:
    """Set `changes` on `item`; return the exchangelib field names that changed.

    `base` is the item's current vocabulary where known; `new` says the item is being created."""
    apply = _APPLY[base_kind(kind)]
    return list(apply(item, changes, base or {}, new))


def item_key(item: Item) -> str | None:
    """The CRM id in the item's key property, if any."""
    return _text(getattr(item, KEY_FIELD, None))
