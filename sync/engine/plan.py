"""The plan: a pure function from links and both sides' changes to the actions to take.

For each record touched on either side, its link (if any) gives the fingerprints and values of
the last sync; comparing each side's current fingerprint with it tells who changed, and the
field-level merge (`merge.py`) what to write. No I/O here: the run reads, the apply writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sync.engine.filters import in_filter
from sync.engine.merge import merge
from sync.engine.options import EngineSettings
from sync.engine.state import DELETING, PENDING_CRM, SYNCED, UNTRACKED, LinkRow
from sync.kinds.base import Kind, changed_later_in_mailbox, is_tracked
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


@dataclass(frozen=True)
class RemoveCopy:
    """A second mailbox copy of one CRM record (two writers at once, or a crash between them)
    that holds nothing the kept copy lacks: removed quietly; the record's link is untouched."""

    crm_id: str
    mailbox_id: str
    reason: str


@dataclass(frozen=True)
class ReportCopy:
    """A second copy changed as well as the kept one: kept, and reported for the user to
    choose (never removed with edits in it)."""

    crm_id: str
    mailbox_id: str
    title: str


Action = (
    CreateMailbox
    | CreateCrm
    | Update
    | DeleteMailbox
    | Untrack
    | DropLink
    | RemoveCopy
    | ReportCopy
)


def action_crm_id(action: Action) -> str:
    if isinstance(action, CreateMailbox | CreateCrm | RemoveCopy | ReportCopy):
        return action.crm_id
    return action.link.crm_id


RELINKED = "re-linked with no earlier sync state"
"""Said in the reason of a conflict found when a link is made again (a fresh install)."""


def relink_reason(reason: str, crm_row: Upsert | None, item: Upsert | None) -> str:
    """A conflict's reason when the two sides were joined again with no common state: says so,
    and whether the mailbox copy changed after the CRM record (its own change time)."""
    text = f"{reason}; {RELINKED}"
    later = changed_later_in_mailbox(crm_row.fields, item.fields) if crm_row and item else None
    if later is not None:
        newer, mailbox_at, crm_at = later
        text += (
            f"; the mailbox copy changed after the CRM record ({mailbox_at}, CRM {crm_at})"
            if newer
            else f"; the CRM record changed last ({crm_at}, mailbox {mailbox_at})"
        )
    return text


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
    """Decide what to do for every touched record: at most one action per link or record,
    besides the removal or report of its second copies (which come first).

    `refilter`: the filters changed since the last run (every linked record is re-judged).
    """
    now = now or settings.now()
    filters = settings.filters_for(kind.name, kind.default_filters)

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
    _second_copies(kind, mailbox, crm, by_crm, by_mailbox, adopted, crm_deleted, wanted, actions)

    def merge_link(link: LinkRow, c: Upsert | None, m: Upsert | None) -> None:
        base = link.base or {}
        crm_now = kind.crm_values(c.fields) if c else dict(base.get("crm") or {})
        mailbox_now = kind.mailbox_values(m.fields) if m else dict(base.get("mailbox") or {})
        if (
            link.base is not None
            and link.state == SYNCED
            and kind.fingerprint(crm_now) == link.crm_fingerprint
            and kind.fingerprint(mailbox_now) == link.mailbox_fingerprint
            and (c is None or c.version == link.crm_version)
            and (m is None or m.version == link.mailbox_version)
        ):
            return  # nothing changed (or only our own write echoing back)
        actions.append(
            join(
                kind,
                link,
                crm_now,
                mailbox_now,
                c.version if c else link.crm_version,
                m.version if m else link.mailbox_version,
                settings,
                c,
                m,
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
                merge_link(link, c, m)
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
            merge_link(link, c, m)

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
            merge_link(link, c, item)
        elif c.id in derived:
            item = derived.pop(c.id)
            done.add(c.id)
            merge_link(LinkRow(crm_id=c.id, mailbox_id=item.id), c, item)
        else:
            actions.append(CreateMailbox(c.id, c.version, kind.crm_values(c.fields)))

    # Mailbox items without a link.
    for item in mailbox.upserts.values():
        if item.id in by_mailbox or not kind.mailbox_accepts(item.fields):
            continue
        if item.key:
            if adopted.get(item.key) is not item:
                continue  # a second copy: decided by _second_copies
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


def join(
    kind: Kind,
    link: LinkRow,
    crm_now: dict[str, Any],
    mailbox_now: dict[str, Any],
    crm_version: str | None,
    mailbox_version: str | None,
    settings: EngineSettings,
    crm_row: Upsert | None = None,
    item: Upsert | None = None,
) -> Update:
    """The update that brings a linked record and its copy in step (canonical values).

    With the link's base, a three-way merge. Without one (joined again: a fresh install, a
    copy found by its key), neither side is known to be the older, so where they differ both
    count as changed: the field's direction or the policy decides, and the decision is
    recorded as a conflict the user can reverse, saying which side changed last when both
    rows tell (`crm_row`, `item`): never a silent overwrite."""
    base = link.base or {"crm": {}, "mailbox": {}}
    merged = merge(
        kind,
        crm_now,
        mailbox_now,
        base.get("crm") or {},
        base.get("mailbox") or {},
        settings.directions.get(kind.name),
        settings.conflict_policy,
    )
    conflicts = merged.conflicts
    if link.base is None:
        conflicts = [
            (n, cv, mv, w, relink_reason(r, crm_row, item)) for n, cv, mv, w, r in conflicts
        ]
    return Update(
        link=link,
        crm_patch=merged.crm_patch,
        mailbox_patch=merged.mailbox_patch,
        crm_after=merged.crm_after,
        mailbox_after=merged.mailbox_after,
        crm_version=crm_version,
        mailbox_version=mailbox_version,
        conflicts=conflicts,
    )


def _second_copies(
    kind: Kind,
    mailbox: ChangeSet,
    crm: ChangeSet,
    by_crm: dict[str, LinkRow],
    by_mailbox: dict[str, LinkRow],
    adopted: dict[str, Upsert],
    crm_deleted: set[str],
    wanted: Callable[[Upsert], bool],
    actions: list[Action],
) -> None:
    """Unlinked items carrying the key of a record that has a linked (or adopted) copy: two
    writers made one copy each, or a run died between its create and its link. One copy stays
    linked; a copy equal to the kept one, or still as last synced, is removed; a copy with the
    edits while the kept one is as last synced takes the link (its edits then flow as usual);
    two copies both changed are both kept and reported. `by_crm`, `by_mailbox` and `adopted`
    are updated in place when the link moves."""
    removed: set[str] = set()
    for item in list(mailbox.upserts.values()):
        key = item.key
        if not key or item.id in by_mailbox or not kind.mailbox_accepts(item.fields):
            continue
        if item.id in removed:
            continue  # the copy an edited one replaced
        if adopted.get(key) is item or (key not in by_crm and key not in adopted):
            continue  # the one copy (adopted or followed), or a copy of an unlinked record
        record = crm.upserts.get(key)
        if (key in crm_deleted and record is None) or (record is not None and not wanted(record)):
            actions.append(RemoveCopy(key, item.id, "a copy of a record gone from the sync"))
            continue
        link = by_crm.get(key)
        kept_id = link.mailbox_id if link is not None else adopted[key].id
        kept = mailbox.upserts.get(kept_id) if kept_id else None
        if kept is None:
            actions.append(ReportCopy(key, item.id, kind.title(kind.mailbox_values(item.fields))))
            continue
        copy_fp = kind.fingerprint(kind.mailbox_values(item.fields))
        kept_fp = kind.fingerprint(kind.mailbox_values(kept.fields))
        if link is not None and link.base is not None:
            synced_fp: str | None = kind.fingerprint(link.base.get("mailbox") or {})
        elif record is not None:
            synced_fp = kind.fingerprint(kind.crm_values(record.fields))
        else:
            synced_fp = None
        if copy_fp == kept_fp and item.id < kept.id:
            # Equal copies: the one with the lowest id stays, whichever writer decides (two
            # installs settling the same pair must not remove one copy each).
            actions.append(RemoveCopy(key, kept.id, "a second copy"))
            removed.add(kept.id)
            _move(key, kept, item, link, by_crm, by_mailbox, adopted)
        elif copy_fp in (kept_fp, synced_fp):
            actions.append(RemoveCopy(key, item.id, "a second copy"))
        elif kept_fp == synced_fp:
            # The kept copy is as last synced; this one has the user's edits: it takes over.
            actions.append(RemoveCopy(key, kept.id, "a second copy, replaced by the edited one"))
            removed.add(kept.id)
            _move(key, kept, item, link, by_crm, by_mailbox, adopted)
        else:
            actions.append(ReportCopy(key, item.id, kind.title(kind.mailbox_values(item.fields))))


def _move(
    key: str,
    old: Upsert,
    new: Upsert,
    link: LinkRow | None,
    by_crm: dict[str, LinkRow],
    by_mailbox: dict[str, LinkRow],
    adopted: dict[str, Upsert],
) -> None:
    """The record's link (or adoption) passes from copy `old` to copy `new`."""
    if link is None:
        adopted[key] = new
        return
    moved = replace(link, mailbox_id=new.id)
    by_mailbox.pop(old.id, None)
    by_crm[key] = by_mailbox[new.id] = moved


def copies_to_read(kind: Kind, links: list[LinkRow], mailbox: ChangeSet) -> list[str]:
    """Mailbox ids the plan needs to judge second copies: the linked copy of every record
    that has an unlinked copy among the changes (an incremental read may not bring it)."""
    by_crm = {lk.crm_id: lk for lk in links if lk.mailbox_id}
    linked = {lk.mailbox_id for lk in by_crm.values()}
    return sorted(
        {
            mailbox_id
            for item in mailbox.upserts.values()
            if item.key
            and item.id not in linked
            and item.key in by_crm
            and kind.mailbox_accepts(item.fields)
            and (mailbox_id := by_crm[item.key].mailbox_id)
            and mailbox_id not in mailbox.upserts
            and mailbox_id not in mailbox.deleted
        }
    )


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
