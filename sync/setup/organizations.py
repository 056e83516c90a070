"""The organization step: list what discovery offers, choose the synchronizing one and others.

Only one organization is ever synchronizing. Changing it needs the user's confirmation
because the new one starts from scratch: the old one's links are retired (kept, marked
`retired`, so nothing is deleted on either side) and its change tokens dropped.

Once chosen, the synchronizing organization is asked (read-only) whether it tracks changes of
the synced tables for this user: change tracking needs organization-level read and tracking
enabled on the table (DESIGN.md §3). Where it does not, the sync reads that table by
modification time instead; the user is told which table, which privilege or setting, and what
to ask the administrator (`check_change_readers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from sync.crm.watermark import DEFAULT_SWEEP_EVERY
from sync.messages import joined
from sync.runs import raise_alert, resolve_alerts
from sync.setup import profile as keys
from sync.setup.messages import N_, Msg, SetupError
from sync.setup.ports import Discovery, OrgInfo
from sync.setup.profile import Profile
from sync.store.models import Link, Organization, SyncToken

if TYPE_CHECKING:
    from sync.crm.capabilities import TableAccess

log = logging.getLogger(__name__)

READER_ALERT = "crm-change-tracking"
"""Open while some synced table is read by modification time instead of change tracking."""
SWEEP_EVERY = DEFAULT_SWEEP_EVERY
"""The deletion sweep's period the messages quote."""


@dataclass(frozen=True)
class OrgChoice:
    """What the form chose: one synchronizing org and any connected ones (by id)."""

    synchronizing: str
    connected: tuple[str, ...] = ()


class NeedsConfirmation(SetupError):
    """Changing the synchronizing organization must be confirmed first."""


def list_organizations(discovery: Discovery) -> list[OrgInfo]:
    """The reachable organizations, sorted by their friendly name."""
    return sorted(discovery.instances(), key=lambda o: o.friendly_name.lower())


def find_by_unique_name(orgs: Sequence[OrgInfo], unique_name: str) -> OrgInfo:
    for org in orgs:
        if org.unique_name.lower() == unique_name.lower():
            return org
    names = ", ".join(o.unique_name for o in orgs) or "-"
    raise SetupError(
        N_(
            "No organization named %(name)s is available to you. Available: %(names)s.",
            name=unique_name,
            names=names,
        ),
        "synchronizing",
    )


def choose(
    profile: Profile, available: Sequence[OrgInfo], choice: OrgChoice, confirmed: bool = False
) -> OrgInfo:
    """Store the choice. Raises NeedsConfirmation to change the synchronizing org unconfirmed."""
    by_id = {org.id: org for org in available}
    chosen = by_id.get(choice.synchronizing)
    if chosen is None:
        raise SetupError(N_("Choose the organization to synchronize with."), "synchronizing")
    unknown = [i for i in choice.connected if i not in by_id]
    if unknown:
        raise SetupError(N_("An organization you chose is no longer available."), "connected")
    if chosen.id in choice.connected:  # said, never silently dropped
        raise SetupError(
            N_(
                "%(name)s is the organization you synchronize with, so it cannot also be a "
                "connected one: untick “Connect” for it.",
                name=chosen.friendly_name,
            ),
            "connected",
        )
    old = profile.synchronizing_org()
    changing = old is not None and old.id != chosen.id
    if changing and not confirmed:
        assert old is not None
        raise NeedsConfirmation(
            N_(
                "Changing the synchronizing organization from %(old)s to %(new)s starts its "
                "sync from scratch: items already linked with %(old)s are no longer kept in "
                "step. Confirm to go on.",
                old=old.friendly_name,
                new=chosen.friendly_name,
            ),
            "confirm",
        )
    connected = set(choice.connected)
    with profile.database.session() as session:
        rows = {row.id: row for row in session.scalars(select(Organization))}
        for org_id, row in rows.items():
            if org_id != chosen.id and org_id not in connected:
                session.delete(row)
        for org_id in [chosen.id, *sorted(connected)]:
            org = by_id[org_id]
            row = rows.get(org_id) or Organization(id=org.id)
            session.add(row)
            row.unique_name, row.friendly_name = org.unique_name, org.friendly_name
            row.url, row.api_url = org.url, org.api_url
            row.role = "synchronizing" if org_id == chosen.id else "connected"
    if changing:
        assert old is not None
        retire_links(profile, old.id)
        # the claim and the mailbox record are per organization: ask again
        profile.set(keys.INSTANCE_DECIDED, False)
        profile.set(keys.MAILBOX_TESTED, False)
        profile.set(keys.CRM_USER, None)
    return chosen


def retire_links(profile: Profile, org_id: str) -> int:
    """Mark the org's links retired and drop its change tokens; returns the links retired."""
    with profile.database.session() as session:
        result = session.execute(
            update(Link).where(Link.org == org_id, Link.state != "retired").values(state="retired")
        )
        session.execute(delete(SyncToken).where(SyncToken.org == org_id))
        return int(getattr(result, "rowcount", 0) or 0)


def change_reader_notice(access: TableAccess) -> Msg | None:
    """What the user should know about one synced table's change reader (None: change tracking
    works). Names the table, the privilege or setting, and what to ask the administrator."""
    if access.change_tracking:
        return None
    table, privilege, every = access.logical_name, access.privilege, SWEEP_EVERY
    if access.depth == "None":
        return N_(
            "You cannot read %(table)s records: your security role has no Read privilege on "
            "that table (%(privilege)s), so they cannot be synchronized. Ask your administrator "
            "to give your role Read on it.",
            table=table,
            privilege=privilege,
        )
    if access.depth_short:
        reach = {
            "Basic": N_(
                "%(table)s: your security role reads only your own records (user level, "
                "%(privilege)s), and change tracking needs organization-level read. Mailbox "
                "Sync reads them by modification time instead and looks for deleted ones every "
                "%(every)s runs. For change tracking, ask your administrator for "
                "organization-level Read on that table.",
                table=table,
                privilege=privilege,
                every=every,
            ),
            "Deep": N_(
                "%(table)s: your security role reads the records of your business unit and the "
                "units below it (%(privilege)s), and change tracking needs organization-level "
                "read. Mailbox Sync reads them by modification time instead and looks for deleted "
                "ones every %(every)s runs. For change tracking, ask your administrator for "
                "organization-level Read on that table.",
                table=table,
                privilege=privilege,
                every=every,
            ),
            "Local": N_(
                "%(table)s: your security role reads the records of your business unit "
                "(%(privilege)s), and change tracking needs organization-level read. Mailbox "
                "Sync reads them by modification time instead and looks for deleted ones every "
                "%(every)s runs. For change tracking, ask your administrator for "
                "organization-level Read on that table.",
                table=table,
                privilege=privilege,
                every=every,
            ),
        }
        return reach.get(
            access.depth or "",
            N_(
                "%(table)s: change tracking needs organization-level read on that table "
                "(%(privilege)s), which your security role does not give. Mailbox Sync reads "
                "its records by modification time instead and looks for deleted ones every "
                "%(every)s runs. For change tracking, ask your administrator for "
                "organization-level Read on that table.",
                table=table,
                privilege=privilege,
                every=every,
            ),
        )
    return N_(
        "%(table)s: change tracking is not enabled on that table. Mailbox Sync reads its "
        "records by modification time instead and looks for deleted ones every %(every)s runs. "
        "For change tracking, ask your administrator to turn on Track changes in the table's "
        "advanced options.",
        table=table,
        every=every,
    )


def check_change_readers(profile: Profile, directory: Callable[[], Any]) -> list[Msg]:
    """Ask the synchronizing organization (read-only) how each synced table's changes can be
    read, and say so: an alert naming each table read without change tracking (resolved when
    all are tracked). Never stops the setup: the sync falls back by itself, and a question the
    service does not answer is left for the next check (`run.py doctor`)."""
    from sync.sides import SideError

    try:
        client = getattr(directory(), "client", None)
        if client is None or not callable(getattr(client, "who_am_i", None)):
            return []  # a directory without a Web API client (the tests' memory world)
        from sync.crm.capabilities import SYNCED_TABLES, table_access

        user_id = str(client.who_am_i()["UserId"])
        depths: dict[str, str | None] = {}
        tracking: dict[str, bool] = {}  # [h4] one request for every table's setting
        accesses = [table_access(client, user_id, name, depths, tracking) for name in SYNCED_TABLES]
    except SideError as error:
        log.warning("could not ask how the synced tables' changes can be read: %s", error)
        return []
    notices = [n for n in (change_reader_notice(a) for a in accesses) if n is not None]
    if notices:
        raise_alert(
            profile.database,
            READER_ALERT,
            title=N_("Some tables are synchronized without change tracking"),
            message=joined(notices),
            action=N_(
                "Syncing works; for faster syncs and immediate deletions, ask your "
                "administrator for what each table names, then open Settings and press "
                "'Check my setup'."
            ),
            severity="warning",
        )
    else:
        resolve_alerts(profile.database, READER_ALERT)
    return notices
