"""The local database's tables, as SQLAlchemy 2 typed models.

Every time is stored in UTC (naive, see `utcnow`). JSON columns hold small structured values
(counts, filter conditions, conflicting values); nothing large lives here but links.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sync.store.base import Base, utcnow


class Setting(Base):
    """One setting of the profile (wizard choices, interval, policies) as a JSON value."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Organization(Base):
    """A Dataverse organization the user connected; at most one has role `synchronizing`."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    unique_name: Mapped[str] = mapped_column(String(200))
    friendly_name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(500))
    api_url: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(20), default="connected")
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SyncToken(Base):
    """A side's change token for one kind (delta link, sync state), saved only once applied."""

    __tablename__ = "sync_tokens"

    org: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    side: Mapped[str] = mapped_column(String(10), primary_key=True)
    token: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Link(Base):
    """One CRM record ↔ one mailbox item, with each side's version and fingerprint at last sync."""

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("org", "kind", "crm_id", name="uq_links_crm"),
        UniqueConstraint("org", "kind", "mailbox_id", name="uq_links_mailbox"),
        Index("ix_links_org_kind_state", "org", "kind", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    crm_id: Mapped[str] = mapped_column(String(100))
    mailbox_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    crm_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    mailbox_version: Mapped[str | None] = mapped_column(String(500), nullable=True)
    crm_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mailbox_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    base: Mapped[Any] = mapped_column(JSON, nullable=True)
    """The mapped values agreed at the last sync: the common base of a field-level merge."""
    state: Mapped[str] = mapped_column(String(30), default="synced")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Run(Base):
    """One run of a job (messaging sync, offline sync): when, how it ended, what it did."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(30), index=True)
    trigger: Mapped[str] = mapped_column(String(20), default="schedule")
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    outcome: Mapped[str] = mapped_column(String(20), default="running")
    """running | ok | partial | failed | skipped | interrupted (its process ended mid-run)"""
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The message in English (`status`, rows older than `message_msg`)."""
    message_msg: Mapped[Any] = mapped_column(JSON, nullable=True)
    """The same as a message id with parameters (sync.messages), translated where shown."""
    counts: Mapped[Any] = mapped_column(JSON, default=dict)
    """{kind: {"crm": {"created": n, ...}, "mailbox": {...}, "errors": n}}"""
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[Any] = mapped_column(JSON, nullable=True)
    """{kind: {phase, done, total}}: the one progress model, see sync/progress.py"""
    phase: Mapped[str | None] = mapped_column(String(100), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The process that runs it: a run whose process is gone was interrupted (sync.runs)."""
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    process_start: Mapped[str | None] = mapped_column(String(100), nullable=True)
    """When that process started (boot id and start tick where the system tells): a pid
    reused by a later process is then not taken for the run's."""


class Alert(Base):
    """Something the user should know or do (like Dynamics' mailbox alerts)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(60), index=True)
    """A stable code (e.g. `throttled`, `mailbox-method-not-set`): one open alert per code+subject."""
    subject: Mapped[str] = mapped_column(String(200), default="")
    severity: Mapped[str] = mapped_column(String(10), default="warning")
    """info | warning | error"""
    title: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    action: Mapped[str] = mapped_column(Text, default="")
    """What the user can do about it."""
    texts: Mapped[Any] = mapped_column(JSON, nullable=True)
    """Title, message and action as message ids with parameters (sync.messages), translated
    where shown: {"title": {"id", "params", ...}, ...}; the text columns keep the English."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    count: Mapped[int] = mapped_column(Integer, default=1)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ItemError(Base):
    """A single item that failed; retried with backoff, an alert after repeated failures."""

    __tablename__ = "item_errors"
    __table_args__ = (Index("ix_item_errors_due", "org", "kind", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    side: Mapped[str] = mapped_column(String(10))
    item_id: Mapped[str] = mapped_column(String(500))
    operation: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ConflictRecord(Base):
    """A field changed on both sides: both values, the one taken, and whether it was reversed."""

    __tablename__ = "conflicts"
    __table_args__ = (Index("ix_conflicts_record", "org", "kind", "crm_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    crm_id: Mapped[str] = mapped_column(String(100))
    mailbox_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    field: Mapped[str] = mapped_column(String(100))
    crm_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    mailbox_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    winner: Mapped[str] = mapped_column(String(10))
    """crm | mailbox: whose value was kept"""
    reason: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    reversed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class SyncFilter(Base):
    """A sync filter: which CRM records of a kind go to the mailbox (conditions as JSON)."""

    __tablename__ = "sync_filters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    conditions: Mapped[Any] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)


# --- offline (issue 12): rows taken offline, the queue of local changes, table metadata ----------


class OfflineRow(Base):
    """A CRM row kept for offline work: its fields now, the base snapshot it was downloaded
    with (the common ancestor of the merge on going online), its ETag, and its local state."""

    __tablename__ = "offline_rows"
    __table_args__ = (
        UniqueConstraint("org", "entity_set", "row_id", name="uq_offline_rows"),
        # id and state too: the list page (order, offset, count) reads the index alone
        Index("ix_offline_rows_title", "org", "entity_set", "title", "id", "state"),
        Index("ix_offline_rows_updated", "org", "entity_set", "updated_at", "id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org: Mapped[str] = mapped_column(String(36))
    entity_set: Mapped[str] = mapped_column(String(100))
    row_id: Mapped[str] = mapped_column(String(36))
    title: Mapped[str] = mapped_column(String(300), default="")
    """The row's primary name, lower-cased for search and sort (indexed)."""
    fields: Mapped[Any] = mapped_column(JSON, default=dict)
    base: Mapped[Any] = mapped_column(JSON, nullable=True)
    """The fields as downloaded: None for a row created offline."""
    etag: Mapped[str | None] = mapped_column(String(100), nullable=True)
    state: Mapped[str] = mapped_column(String(10), default="clean")
    """clean | created | updated | deleted (deleted rows stay until replayed)"""
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class OfflineChange(Base):
    """One queued local change, replayed in `id` order; `status` is the replay's journal:
    queued → sending (written before the call) → done / conflict / failed (after it)."""

    __tablename__ = "offline_queue"
    __table_args__ = (Index("ix_offline_queue_status", "org", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org: Mapped[str] = mapped_column(String(36))
    op: Mapped[str] = mapped_column(String(10))
    """create | update | delete"""
    entity_set: Mapped[str] = mapped_column(String(100))
    row_id: Mapped[str] = mapped_column(String(36))
    """The row's id; for a create, the GUID made here (the idempotency key)."""
    changes: Mapped[Any] = mapped_column(JSON, default=dict)
    base_etag: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class OfflineTable(Base):
    """A table taken offline: its columns (for the editor) and its change-tracking delta link."""

    __tablename__ = "offline_tables"

    org: Mapped[str] = mapped_column(String(36), primary_key=True)
    entity_set: Mapped[str] = mapped_column(String(100), primary_key=True)
    logical_name: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(100))
    """The primary id column (contactid, accountid, …)."""
    title_column: Mapped[str | None] = mapped_column(String(100), nullable=True)
    columns: Mapped[Any] = mapped_column(JSON, default=list)
    """[{name, label, type, required, options: [[value, label]], targets: [entity set]}]"""
    delta_link: Mapped[str | None] = mapped_column(Text, nullable=True)
    row_filter: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The `$filter` the rows were chosen with (kept to apply to the delta)."""
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
