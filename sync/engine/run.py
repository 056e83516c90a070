"""One kind's sync run: read both sides' changes, plan, apply in batches, save the tokens.

Tokens are saved last, once every change they cover is applied or parked, so a run that dies
anywhere is simply repeated from the old tokens; the links make the repeat harmless. A full
read that lists nothing while links exist stops the run with an alert (an emptied folder or a
wrong account must not delete everything on the other side).

A kind's first copy into an empty mailbox folder (no links yet) is planned and applied one CRM
page at a time (`_stream_copies`), so its memory does not grow with the CRM's size.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping

from sync.engine.apply import KindResult, Progress, apply_actions
from sync.engine.filters import resolve_value
from sync.engine.options import EngineSettings
from sync.engine.plan import ChangeSet, copies_to_read, crm_key_for, keys_to_read, plan
from sync.engine.state import (
    DELETING,
    MADE_SIDE,
    PENDING_CRM,
    UNTRACKED,
    Batch,
    LinkRow,
    LinkStore,
)
from sync.kinds.base import Kind
from sync.messages import N_, NP_, kind_word, to_json
from sync.sides import (
    Deleted,
    KnownVersions,
    RunScoped,
    SelectsColumns,
    Side,
    SideError,
    TokenExpired,
    UntrackMarks,
    Upsert,
)

log = logging.getLogger(__name__)

FILTER_SIDE = "filter"
"""Pseudo-side under which the fingerprint of the filters in force is kept with the tokens."""
TOUCHED_SIDE = "touched"
"""Pseudo-side holding (JSON) the CRM ids another kind saw changed through their child rows."""
MARKS_SIDE = "untracked-marks"
"""Pseudo-side: the fingerprint of the untracked marks the mailbox holds (None: not read yet)."""


def read_all(
    side: Side, kind: str, token: str | None, known: KnownVersions | None = None
) -> tuple[ChangeSet, str | None]:
    """Every change since `token` (a full read when None or refused), and the token to save.
    `known`: the records held at the reported version may be left out (see Side.read_changes).

    A full read is paged too, and its paging links can expire on the way (Graph answers a
    stale next link 410 like a stale delta link): it starts again once from the top, nothing
    of the broken read kept."""
    if token is not None:
        try:
            return _read(side, kind, token, known)
        except TokenExpired:
            log.info("%s refused the %s token: reading everything again", side.name, kind)
    try:
        return _read(side, kind, None, known)
    except TokenExpired:
        log.info("%s expired the full read of %s while paging: once more", side.name, kind)
        return _read(side, kind, None, known)


def _read(
    side: Side, kind: str, token: str | None, known: KnownVersions | None
) -> tuple[ChangeSet, str | None]:
    changes = ChangeSet(full=token is None)
    new_token = token
    for page in side.read_changes(kind, token, known):
        for change in page.changes:
            changes.add(change)
        if page.token is not None:
            new_token = page.token
    return changes, new_token


def begin_run(*sides: Side) -> None:
    """Call before the kinds of one run: a side may keep a read for the run's other kinds, and
    never beyond it (a quiet run right after another must still ask the server)."""
    for side in sides:
        if isinstance(side, RunScoped):
            side.begin_run()


def filters_fingerprint(kind: Kind, settings: EngineSettings) -> str:
    """The filters in force, with "me" and "today±N days" resolved: when the day changes, a
    filter like "due in the next 7 days" takes other rows although none of them changed, so
    its fingerprint changes too and the run re-judges every row (once a day)."""
    now = settings.now()
    filters = [
        [
            {**c, "value": resolve_value(c.get("value"), settings.me, now, settings.timezone)}
            for c in conditions
        ]
        for conditions in settings.filters_for(kind.name, kind.default_filters)
    ]
    text = json.dumps([filters, settings.me], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def sync_kind(
    kind: Kind,
    crm: Side,
    mailbox: Side,
    store: LinkStore,
    settings: EngineSettings,
    progress: Progress | None = None,
) -> KindResult:
    """Sync one kind both ways; see the module docstring for the order of things."""
    result = KindResult(kind.name)
    filter_fp = filters_fingerprint(kind, settings)
    crm_token = store.get_token(kind.name, "crm")
    stored_filter = store.get_token(kind.name, FILTER_SIDE)
    refilter = stored_filter != filter_fp
    if refilter:
        crm_token = None  # the filter changed: which records belong is known only from all rows
        if stored_filter is not None:
            # Until this run completes, the links match neither filter: forget the old one so
            # that going back to it still re-judges every record.
            store.save_tokens(kind.name, {FILTER_SIDE: None})
    mailbox_token = store.get_token(kind.name, "mailbox")
    if progress:
        progress(0, 0, "read")
    _import_marks(kind, mailbox, store, settings)
    if kind.crm_reads_only_mapped and isinstance(crm, SelectsColumns):
        filters = settings.filters_for(kind.name, kind.default_filters)
        crm.select_columns(kind.crm_kind, kind.crm_columns(filters))
    # Our own writes come back in the mailbox's changes: a settled link already holds them at
    # that ChangeKey, so the side need not read them in full (the run after a large one).
    reported: set[str] = set()

    def held(versions: Mapping[str, str]) -> set[str]:
        reported.update(versions)
        return store.mailbox_items_held(kind.name, versions)

    mailbox_read: tuple[ChangeSet, str | None] | None = None
    if _first_copy(kind, store, crm_token):
        mailbox_read = read_all(mailbox, kind.mailbox_kind, mailbox_token, held)
        if not mailbox_read[0].upserts and not mailbox_read[0].deleted:
            streamed = _stream_copies(kind, crm, mailbox, store, settings, progress, result)
            if streamed is not None:
                tokens = {"crm": streamed, "mailbox": mailbox_read[1], FILTER_SIDE: filter_fp}
                return _finish(kind, mailbox, store, result, tokens, touched=False)
            return result  # stopped part-way: the next run reads both sides with the links
    crm_changes, crm_new = read_all(crm, kind.crm_kind, crm_token)
    mailbox_changes, mailbox_new = mailbox_read or read_all(
        mailbox, kind.mailbox_kind, mailbox_token, held
    )
    made_before = json.loads(store.get_token(kind.name, MADE_SIDE) or "[]")
    if made_before and not mailbox_changes.full:
        _check_made(mailbox, kind.mailbox_kind, made_before, reported, mailbox_changes)
    if kind.crm_reads_by_id and crm_changes.upserts:
        _reread(crm, kind, crm_changes, settings.read_batch)
    if kind.crm_parent is not None and kind.parent_kind:
        _touch_parents(kind, store, crm_changes)
    touched = json.loads(store.get_token(kind.name, TOUCHED_SIDE) or "[]")
    if touched:
        _read_touched(crm, kind.crm_kind, touched, crm_changes, settings.read_batch)
    parked = {p.crm_id: p for p in store.parked_items(kind.name)}
    links = _relevant_links(kind, store, crm_changes, mailbox_changes, set(parked))
    _find_other_copies(kind, mailbox, links, mailbox_changes)

    emptied = _emptied_side(kind, store, crm_changes, mailbox_changes, settings)
    if emptied is not None:
        result.stopped = "side-emptied"
        side = N_("CRM") if emptied == "CRM" else N_("mailbox") if emptied == "mailbox" else emptied
        message = NP_(
            "The %(side)s lists no %(kind)s while %(num)d is linked; nothing was changed. If "
            "this is intended, confirm it to let the sync go on.",
            "The %(side)s lists no %(kind)s while %(num)d are linked; nothing was changed. If "
            "this is intended, confirm it to let the sync go on.",
            store.count_links(kind.name),
            side=side,
            kind=kind_word(kind.name),
        )
        result.message, result.message_msg = str(message), to_json(message)
        store.alert("side-emptied",
                    N_("The %(side)s looks empty (%(kind)s)", side=side, kind=kind_word(kind.name)),
                    message, subject=kind.name)  # fmt: skip
        return result

    # Records the plan needs that the changes did not bring.
    now = settings.now()
    # Links whose last write failed or is unconfirmed are decided only with both sides in
    # hand: when due, or as soon as either side changes again (a decision on half the facts
    # could settle the link and drop what the failed write was carrying).
    by_mailbox = {lk.mailbox_id: lk for lk in links if lk.mailbox_id}
    touched = set(crm_changes.upserts) | crm_changes.deleted
    touched |= {
        by_mailbox[m].crm_id
        for m in (*mailbox_changes.upserts, *mailbox_changes.deleted)
        if m in by_mailbox
    }
    unsettled = {lk.crm_id for lk in links if lk.state in (PENDING_CRM, DELETING)}
    recheck = {
        crm_id
        for crm_id in set(parked) | unsettled
        if crm_id in touched or crm_id not in parked or parked[crm_id].next_attempt_at <= now
    }
    by_crm = {lk.crm_id: lk for lk in links}
    crm_ids = set(recheck)
    mailbox_ids: set[str] = set()
    for crm_id in recheck:
        for mailbox_id in (
            parked[crm_id].mailbox_id if crm_id in parked else None,
            by_crm[crm_id].mailbox_id if crm_id in by_crm else None,
        ):
            if mailbox_id:
                mailbox_ids.add(mailbox_id)
    crm_ids |= set(keys_to_read(kind, links, crm_changes, mailbox_changes))
    mailbox_ids |= set(copies_to_read(kind, links, mailbox_changes))
    _read_into(crm, kind.crm_kind, crm_ids, crm_changes)
    _read_into(mailbox, kind.mailbox_kind, mailbox_ids, mailbox_changes)

    actions = plan(kind, links, crm_changes, mailbox_changes, settings, now, refilter=refilter)
    if progress:
        progress(0, len(actions), "apply")
    apply_actions(kind, actions, crm, mailbox, store, settings, result, progress)
    tokens = {"crm": crm_new, "mailbox": mailbox_new, FILTER_SIDE: filter_fp}
    return _finish(kind, mailbox, store, result, tokens, touched=bool(touched))


def _finish(
    kind: Kind,
    mailbox: Side,
    store: LinkStore,
    result: KindResult,
    tokens: dict[str, str | None],
    touched: bool,
) -> KindResult:
    """Save the run's tokens (last: every change they cover is applied or parked)."""
    # Those checked above are settled; of this run's, the items it linked from its read are
    # before the position saved now, those it made after it: they stay for the next run.
    made = result.made_in_mailbox
    tokens[MADE_SIDE] = json.dumps(made) if made else None
    if touched:
        tokens[TOUCHED_SIDE] = None
    store.save_tokens(kind.name, tokens)
    store.resolve_alert("side-emptied", kind.name)
    _export_marks(kind, mailbox, store)
    return result


def _first_copy(kind: Kind, store: LinkStore, crm_token: str | None) -> bool:
    """Whether this run may only be copying the CRM's records into the mailbox: the kind's
    first full read, with no link (untracked ones included: an untracked record must not come
    back, and its link goes when the record does), nothing parked and no earlier run's creates
    to check (and a kind whose records stand alone: no parents, children or re-reads)."""
    return (
        crm_token is None
        and kind.crm_reads_only_mapped
        and store.count_links(kind.name) == 0
        and not store.untracked_ids(kind.name)  # the user's untracked records stay out
        and not store.parked_items(kind.name)
        and not store.get_token(kind.name, MADE_SIDE)
    )


def _stream_copies(
    kind: Kind,
    crm: Side,
    mailbox: Side,
    store: LinkStore,
    settings: EngineSettings,
    progress: Progress | None,
    result: KindResult,
) -> str | None:
    """The first copy of a kind into an empty mailbox folder, one CRM page at a time: with no
    link and no mailbox item, each record's decision is its own (a create when the filters
    take it), so planning and applying page by page decides exactly what planning the whole
    read would, holding one page instead of the kind (100,000 contacts: issue 13). Returns
    the CRM's token, or None when the read stopped part-way (a paging link expired): what was
    made is linked, and the next run reads both sides in full as any run with links does."""
    nothing = ChangeSet(full=True)
    done = 0
    token: str | None = None
    try:
        for page in crm.read_changes(kind.crm_kind, None):
            changes = ChangeSet()
            for change in page.changes:
                changes.add(change)
            if page.token is not None:
                token = page.token
            actions = plan(kind, [], changes, nothing, settings, settings.now())
            offset = done

            def shifted(n: int, total: int, phase: str, offset: int = offset) -> None:
                if progress is not None:
                    progress(offset + n, offset + total, phase)

            shifted(0, len(actions), "apply")
            apply_actions(kind, actions, crm, mailbox, store, settings, result, shifted)
            done += len(actions)
    except TokenExpired:
        log.info("the first read of %s expired while paging: the next run goes on", kind.name)
        return None
    return token


def _marks_fingerprint(crm_ids: set[str]) -> str:
    return hashlib.sha256("\n".join(sorted(crm_ids)).encode()).hexdigest()[:32]


def _import_marks(kind: Kind, mailbox: Side, store: LinkStore, settings: EngineSettings) -> None:
    """On an install's first run of a kind, the records the user untracked in this mailbox
    (maybe from another install) become untracked links, so their copies do not come back."""
    if not isinstance(mailbox, UntrackMarks) or store.get_token(kind.name, MARKS_SIDE):
        return
    marked = mailbox.load_untracked(kind.name)
    known = {lk.crm_id for lk in store.find_links(kind.name, marked, ())}
    new = [LinkRow(crm_id, None, state=UNTRACKED) for crm_id in sorted(marked - known)]
    if new:
        store.commit_batch(kind.name, Batch(upserts=new), settings.now())
    store.save_tokens(kind.name, {MARKS_SIDE: _marks_fingerprint(marked)})


def _export_marks(kind: Kind, mailbox: Side, store: LinkStore) -> None:
    """Write the untracked marks to the mailbox when they changed. Last and forgiving: a failed
    write is tried again next run (the fingerprint is saved only after it)."""
    if not isinstance(mailbox, UntrackMarks):
        return
    untracked = store.untracked_ids(kind.name)
    fingerprint = _marks_fingerprint(untracked)
    if fingerprint == store.get_token(kind.name, MARKS_SIDE):
        return
    try:
        mailbox.save_untracked(kind.name, untracked)
    except SideError as failed:
        log.warning("could not record untracked %s in the mailbox: %s", kind.name, failed)
        return
    store.save_tokens(kind.name, {MARKS_SIDE: fingerprint})


def _check_made(
    side: Side, kind: str, made: list[str], reported: set[str], changes: ChangeSet
) -> None:
    """The mailbox token a run saves is the one read before its creates, and a change feed
    reports nothing for an item made and deleted after its position (Exchange's SyncFolderItems
    does not). So the items earlier runs made that this read did not mention are read by id;
    those missing were deleted (by the user, straight after) and become deletions. Those found
    join the changes: one may be a copy another writer linked and this one's link replaced
    (two writers on one store), which only the plan's second-copy rules would notice."""
    seen = reported | set(changes.upserts) | changes.deleted
    unseen = [item_id for item_id in made if item_id not in seen]
    if not unseen:
        return
    found = side.read(kind, unseen)
    for item_id in unseen:
        changes.add(found[item_id] if item_id in found else Deleted(item_id))


def _find_other_copies(kind: Kind, mailbox: Side, links: list[LinkRow], changes: ChangeSet) -> None:
    """When linked copies are reported deleted, another copy of the same record (another
    writer's) may remain, unreported since it did not change: looked up by key, it joins the
    changes, and the plan follows it instead of taking the deletion for the user untracking."""
    if changes.full or not changes.deleted:
        return
    keys = sorted({lk.crm_id for lk in links if lk.mailbox_id in changes.deleted})
    if not keys:
        return
    for item in mailbox.find_by_key(kind.mailbox_kind, keys).values():
        if item.id not in changes.upserts and item.id not in changes.deleted:
            changes.upserts[item.id] = item


def _touch_parents(kind: Kind, store: LinkStore, changes: ChangeSet) -> None:
    """Note the parents of changed child rows (a series whose exception row changed: the
    master's own change feed does not show it) for the parent kind's next run."""
    assert kind.crm_parent is not None
    parents = {p for u in changes.upserts.values() if (p := kind.crm_parent(u.fields))}
    if not parents:
        return
    known = set(json.loads(store.get_token(kind.parent_kind, TOUCHED_SIDE) or "[]"))
    if parents - known:
        store.save_tokens(kind.parent_kind, {TOUCHED_SIDE: json.dumps(sorted(known | parents))})


def _read_touched(side: Side, kind: str, ids: list[str], changes: ChangeSet, size: int) -> None:
    """Records touched through their child rows are read as if they had changed."""
    wanted = [i for i in ids if i not in changes.upserts and i not in changes.deleted]
    for start in range(0, len(wanted), max(1, size)):
        for record_id, found in side.read(kind, wanted[start : start + size]).items():
            changes.upserts[record_id] = found


def _reread(side: Side, kind: Kind, changes: ChangeSet, size: int) -> None:
    """Replace the changed rows by full reads by id (with their expanded columns). Rows the
    kind does not take (a series' instance and exception rows in `appointments`) keep their
    change-feed fields, which say whose they are; reading them in full would be wasted."""
    ids = [i for i, u in changes.upserts.items() if kind.crm_accepts(u.fields)]
    for start in range(0, len(ids), max(1, size)):
        chunk = ids[start : start + size]
        found = side.read(kind.crm_kind, chunk)
        for record_id in chunk:
            if record_id in found:
                changes.upserts[record_id] = found[record_id]
            else:
                changes.add(Deleted(record_id))


def _read_into(side: Side, kind: str, ids: set[str], changes: ChangeSet) -> None:
    wanted = sorted(i for i in ids if i not in changes.upserts and i not in changes.deleted)
    if not wanted:
        return
    found: dict[str, Upsert] = side.read(kind, wanted)
    changes.add_read(wanted, found)


def _relevant_links(
    kind: Kind, store: LinkStore, crm: ChangeSet, mailbox: ChangeSet, parked: set[str]
) -> list[LinkRow]:
    """The links this run may need: all after a full read (absence means deletion), else only
    those of touched, parked or unsettled records, so a quiet run costs nothing per link."""
    if crm.full or mailbox.full:
        return store.load_links(kind.name)
    crm_ids = set(crm.upserts) | crm.deleted | parked
    for item in mailbox.upserts.values():
        crm_ids.add(item.key if item.key else crm_key_for(item.id))
    mailbox_ids = set(mailbox.upserts) | mailbox.deleted
    found = {lk.crm_id: lk for lk in store.find_links(kind.name, crm_ids, mailbox_ids)}
    for link in store.unsettled_links(kind.name):
        found.setdefault(link.crm_id, link)
    return list(found.values())


def _emptied_side(
    kind: Kind,
    store: LinkStore,
    crm: ChangeSet,
    mailbox: ChangeSet,
    settings: EngineSettings,
) -> str | None:
    """ "CRM" or "mailbox" when a full read of it came back empty while links exist."""
    if settings.confirm_emptied:
        return None
    crm_empty = crm.full and not crm.upserts
    mailbox_empty = mailbox.full and not any(
        kind.mailbox_accepts(u.fields) for u in mailbox.upserts.values()
    )
    if not (crm_empty or mailbox_empty):
        return None
    if store.count_links(kind.name) <= settings.emptied_threshold:
        return None
    return "CRM" if crm_empty else "mailbox"
