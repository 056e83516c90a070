"""The "what to sync" step: sync filters with live counts, tracking, field directions, interval.

Filters are stored as `SyncFilter` rows whose conditions are the engine's condition dicts
(`{"field", "op", "value"}`, value "me" = the signed-in CRM user; `sync.kinds.base.Condition`),
turned into an OData
`$filter` for counting here and applied by the engine to change-tracking deltas (which take
no `$filter`, DESIGN.md §3). Offline filters are rows whose kind is "offline:<entity set>".
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select

from sync.mail import settings as email_settings
from sync.mail.token import DEFAULT_PREFIX
from sync.setup import odata
from sync.setup import profile as keys
from sync.setup.messages import N_, Msg, SetupError
from sync.setup.odata import entity_set
from sync.setup.ports import CrmDirectory
from sync.setup.profile import Profile
from sync.setup.user_filters import (
    USER_PREFIX,
    FieldDef,
    UserFilter,
    describe_conditions,
    refresh_kinds,
    set_enabled,
    user_filters,
)
from sync.store.models import SyncFilter

ME = "me"

TRACKING_OPTIONS: dict[str, Msg] = {
    "none": N_("Do not track email automatically"),
    "all": N_("All email messages"),
    "replies": N_("Replies to email tracked in the CRM"),
    "records": N_("Email from CRM contacts, leads and accounts"),
    "email_enabled": N_("Email from any email-enabled CRM record (users too)"),
}
"""Dynamics' personal options (sync.mail.ports.TRACKING_OPTIONS), in its order; the names of
the four stored before email was built are unchanged."""
MAX_DAYS_BACK = 3650
MAX_PREFIX = 20
INTERVALS = (60, 300, 900, 1800, 3600)
DIRECTIONS: dict[str, Msg] = {
    "both": N_("Both ways"),
    "to_mailbox": N_("CRM to mailbox only"),
    "to_crm": N_("Mailbox to CRM only"),
}
FIELD_GROUPS: dict[str, Msg] = {
    "contacts": N_("Contact fields"),
    "appointments": N_("Appointment fields"),
    "tasks": N_("Task fields"),
}
KIND_LABELS: dict[str, Msg] = {
    "contacts": N_("Contacts"),
    "appointments": N_("Appointments"),
    "tasks": N_("Tasks"),
    "offline:contacts": N_("Contacts (offline)"),
    "offline:accounts": N_("Accounts (offline)"),
    "offline:leads": N_("Leads (offline)"),
    "offline:opportunities": N_("Opportunities (offline)"),
    "offline:tasks": N_("Tasks (offline)"),
    "offline:appointments": N_("Appointments (offline)"),
}


@dataclass(frozen=True)
class FilterDef:
    """A built-in filter offered by the wizard (stored as a SyncFilter row on save)."""

    slug: str
    kind: str
    name: Msg
    conditions: tuple[tuple[str, str, Any], ...]
    default: bool


BUILTIN_FILTERS: tuple[FilterDef, ...] = (
    FilterDef(
        "my-active-contacts",
        "contacts",
        N_("My active contacts"),
        (("_ownerid_value", "eq", ME), ("statecode", "eq", 0)),
        True,
    ),
    FilterDef(
        "all-active-contacts",
        "contacts",
        N_("All active contacts"),
        (("statecode", "eq", 0),),
        False,
    ),
    FilterDef(
        "my-appointments",
        "appointments",
        N_("My appointments"),
        # single appointments only (instancetypecode 0 Not Recurring): a series' instance and
        # exception rows are not what the sync takes (it takes the series once, by its master)
        (("_ownerid_value", "eq", ME), ("instancetypecode", "eq", 0)),
        True,
    ),
    FilterDef(
        "my-open-tasks",
        "tasks",
        N_("My open tasks"),
        (("_ownerid_value", "eq", ME), ("statecode", "eq", 0)),
        True,
    ),
    FilterDef(
        "offline-my-contacts",
        "offline:contacts",
        N_("My active contacts"),
        (("_ownerid_value", "eq", ME), ("statecode", "eq", 0)),
        False,
    ),
    FilterDef(
        "offline-my-accounts",
        "offline:accounts",
        N_("My active accounts"),
        (("_ownerid_value", "eq", ME), ("statecode", "eq", 0)),
        False,
    ),
    FilterDef(
        "offline-my-leads",
        "offline:leads",
        N_("My open leads"),
        (("_ownerid_value", "eq", ME), ("statecode", "eq", 0)),
        False,
    ),
    FilterDef(
        "offline-my-opportunities",
        "offline:opportunities",
        N_("My open opportunities"),
        (("_ownerid_value", "eq", ME), ("statecode", "eq", 0)),
        False,
    ),
    FilterDef(
        "offline-my-open-tasks",
        "offline:tasks",
        N_("My open tasks"),
        (("_ownerid_value", "eq", ME), ("statecode", "eq", 0)),
        False,
    ),
    FilterDef(  # [offline2] issue 12 lists appointments too
        "offline-my-appointments",
        "offline:appointments",
        N_("My appointments"),
        # single ones, as messaging's: a series' instances are not edited one by one offline
        (("_ownerid_value", "eq", ME), ("instancetypecode", "eq", 0)),
        False,
    ),
)
BY_SLUG = {f.slug: f for f in BUILTIN_FILTERS}
BUILTIN_ONLY_FIELDS = (
    # appointment.md InstanceTypeCode: 0 Not Recurring (a series syncs once, by its master)
    FieldDef("instancetypecode", N_("Appointment type"), "option", ((0, N_("Single")),)),
)
"""Fields only built-in filters test: named in the summary, not offered in the builder."""


@dataclass(frozen=True)
class FilterSummary:
    """A chosen filter as the summary shows it: its kind, name and conditions in words."""

    kind: str
    name: Msg | str
    conditions: list[tuple[Msg, Msg, Msg | str]]


def chosen_filters(
    profile: Profile, user_names: Mapping[str, str] | None = None
) -> list[FilterSummary]:
    """The enabled messaging filters, built-in then the user's own, in words."""
    chosen = current_choices(profile).filters
    found = [
        FilterSummary(d.kind, d.name, describe_conditions(*_described(d), user_names,
                                                          BUILTIN_ONLY_FIELDS))
        for d in BUILTIN_FILTERS
        if d.slug in chosen
    ]  # fmt: skip
    found += [
        FilterSummary(f.kind, f.name, describe_conditions(f.kind, f.conditions, user_names))
        for f in user_filters(profile)
        if f.enabled
    ]
    return found


def _described(definition: FilterDef) -> tuple[str, list[dict[str, Any]]]:
    """The kind and conditions a built-in filter is put in words with. An offline one (of a
    table the builder has no fields for) says its owner condition with the contacts' words;
    its name says the rest ("My open leads": a state's name differs per table)."""
    conditions = [{"field": f, "op": op, "value": v} for f, op, v in definition.conditions]
    if not is_offline(definition.slug):
        return definition.kind, conditions
    return "contacts", [c for c in conditions if c["field"] == "_ownerid_value"]


def is_offline(slug: str) -> bool:
    """Whether `slug` names a built-in offline filter (the offline job's, not messaging's)."""
    definition = BY_SLUG.get(slug)
    return definition is not None and definition.kind.startswith(odata.OFFLINE_PREFIX)


@dataclass(frozen=True)
class Choices:
    """The step's answers."""

    filters: tuple[str, ...]
    tracking: str = email_settings.DEFAULT_OPTION
    directions: Mapping[str, str] | None = None
    interval_seconds: int = 300
    # email (sync.mail.settings holds the keys and the defaults)
    track_sent_items: bool = True
    track_days_back: int = 0
    token_enabled: bool = True
    token_prefix: str = DEFAULT_PREFIX
    send_crm_email: bool = False

    @property
    def email_on(self) -> bool:
        """Email is this client's: tracked by rule, or CRM email sent through the mailbox
        (tracked folders, chosen on the Mail page, count too: see `email_workloads`)."""
        return self.tracking != "none" or self.send_crm_email


def to_odata(conditions: Iterable[Sequence[Any]], me: str) -> str:
    """The OData `$filter` of a built-in filter's (column, operator, value) conditions."""
    return odata.to_odata([{"field": c, "op": op, "value": v} for c, op, v in conditions], me)


def count_for(directory: CrmDirectory, slug: str, me: str) -> int:
    """The live count of one built-in filter's records."""
    definition = BY_SLUG[slug]
    return directory.count(entity_set(definition.kind), to_odata(definition.conditions, me))


def count_union(
    directory: CrmDirectory,
    slugs: Sequence[str],
    me: str,
    own: Sequence[UserFilter] = (),
    tz: str = "UTC",
) -> dict[str, int]:
    """Per kind, how many records the chosen filters select together (a record in two
    filters counts once: one count of the filters joined with `or`); `own`: the user's
    own filters that are ticked too."""
    by_kind: dict[str, list[str]] = {}
    for slug in slugs:
        definition = BY_SLUG[slug]
        by_kind.setdefault(definition.kind, []).append(f"({to_odata(definition.conditions, me)})")
    for found in own:
        by_kind.setdefault(found.kind, []).append(
            f"({odata.to_odata(found.conditions, me, tz=tz)})"
        )
    return {
        kind: directory.count(entity_set(kind), " or ".join(parts))
        for kind, parts in by_kind.items()
    }


def parse_choices(
    form: Mapping[str, Any], filters: Sequence[str], offline_own: Collection[str] = ()
) -> Choices:
    """Validate the step's form (filters as a list of slugs; `offline_own`: the slugs of the
    user's own offline filters, which are not messaging's); raises SetupError."""
    unknown = [s for s in filters if s not in BY_SLUG and not s.startswith(USER_PREFIX)]
    if unknown:
        raise SetupError(N_("Unknown filter: %(name)s.", name=", ".join(unknown)), "filters")
    tracking = str(form.get("tracking") or email_settings.DEFAULT_OPTION)
    if tracking not in TRACKING_OPTIONS:
        raise SetupError(N_("Choose an email tracking option."), "tracking")
    try:
        interval = int(form.get("interval_seconds") or 300)
    except ValueError:
        interval = -1
    if interval not in INTERVALS:
        raise SetupError(N_("Choose one of the offered intervals."), "interval_seconds")
    directions = {}
    for group in FIELD_GROUPS:
        value = str(form.get(f"direction_{group}") or "both")
        if value not in DIRECTIONS:
            raise SetupError(N_("Choose a direction for each kind."), f"direction_{group}")
        directions[group] = value
    picked = Choices(
        tuple(dict.fromkeys(filters)), tracking, directions, interval, **_email_choices(form)
    )
    require_something(picked, offline_own)
    return picked


NOTHING_TO_SYNC = N_(
    "Choose at least one thing to sync: tick a sync filter, track email automatically, or "
    "send CRM email through this mailbox."
)


def require_something(choices: Choices, offline_own: Collection[str] = ()) -> None:
    """Refuse a setup that would sync nothing: no filter of a messaging kind (offline ones,
    built-in or the user's own `offline_own`, are another job), no email tracking and no
    sending. Raises SetupError on "filters"."""
    messaging = [s for s in choices.filters if not is_offline(s) and s not in offline_own]
    if not messaging and not choices.email_on:
        raise SetupError(NOTHING_TO_SYNC, "filters")


def _flag(form: Mapping[str, Any], name: str, default: bool) -> bool:
    value = form.get(name)
    if value is None:
        return default
    return str(value).lower() in ("1", "yes", "on", "true")


def _email_choices(form: Mapping[str, Any]) -> dict[str, Any]:
    """The email part of the form. A form without it (`email_form` absent: an older page, a
    script) keeps the defaults; with it, an unticked box is off (browsers send nothing)."""
    shown = form.get("email_form") is not None
    defaults = Choices(())
    try:
        days = int(str(form.get("track_days_back") or 0).strip() or 0)
    except ValueError:
        days = -1
    if not 0 <= days <= MAX_DAYS_BACK:
        raise SetupError(
            N_("Track the last days: a whole number from 0 to %(max)s.", max=MAX_DAYS_BACK),
            "track_days_back",
        )
    prefix = str(form.get("token_prefix") or DEFAULT_PREFIX).strip()
    if len(prefix) > MAX_PREFIX or any(c.isspace() for c in prefix) or prefix[-1:].isdigit():
        raise SetupError(
            N_(
                "The tracking token prefix has at most %(max)s characters, no spaces, and does "
                "not end with a digit (for example CRM:).",
                max=MAX_PREFIX,
            ),
            "token_prefix",
        )
    return {
        "track_sent_items": _flag(
            form, "track_sent_items", not shown and defaults.track_sent_items
        ),
        "track_days_back": days,
        "token_enabled": _flag(form, "token_enabled", not shown and defaults.token_enabled),
        "token_prefix": prefix,
        "send_crm_email": _flag(form, "send_crm_email", False),
    }


def current_choices(profile: Profile) -> Choices:
    """What is stored (or the defaults before the step was saved)."""
    with profile.database.session() as session:
        rows = list(session.scalars(select(SyncFilter).where(SyncFilter.builtin.is_(True))))
    enabled = tuple(r.name for r in rows if r.enabled and r.name in BY_SLUG)
    if not rows:
        enabled = tuple(f.slug for f in BUILTIN_FILTERS if f.default)
    enabled += tuple(f.slug for f in user_filters(profile) if f.enabled)
    email = email_settings.load(profile)
    return Choices(
        filters=enabled,
        tracking=email.option,
        directions=dict(profile.get("field_directions", {}) or {}),
        interval_seconds=int(profile.get("interval_seconds", 300)),
        track_sent_items=email.track_sent_items,
        track_days_back=email.track_days_back,
        token_enabled=email.token_enabled,
        token_prefix=email.token_prefix,
        send_crm_email=email.send_crm_email,
    )


def save_choices(profile: Profile, choices: Choices) -> None:
    """Store the filters as SyncFilter rows (name = slug) and the rest as settings."""
    with profile.database.session() as session:
        rows = {r.name: r for r in session.scalars(select(SyncFilter)) if r.builtin}
        for definition in BUILTIN_FILTERS:
            row = rows.get(definition.slug)
            if row is None:
                row = SyncFilter(kind=definition.kind, name=definition.slug, builtin=True)
                session.add(row)
            row.conditions = [
                {"field": f, "op": op, "value": value} for f, op, value in definition.conditions
            ]
            row.enabled = definition.slug in choices.filters
    set_enabled(profile, [s for s in choices.filters if s.startswith(USER_PREFIX)])
    refresh_kinds(profile)
    stored = email_settings.load(profile)
    email_settings.save(
        profile,
        replace(
            stored,
            option=choices.tracking,
            track_sent_items=choices.track_sent_items,
            track_days_back=choices.track_days_back,
            token_enabled=choices.token_enabled,
            token_prefix=choices.token_prefix,
            send_crm_email=choices.send_crm_email,
        ),
    )
    profile.set("field_directions", dict(choices.directions or {}))
    profile.set("interval_seconds", choices.interval_seconds)
    profile.set(keys.CHOICES_SAVED, True)
