"""Random interleavings of user edits on both sides, syncs, crashes and throttling.

After any history, one clean sync must leave both sides equal under the mapping and the
filter, links one to one, no duplicates, and nothing lost that was not deleted on purpose;
a second clean sync must then find nothing to do.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sync.engine import EngineSettings, MemoryLinkStore, sync_kind
from sync.engine.filters import in_filter
from sync.engine.state import UNTRACKED, Batch
from sync.kinds.base import Direction
from sync.kinds.contacts import CONTACTS
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.memory import Crash, MemoryCrm, MemoryMailbox
from sync.runs import open_alerts
from sync.sides import Throttled, Unavailable, WriteOp
from sync.store.base import Base
from sync.store.db import Database
from sync.store.linkstore import SqlLinkStore

ME = "user-me"
KIND = "contacts"
NAMES = st.sampled_from(["ann", "bob", "cy", "dee"])
USER_FILTER = [
    [
        {"field": "_ownerid_value", "op": "eq", "value": "me"},
        {"field": "statecode", "op": "eq", "value": 0},
        {"field": "firstname", "op": "ne", "value": "bob"},
    ]
]
START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class CrashingStore:
    """Wraps a store so that its commits count as crash points too."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.point: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit_batch(self, kind: str, batch: Batch, now: datetime) -> None:
        if self.point:
            self.point("before-commit")
        self.inner.commit_batch(kind, batch, now)
        if self.point:
            self.point("after-commit")

    def save_tokens(self, kind: str, tokens: Any) -> None:
        if self.point:
            self.point("before-tokens")
        self.inner.save_tokens(kind, tokens)


class SyncMachine(RuleBasedStateMachine):
    def make_store(self) -> Any:
        return MemoryLinkStore()

    def make_mailbox(self) -> MemoryMailbox:
        """The mailbox side (EWS-like; tests/engine/test_engine_stateful_graph.py: Graph's delta)."""
        return MemoryMailbox(page_size=3)

    @initialize()
    def setup(self) -> None:
        self.crm = MemoryCrm(me=ME, page_size=3)
        self.mailbox = self.make_mailbox()
        self.store = CrashingStore(self.make_store())
        self.now = START
        self.filters: list[Any] | None = None
        self.markers = itertools.count(1)
        self.crm_made: set[str] = set()  # markers of records the test made in the CRM
        self.crm_deleted: set[str] = set()  # markers the test deleted in the CRM
        self.mailbox_made: dict[str, str] = {}  # mailbox id → marker, made by the test
        self.mailbox_deleted: set[str] = set()  # mailbox ids the test deleted
        self.deleted_markers: set[str] = set()  # markers of any mailbox item the test deleted
        self.settling = False  # another writer ran: its second copies wait for a whole run
        for first in ("ann", "bob", "cy"):
            self.crm_create(first, active=True)
        self.mailbox_create("dee", tracked=True)
        sync_kind(CONTACTS, self.crm, self.mailbox, self.store, self.settings())

    def settings(self, **kw: Any) -> EngineSettings:
        filters = {KIND: self.filters} if self.filters is not None else {}
        return EngineSettings(me=ME, filters=filters, batch_size=2, clock=lambda: self.now, **kw)

    # --- what users do -----------------------------------------------------------------------

    def _pick(self, records: dict[str, Any], index: int) -> str | None:
        ids = sorted(records)
        return ids[index % len(ids)] if ids else None

    @rule(first=NAMES, active=st.booleans())
    def crm_create(self, first: str, active: bool) -> None:
        marker = f"m{next(self.markers)}"
        self.crm.put(
            KIND, {"firstname": first, "lastname": marker, "statecode": 0 if active else 1}
        )
        self.crm_made.add(marker)

    @rule(first=NAMES, tracked=st.booleans())
    def mailbox_create(self, first: str, tracked: bool) -> None:
        marker = f"m{next(self.markers)}"
        fields: dict[str, Any] = {"given_name": first, "surname": marker}
        if tracked:
            fields["categories"] = [TRACKED_CATEGORY]
        record = self.mailbox.put(KIND, fields)
        self.mailbox_made[record.id] = marker

    @rule(index=st.integers(0, 5), field=st.sampled_from(["firstname", "jobtitle"]), value=NAMES)
    def crm_update(self, index: int, field: str, value: str) -> None:
        record_id = self._pick(self.crm.records(KIND), index)
        if record_id:
            self.crm.edit(KIND, record_id, {field: value})

    @rule(index=st.integers(0, 5), field=st.sampled_from(["given_name", "job_title"]), value=NAMES)
    def mailbox_update(self, index: int, field: str, value: str) -> None:
        record_id = self._pick(self.mailbox.records(KIND), index)
        if record_id:
            self.mailbox.edit(KIND, record_id, {field: value})

    @rule(index=st.integers(0, 5))
    def crm_delete(self, index: int) -> None:
        record_id = self._pick(self.crm.records(KIND), index)
        if record_id:
            self.crm_deleted.add(self.crm.records(KIND)[record_id].fields["lastname"])
            self.crm.remove(KIND, record_id)

    @rule(index=st.integers(0, 5))
    def mailbox_delete(self, index: int) -> None:
        record_id = self._pick(self.mailbox.records(KIND), index)
        if record_id:
            self.mailbox_deleted.add(record_id)
            self.deleted_markers.add(self.mailbox.records(KIND)[record_id].fields["surname"])
            self.mailbox.remove(KIND, record_id)

    @rule(index=st.integers(0, 5), active=st.booleans())
    def crm_set_state(self, index: int, active: bool) -> None:
        record_id = self._pick(self.crm.records(KIND), index)
        if record_id:
            self.crm.edit(KIND, record_id, {"statecode": 0 if active else 1})

    @rule(index=st.integers(0, 5))
    def mailbox_track(self, index: int) -> None:
        record_id = self._pick(self.mailbox.records(KIND), index)
        if record_id:
            self.mailbox.edit(KIND, record_id, {"categories": [TRACKED_CATEGORY]})

    @rule(index=st.integers(0, 5), crm_value=NAMES, mailbox_value=NAMES)
    def edit_both(self, index: int, crm_value: str, mailbox_value: str) -> None:
        """The same field of one synced record changed on both sides: a conflict."""
        record_id = self._pick(self.crm.records(KIND), index)
        if record_id is None:
            return
        marker = self.crm.records(KIND)[record_id].fields["lastname"]
        self.crm.edit(KIND, record_id, {"jobtitle": crm_value})
        for item in list(self.mailbox.records(KIND).values()):
            if item.fields.get("surname") == marker:
                self.mailbox.edit(KIND, item.id, {"job_title": mailbox_value})

    @rule(index=st.integers(0, 5))
    def mailbox_delete_synced(self, index: int) -> None:
        """The user deletes a synced copy in the mailbox (untracks it)."""
        synced = {k: r for k, r in self.mailbox.records(KIND).items() if r.key}
        record_id = self._pick(synced, index)
        if record_id:
            self.mailbox_deleted.add(record_id)
            self.deleted_markers.add(self.mailbox.records(KIND)[record_id].fields["surname"])
            self.mailbox.remove(KIND, record_id)

    @rule(user_filter=st.booleans())
    def change_filter(self, user_filter: bool) -> None:
        self.filters = USER_FILTER if user_filter else None

    @rule()
    def reinstall(self) -> None:
        """A fresh install: an empty local database against the same CRM and mailbox."""
        self.store = CrashingStore(self.make_store())

    @rule(side=st.sampled_from(["crm", "mailbox"]))
    def expire_token(self, side: str) -> None:
        (self.crm if side == "crm" else self.mailbox).expire_tokens(KIND)

    # --- syncs ----------------------------------------------------------------------------------

    @rule(
        crash_at=st.one_of(st.none(), st.integers(1, 30)),
        throttle_every=st.one_of(st.none(), st.integers(2, 5)),
        concurrent=st.booleans(),
    )
    def sync(self, crash_at: int | None, throttle_every: int | None, concurrent: bool) -> None:
        counter = itertools.count(1)
        edits = itertools.count()

        def point(_where: str) -> None:
            if crash_at is not None and next(counter) == crash_at:
                raise Crash(f"died at {_where}")

        writes = itertools.count(1)

        def hook(where: str, _kind: str, op: WriteOp) -> Any:
            point(where)
            if concurrent and where == "before" and next(edits) == 0:
                # Someone edits the other side while this run writes (a stale version).
                for side, field in ((self.mailbox, "job_title"), (self.crm, "jobtitle")):
                    target = getattr(op, "id", None)
                    if target in side.records(KIND):
                        side.edit(KIND, target, {field: "concurrent"})
            if where == "before" and throttle_every and next(writes) % throttle_every == 0:
                return (
                    Throttled("slow down", retry_after=30) if throttle_every % 2 else Unavailable()
                )
            return None

        self.crm.hook = self.mailbox.hook = hook
        self.store.point = point
        try:
            result = sync_kind(CONTACTS, self.crm, self.mailbox, self.store, self.settings())
        except Crash:
            pass
        else:
            if not result.errors and not result.stopped:
                self.settling = False  # a whole run settles the copies of another writer
        finally:
            self.crm.hook = self.mailbox.hook = None
            self.store.point = None
        self.now += timedelta(minutes=1)

    @rule(at=st.integers(1, 8), shared=st.booleans())
    def sync_beside_another_writer(self, at: int, shared: bool) -> None:
        """Another writer syncs the same CRM and mailbox in the middle of this run, right
        before its `at`-th write (after the run's key lookups): a second process on the same
        data (`shared` store, as two `sync --once` did before the inter-process lock) or a
        second install (a store of its own). Copies both made are settled by later runs:
        removed, or kept and reported when both were edited (issue 14, point 1)."""
        writes = itertools.count(1)
        other_store = self.store.inner if shared else self.make_store()

        def hook(where: str, _kind: str, _op: WriteOp) -> Any:
            if where == "before" and next(writes) == at:
                self.crm.hook = self.mailbox.hook = None
                try:
                    sync_kind(CONTACTS, self.crm, self.mailbox, other_store, self.settings())
                finally:
                    self.crm.hook = self.mailbox.hook = hook
            return None

        self.crm.hook = self.mailbox.hook = hook
        try:
            sync_kind(CONTACTS, self.crm, self.mailbox, self.store, self.settings())
        finally:
            self.crm.hook = self.mailbox.hook = None
        self.settling = True
        self.now += timedelta(minutes=1)

    # --- the promises ---------------------------------------------------------------------------

    @invariant()
    def links_are_one_to_one(self) -> None:
        links = self.store.load_links(KIND)
        mailbox_ids = [lk.mailbox_id for lk in links if lk.mailbox_id]
        assert len(mailbox_ids) == len(set(mailbox_ids))

    @invariant()
    def nothing_lost_in_crm(self) -> None:
        present = {r.fields.get("lastname") for r in self.crm.records(KIND).values()}
        assert self.crm_made - self.crm_deleted <= present
        markers = [r.fields.get("lastname") for r in self.crm.records(KIND).values()]
        assert len(markers) == len(set(markers)), "duplicate in the CRM"

    def reported_copies(self) -> set[str]:
        """CRM ids whose second mailbox copy was kept and reported (both copies edited)."""
        store = self.store.inner
        if isinstance(store, SqlLinkStore):
            return {a.subject for a in open_alerts(store.database) if a.code == "second-copy"}
        return {subject for code, _t, _m, subject in store.alerts if code == "second-copy"}

    @invariant()
    def no_duplicates_in_mailbox(self) -> None:
        if self.settling:
            return
        reported = self.reported_copies()
        markers = [
            r.fields.get("surname")
            for r in self.mailbox.records(KIND).values()
            if r.key not in reported
        ]
        assert len(markers) == len(set(markers)), "duplicate in the mailbox"

    def teardown(self) -> None:
        if not hasattr(self, "crm"):
            return
        self.now += timedelta(days=2)  # every parked item is due
        result = sync_kind(CONTACTS, self.crm, self.mailbox, self.store, self.settings())
        if result.stopped == "side-emptied":  # the guard held; the user confirms it is intended
            assert result.changed == 0
            settings = self.settings(confirm_emptied=True)
            sync_kind(CONTACTS, self.crm, self.mailbox, self.store, settings)
        self.check_converged()
        self.settling = False
        self.no_duplicates_in_mailbox()
        again = sync_kind(CONTACTS, self.crm, self.mailbox, self.store, self.settings())
        assert again.changed == 0 and again.errors == 0 and again.conflicts == 0, again

    def check_converged(self) -> None:
        settings = self.settings()
        filters = settings.filters_for(KIND, CONTACTS.default_filters)
        crm_records = self.crm.records(KIND)
        items = self.mailbox.records(KIND)
        links = {lk.crm_id: lk for lk in self.store.load_links(KIND)}
        both = [f.name for f in CONTACTS.fields if f.direction is Direction.BOTH]
        for crm_id, row in crm_records.items():
            if in_filter(row.fields, filters, ME, self.now):
                assert crm_id in links, f"{row.fields} in the filter but not linked"
        for crm_id, link in links.items():
            assert crm_id in crm_records, f"link to a deleted CRM record {link}"
            if link.state == UNTRACKED:
                assert link.mailbox_id is None
                continue
            assert link.state == "synced", link
            assert link.mailbox_id in items, f"link to a missing mailbox item {link}"
            crm_values = CONTACTS.crm_values(crm_records[crm_id].fields)
            mailbox_values = CONTACTS.mailbox_values(items[link.mailbox_id].fields)
            assert {f: crm_values[f] for f in both} == {f: mailbox_values[f] for f in both}
        linked_items = {lk.mailbox_id for lk in links.values()}
        reported = self.reported_copies()
        for item_id, item in items.items():
            if item.key in reported:
                continue  # a second copy kept for the user to choose
            if item.key or TRACKED_CATEGORY in (item.fields.get("categories") or []):
                assert item_id in linked_items, f"tracked item {item.fields} not linked"
        # A mailbox item the test made and did not delete is gone only if its CRM record is.
        crm_by_marker = {r.fields.get("lastname"): r for r in crm_records.values()}
        mailbox_markers = {r.fields.get("surname") for r in items.values()}
        for item_id, marker in self.mailbox_made.items():
            if item_id in items or marker in mailbox_markers or marker in self.deleted_markers:
                continue
            row = crm_by_marker.get(marker)
            assert row is None or not in_filter(row.fields, filters, ME, self.now), marker


SyncMachine.TestCase.settings = hsettings(max_examples=300, stateful_step_count=20, deadline=None)
TestSync = SyncMachine.TestCase


class SqlSyncMachine(SyncMachine):
    """The same promises with the SQLite link store (fewer examples: it is slower)."""

    def make_store(self) -> Any:
        database = Database("sqlite://")
        Base.metadata.create_all(database.engine)
        return SqlLinkStore(database, org="org-1")


SqlSyncMachine.TestCase.settings = hsettings(max_examples=25, stateful_step_count=15, deadline=None)
TestSqlSync = SqlSyncMachine.TestCase
