"""The organization step: list what discovery offers, choose the synchronizing one and others.

Only one organization is ever synchronizing. Changing it needs the user's confirmation
because the new one starts from scratch: the old one's links are retired (kept, marked
`retired`, so nothing is deleted on either side) and its change tokens dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from sync.setup import profile as keys
from sync.setup.messages import N_, SetupError
from sync.setup.ports import Discovery, OrgInfo
from sync.setup.profile import Profile
from sync.store.models import Link, Organization, SyncToken


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
    connected = {i for i in choice.connected if i != chosen.id}
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
