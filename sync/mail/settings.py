"""The user's email choices, read from and written to the profile in one place.

The keys are those `sync.mail.ports` lists. The tracking option keeps Dynamics' names, so a
value stored before email was built ("none", "replies", "records", "all") is read unchanged;
"email_enabled" is the fifth. `tracking_started_at` is set the first time tracking is on, so
that the automatic rule never reaches back over a whole mailbox (only `track_days_back` days
before it); tracking by hand has no such limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.mail.facade import TRACKED_FOLDERS_MAX, RecordRef
from sync.mail.ports import TRACKING_OPTIONS
from sync.mail.token import DEFAULT_DIGITS, DEFAULT_PREFIX
from sync.setup.profile import Profile

TRACKING_OPTION = "tracking_option"
TRACK_SENT_ITEMS = "track_sent_items"
TRACK_DAYS_BACK = "track_days_back"
TRACKING_STARTED_AT = "tracking_started_at"
TRACKING_TOKEN = "tracking_token"
TRACKED_FOLDERS = "tracked_folders"
SEND_CRM_EMAIL = "send_crm_email"

DEFAULT_OPTION = "none"
"""Before the user chooses: no automatic tracking. Dynamics' own default is "replies", but
any option but "none" takes incoming email from server-side sync (the wizard sets the
mailbox record's method), which must be the user's choice, never a default."""
MAX_DAYS_BACK = 3650


@dataclass(frozen=True)
class TrackedFolder:
    """A folder under the Inbox whose messages are tracked, with its optional Regarding."""

    id: str
    name: str
    regarding: RecordRef | None = None


@dataclass(frozen=True)
class EmailSettings:
    """What the wizard and Settings store for email (defaults before anything is stored)."""

    option: str = DEFAULT_OPTION
    track_sent_items: bool = True
    track_days_back: int = 0
    started_at: str | None = None
    token_enabled: bool = True
    token_prefix: str = DEFAULT_PREFIX
    token_digits: int = DEFAULT_DIGITS
    tracked_folders: tuple[TrackedFolder, ...] = field(default_factory=tuple)
    send_crm_email: bool = False

    @property
    def tracking_on(self) -> bool:
        """Tracking by rule or by folder is chosen (the category works whenever incoming
        email is this client's, see `sync.mail.track_run`)."""
        return self.option != "none" or bool(self.tracked_folders)

    def window_start(self) -> datetime | None:
        """Messages older than this are not tracked by the automatic rule (None: no limit,
        tracking never started)."""
        if not self.started_at:
            return None
        start = parse_moment(self.started_at)
        return start - timedelta(days=self.track_days_back) if start else None


def parse_moment(text: str | None) -> datetime | None:
    """An ISO 8601 moment (the vocabulary's `…Z` form or with an offset) as an aware UTC time."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(value: Any) -> RecordRef | None:
    if not isinstance(value, Mapping) or not value.get("entity_set") or not value.get("id"):
        return None
    return RecordRef(str(value["entity_set"]), str(value["id"]), str(value.get("name") or ""))


def record_dict(record: RecordRef | None) -> dict[str, str] | None:
    if record is None:
        return None
    return {"entity_set": record.entity_set, "id": record.id, "name": record.name}


def _folders(value: Any) -> tuple[TrackedFolder, ...]:
    folders: list[TrackedFolder] = []
    for row in value or []:
        if isinstance(row, Mapping) and row.get("id"):
            folders.append(
                TrackedFolder(
                    str(row["id"]), str(row.get("name") or ""), _record(row.get("regarding"))
                )
            )
    return tuple(folders[:TRACKED_FOLDERS_MAX])


def load(profile: Profile) -> EmailSettings:
    """The stored choices; an unknown stored option reads as "none" (never guess a rule)."""
    option = str(profile.get(TRACKING_OPTION, DEFAULT_OPTION))
    token = profile.get(TRACKING_TOKEN) or {}
    try:
        days = max(0, min(MAX_DAYS_BACK, int(profile.get(TRACK_DAYS_BACK, 0) or 0)))
    except (TypeError, ValueError):
        days = 0
    try:
        digits = int(token.get("digits", DEFAULT_DIGITS)) if isinstance(token, Mapping) else 0
    except (TypeError, ValueError):
        digits = DEFAULT_DIGITS
    return EmailSettings(
        option=option if option in TRACKING_OPTIONS else "none",
        track_sent_items=bool(profile.get(TRACK_SENT_ITEMS, True)),
        track_days_back=days,
        started_at=profile.get(TRACKING_STARTED_AT) or None,
        token_enabled=bool(token.get("enabled", True)) if isinstance(token, Mapping) else True,
        token_prefix=str(token.get("prefix") or DEFAULT_PREFIX)
        if isinstance(token, Mapping)
        else DEFAULT_PREFIX,
        token_digits=digits if 4 <= digits <= 20 else DEFAULT_DIGITS,
        tracked_folders=_folders(profile.get(TRACKED_FOLDERS)),
        send_crm_email=bool(profile.get(SEND_CRM_EMAIL, False)),
    )


def save(profile: Profile, settings: EmailSettings, now: datetime | None = None) -> EmailSettings:
    """Store `settings`; the tracking start is set when tracking is first on (and kept)."""
    started = settings.started_at or profile.get(TRACKING_STARTED_AT) or None
    if settings.tracking_on and not started:
        started = utc_text(now or datetime.now(UTC))
    profile.set(TRACKING_OPTION, settings.option)
    profile.set(TRACK_SENT_ITEMS, settings.track_sent_items)
    profile.set(TRACK_DAYS_BACK, settings.track_days_back)
    profile.set(
        TRACKING_TOKEN,
        {
            "enabled": settings.token_enabled,
            "prefix": settings.token_prefix,
            "digits": settings.token_digits,
        },
    )
    profile.set(SEND_CRM_EMAIL, settings.send_crm_email)
    if started:
        profile.set(TRACKING_STARTED_AT, started)
    return load(profile)


def save_folders(profile: Profile, folders: tuple[TrackedFolder, ...]) -> None:
    """Store the tracked folders (the Mail page chooses them); starts tracking if needed."""
    profile.set(
        TRACKED_FOLDERS,
        [
            {"id": f.id, "name": f.name, "regarding": record_dict(f.regarding)}
            for f in folders[:TRACKED_FOLDERS_MAX]
        ],
    )
    if folders and not profile.get(TRACKING_STARTED_AT):
        profile.set(TRACKING_STARTED_AT, utc_text(datetime.now(UTC)))


def ensure_started(profile: Profile, settings: EmailSettings, now: datetime) -> EmailSettings:
    """A profile whose option was stored before tracking existed has no start yet: tracking
    starts with its first run, never reaching back over the mailbox."""
    if settings.started_at or not settings.tracking_on:
        return settings
    profile.set(TRACKING_STARTED_AT, utc_text(now))
    return load(profile)


def chosen_workloads(profile: Profile) -> frozenset[str]:
    """The email workloads ("incoming", "outgoing") the stored choices make this client's; none
    before the "What to sync" step is saved: email is the user's choice, never a default."""
    from sync.setup.mailbox import email_workloads

    if not profile.step_done("choices"):
        return frozenset()
    email = load(profile)
    return email_workloads(email.tracking_on, email.send_crm_email)
