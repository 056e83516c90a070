"""The mailbox side's field vocabulary: the neutral names every `MailboxSide` speaks.

An EWS adapter, a Graph adapter and the in-memory mailbox all translate their items into these
flat dicts, so the kinds map CRM columns to one vocabulary only. Values are plain JSON values:

- text: `str` (empty string and None both mean "no value"; adapters return None);
- dates: ISO `YYYY-MM-DD` strings; moments: ISO 8601 UTC strings `YYYY-MM-DDTHH:MM:SSZ`;
- lists: `list[str]` (categories, attendee addresses);
- recurrence: the dict described by `RECURRENCE_DOC` below.

Every item a side reports also carries, outside `fields`, its id, its version (ChangeKey or
ETag) and its idempotency key (the CRM id we wrote into the extended property, if any).
"""

from __future__ import annotations

from typing import Final

MODIFIED: Final = "modified"
"""When the item last changed (a moment), on every item a side reports: not a synced field."""

TRACKED_CATEGORY: Final = "Tracked to Dynamics 365"
"""The Outlook category that marks an item as tracked (mailbox → CRM)."""

IDEMPOTENCY_PROPERTY_SET: Final = "c11ff724-aa03-4555-9952-8fa248a11c3e"
"""GUID of the named-property set (PS_PUBLIC_STRINGS style) holding our CRM id property."""
IDEMPOTENCY_PROPERTY_NAME: Final = "crmid"
"""Name of the string extended property that carries the CRM id on items we create."""

CONTACT_FIELDS: Final = (
    "given_name",
    "middle_name",
    "surname",
    "generation",  # suffix
    "nickname",
    "job_title",
    "department",
    "company_name",
    "email_address_1",
    "email_address_2",
    "email_address_3",
    "business_phone",
    "home_phone",
    "mobile_phone",
    "other_phone",
    "business_fax",
    "business_street",
    "business_city",
    "business_state",
    "business_postal_code",
    "business_country",
    "home_street",
    "home_city",
    "home_state",
    "home_postal_code",
    "home_country",
    "birthday",  # date
    "wedding_anniversary",  # date
    "business_homepage",
    "body",  # notes, plain text
    "categories",  # list[str]
)

TASK_FIELDS: Final = (
    "subject",
    "body",  # plain text
    "start_date",  # moment (UTC)
    "due_date",  # moment (UTC)
    "status",  # NotStarted | InProgress | Completed | WaitingOnOthers | Deferred
    "percent_complete",  # int 0..100
    "importance",  # Low | Normal | High
    "complete_date",  # moment (UTC)
    "categories",
)

APPOINTMENT_FIELDS: Final = (
    "subject",
    "body",  # plain text
    "location",
    "start",  # moment (UTC); for an all-day event midnight of the day in `timezone`
    "end",  # moment (UTC)
    "timezone",  # IANA name the event was made in (wall-clock of recurrences), e.g. Europe/Paris
    "is_all_day",  # bool
    "show_as",  # Free | Tentative | Busy | OOF | WorkingElsewhere
    "organizer",  # email address
    "required_attendees",  # list[str] of email addresses
    "optional_attendees",  # list[str]
    "reminder_is_set",  # bool
    "reminder_minutes",  # int
    "recurrence",  # None or the dict of RECURRENCE_DOC
    "deleted_occurrences",  # list of original starts (moments, UTC) of deleted occurrences
    "modified_occurrences",  # list of {"original_start", "start", "end", "subject"?, "location"?}
    "categories",
)

OCCURRENCE_FIELDS: Final = ("deleted_occurrences", "modified_occurrences")
"""A series' exceptions: written after the series itself, by original start, on either protocol."""

RECURRENCE_DOC: Final = """
{"pattern": {"type": "daily" | "weekly" | "absolute_monthly" | "relative_monthly"
                     | "absolute_yearly" | "relative_yearly",
             "interval": int,                 # every N days/weeks/months (yearly: 1)
             "weekdays": ["Monday", ...],     # weekly; relative_*: the day(s) in the week
             "first_day_of_week": "Sunday",   # weekly
             "day_of_month": int,             # absolute_monthly, absolute_yearly
             "week_index": "First" | "Second" | "Third" | "Fourth" | "Last",  # relative_*
             "month": int},                   # *_yearly, 1..12
 "range": {"type": "no_end" | "end_date" | "numbered",
           "start": "YYYY-MM-DD", "end": "YYYY-MM-DD" | None, "count": int | None}}
Times of day come from the series' `start`/`end` in its `timezone`, so a series crossing a DST
change keeps its wall-clock time.
"""

MESSAGE_FIELDS: Final = (
    "message_id",  # Internet Message-Id, with angle brackets
    "in_reply_to",
    "references",  # str, space separated
    "conversation_index",  # base64 or None
    "subject",
    "sender",  # email address
    "to",  # list[str]
    "cc",  # list[str]
    "bcc",  # list[str]
    "body",
    "body_type",  # "HTML" | "Text"
    "received",  # moment (UTC)
    "sent",  # moment (UTC)
    "categories",
    "folder",  # distinguished folder name or folder id the message is in
    "has_attachments",  # bool
)

KIND_FIELDS: Final = {
    "contacts": CONTACT_FIELDS,
    "tasks": TASK_FIELDS,
    "appointments": APPOINTMENT_FIELDS,
    "email": MESSAGE_FIELDS,
}

KIND_FOLDERS: Final = {
    "contacts": "contacts",
    "tasks": "tasks",
    "appointments": "calendar",
    "email": "inbox",
}
"""The distinguished folder each kind lives in."""
