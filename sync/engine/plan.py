"""The plan: a pure function from links and both sides' changes to the actions to take.

For each record touched on either side, its link (if any) gives the fingerprints and values of
the last sync; comparing each side's current fingerprint with it tells who changed, and the
field-level merge (`merge.py`) what to write. No I/O here: the run reads, the apply writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sync.engine.filters import in_filter
from sync.engine.merge import merge
from sync.engine.options import EngineSettings
from sync.engine.state import DELETING, PENDING_CRM, SYNCED, UNTRACKED, LinkRow
from sync.kinds.base import Kind, is_tracked
from sync.sides import Change, Deleted, Upsert

CRM_KEY_NAMESPACE = uuid.UUID("5f1c7d2e-3b4a-4c8e-9d6f-0a1b2c3d4e5f")


def crm_key_for(mailbox_id: str) -> str:
    """The GUID a CRM record made from a mailbox item gets: derived from the item's id, so a
    reinstall (empty store) finds the record made before instead of making a second."""
    return str(uuid.uuid5(CRM_KEY_NAMESPACE, mailbox_id))


@dataclass
class ChangeSet:
    """One side's changes for this run: current records and deletions; `full` for a full read."""

    upserts: dict[str, Upsert] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    full: bool = False

    def add(self, change: Change) -> None:
        if isinstance(change, Deleted):
            self.upserts.pop(change.id, None)
            self.deleted.add(change.id)
        else:
            self.deleted.discard(change.id)
            self.upserts[change.id] = change

    def add_read(self, ids: list[str], found: Mapping[str, Upsert]) -> None:
        """Records read by id: found ones unless already known; missing ones are deleted."""
        for record_id in ids:
            if record_id in self.upserts or record_id in self.deleted:
                continue
            if record_id in found:
                self.upserts[record_id] = found[record_id]
            else:
                self.deleted.add(record_id)


# --- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateMailbox:
    """A CRM record in the filter has no mailbox copy: create it (key = the CRM id)."""

    crm_id: str
    crm_version: str | None
    values: dict[str, Any]


@dataclass(frozen=True)
class CreateCrm:
    """A tracked mailbox item has no CRM record: create it with the GUID `crm_id`."""

    crm_id: str
    mailbox_id: str
    mailbox_version: str | None
    values: dict[str, Any]


@dataclass(frozen=True)
class Update:
    """Write the merged fields to either side (either patch may be empty) and advance the link."""

    link: LinkRow
    crm_patch: dict[str, Any]
    mailbox_patch: dict[str, Any]
    crm_after: dict[str, Any]
    mailbox_after: dict[str, Any]
    crm_version: str | None
    mailbox_version: str | None
    conflicts: list[tuple[str, Any, Any, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class DeleteMailbox:
    """The CRM record is gone or left the filter: remove the mailbox copy (CRM untouched)."""

    link: LinkRow
    quiet: bool
    reason: str


@dataclass(frozen=True)
class Untrack:
    """The mailbox copy was deleted: keep the CRM record, stop syncing it (Dynamics' rule)."""

    link: LinkRow


@dataclass(frozen=True)
class DropLink:
    """Both sides are gone (or the copy is gone and the record left the filter)."""

    link: LinkRow


Action = CreateMailbox | CreateCrm | Update | DeleteMailbox | Untrack | DropLink


def action_crm_id(action: Action) -> str:
    if isinstance(action, CreateMailbox | CreateCrm):
        return action.crm_id
    return action.link.crm_id


# --- the plan ----------------------------------------------------------------------------------


def plan(
    kind: Kind,
    links: list[LinkRow],
    crm: ChangeSet,
    mailbox: ChangeSet,
    settings: EngineSettings,
    now: datetime | None = None,
    refilter: bool = False,
) -> list[Action]:
    """Decide what to do for every touched record; at most one action per link or record.

    `refilter`: the filters changed since the last run (every linked record is re-judged).
    """
    now = now or settings.now()
    filters = settings.filters_for(kind.name, kind.default_filters)
    overrides = settings.directions.get(kind.name)

    def wanted(row: Upsert) -> bool:
        return kind.crm_accepts(row.fields) and in_filter(
            row.fields, filters, settings.me, now, settings.timezone
        )

    by_crm = {link.crm_id: link for link in links}
    by_mailbox = {link.mailbox_id: link for link in links if link.mailbox_id}
    crm_deleted = set(crm.deleted)
    mailbox_deleted = set(mailbox.deleted)
    if crm.full:
        crm_deleted |= {lk.crm_id for lk in links if lk.crm_id not in crm.upserts}
    if mailbox.full:
        mailbox_deleted |= {
            lk.mailbox_id for lk in links if lk.mailbox_id and lk.mailbox_id not in mailbox.upserts
        }

    # Mailbox items of ours without a link (a crash after the create, a reinstall, a move).
    adopted: dict[str, Upsert] = {}
    for item in mailbox.upserts.values():
        if item.id in by_mailbox or not item.key or not kind.mailbox_accepts(item.fields):
            continue
        link = by_crm.get(item.key)
        if link is None:
            adopted.setdefault(item.key, item)
        elif link.mailbox_id in mailbox_deleted or link.mailbox_id is None:
            # The item moved (its id changed) or the link was waiting for it: follow it.
            if link.mailbox_id:
                mailbox_deleted.discard(link.mailbox_id)
                by_mailbox.pop(link.mailbox_id, None)
            moved = replace(link, mailbox_id=item.id, mailbox_fingerprint=None)
            if link.state == UNTRACKED:
                moved = replace(moved, state="synced", base=None)
            by_crm[link.crm_id] = moved
            by_mailbox[item.id] = moved

    # Tracked items without a key may be the source of a CRM record made earlier (reinstall).
    derived: dict[str, Upsert] = {
        crm_key_for(item.id): item
        for item in mailbox.upserts.values()
        if item.id not in by_mailbox
        and not item.key
        and kind.mailbox_accepts(item.fields)
        and is_tracked(item.fields)
    }

    actions: list[Action] = []
    done: set[str] = set()

    def merge_link(link: LinkRow, c: Upsert | None, m: Upsert | None, origin: str) -> None:
        base = link.base or {}
        crm_now = kind.crm_values(c.fields) if c else dict(base.get("crm") or {})
        mailbox_now = kind.mailbox_values(m.fields) if m else dict(base.get("mailbox") or {})
        if link.base is None:
            # No common ancestor: the side the record came from is the truth.
            base = (
                {"crm": {}, "mailbox": mailbox_now}
                if origin == "crm"
                else {"crm": crm_now, "mailbox": {}}
            )
        crm_fp, mailbox_fp = kind.fingerprint(crm_now), kind.fingerprint(mailbox_now)
        if (
            link.base is not None
            and link.state == SYNCED
            and crm_fp == link.crm_fingerprint
            and mailbox_fp == link.mailbox_fingerprint
            and (c is None or c.version == link.crm_version)
            and (m is None or m.version == link.mailbox_version)
        ):
            return  # nothing changed (or only our own write echoing back)
        merged = merge(
            kind,
            crm_now,
            mailbox_now,
            base.get("crm") or {},
            base.get("mailbox") or {},
            overrides,
            settings.conflict_policy,
        )
        actions.append(
            Update(
                link=link,
                crm_patch=merged.crm_patch,
                mailbox_patch=merged.mailbox_patch,
                crm_after=merged.crm_after,
                mailbox_after=merged.mailbox_after,
                crm_version=c.version if c else link.crm_version,
                mailbox_version=m.version if m else link.mailbox_version,
                conflicts=merged.conflicts,
            )
        )

    def decide(link: LinkRow) -> None:
        if link.crm_id in done:
            return
        done.add(link.crm_id)
        c = crm.upserts.get(link.crm_id)
        c_gone = link.crm_id in crm_deleted and c is None
        m = mailbox.upserts.get(link.mailbox_id) if link.mailbox_id else None
        m_gone = link.mailbox_id is None or (link.mailbox_id in mailbox_deleted and m is None)
        if link.state == UNTRACKED:
            if c_gone:
                actions.append(DropLink(link))
            return
        if link.state == PENDING_CRM:
            if m_gone:
                # The item is gone; a CRM record made from it stays (never delete in the CRM).
                actions.append(DropLink(link) if c is None else Untrack(link))
            elif c is None:
                if m is not None:
                    values = kind.mailbox_values(m.fields)
                    actions.append(CreateCrm(link.crm_id, m.id, m.version, values))
            else:
                merge_link(link, c, m, origin="mailbox")
            return
        if link.state == DELETING and m_gone:
            # Our own removal went through before the run died: not the user untracking.
            if c is not None and wanted(c):
                actions.append(CreateMailbox(c.id, c.version, kind.crm_values(c.fields)))
            else:
                actions.append(DropLink(link))
        elif c_gone and m_gone:
            actions.append(DropLink(link))
        elif c_gone:
            quiet = not kind.is_meeting
            actions.append(DeleteMailbox(link, quiet=quiet, reason="deleted in the CRM"))
        elif m_gone:
            if c is not None and not wanted(c):
                actions.append(DropLink(link))
            else:
                actions.append(Untrack(link))
        elif (
            c is not None
            and not wanted(c)
            and (refilter or c.version != link.crm_version or link.state == DELETING)
        ):
            # Left the filter by a change in the CRM (not our own write) or a new filter.
            actions.append(
                DeleteMailbox(link, quiet=settings.quiet_meeting_removal, reason="left the filter")
            )
        else:
            merge_link(link, c, m, origin="crm")

    for crm_id in list(crm.upserts) + list(crm_deleted):
        link = by_crm.get(crm_id)
        if link is not None:
            decide(link)
    for mailbox_id in list(mailbox.upserts) + list(mailbox_deleted):
        link = by_mailbox.get(mailbox_id)
        if link is not None:
            decide(link)
    for link in list(by_crm.values()):
        known = link.crm_id in crm.upserts or link.crm_id in crm_deleted
        if link.state == PENDING_CRM and link.crm_id not in done and known:
            decide(link)

    # CRM records without a link.
    for c in crm.upserts.values():
        if c.id in by_crm or not wanted(c):
            continue
        if c.id in adopted:
            item = adopted.pop(c.id)
            link = LinkRow(crm_id=c.id, mailbox_id=item.id)
            done.add(c.id)
            merge_link(link, c, item, origin="crm")
        elif c.id in derived:
            item = derived.pop(c.id)
            done.add(c.id)
            merge_link(LinkRow(crm_id=c.id, mailbox_id=item.id), c, item, origin="mailbox")
        else:
            actions.append(CreateMailbox(c.id, c.version, kind.crm_values(c.fields)))

    # Mailbox items without a link.
    for item in mailbox.upserts.values():
        if item.id in by_mailbox or not kind.mailbox_accepts(item.fields):
            continue
        if item.key:
            if adopted.get(item.key) is not item:
                continue  # a second copy of a linked record: left alone
            record = crm.upserts.get(item.key)
            if item.key in crm.deleted or (record is not None and not wanted(record)):
                link = LinkRow(crm_id=item.key, mailbox_id=item.id, mailbox_version=item.version)
                actions.append(DeleteMailbox(link, quiet=True, reason="orphan copy"))
            continue
        if is_tracked(item.fields):
            key = crm_key_for(item.id)
            if key in by_crm or derived.get(key) is not item:
                continue
            values = kind.mailbox_values(item.fields)
            actions.append(CreateCrm(key, item.id, item.version, values))
    return actions


def keys_to_read(kind: Kind, links: list[LinkRow], crm: ChangeSet, mailbox: ChangeSet) -> list[str]:
    """CRM ids the plan needs in full that the changes did not bring: the records behind our
    unlinked mailbox items (a crash after a create, a reinstall). Items the kind does not take
    (the other calendar kind's) are left out: the plan ignores them, and their keys are ids of
    another entity set."""
    linked = {lk.mailbox_id for lk in links if lk.mailbox_id}
    known = set(crm.upserts) | crm.deleted
    return sorted(
        {
            item.key
            for item in mailbox.upserts.values()
            if item.key
            and item.id not in linked
            and item.key not in known
            and kind.mailbox_accepts(item.fields)
        }
    )
