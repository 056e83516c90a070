"""The engine's `LinkStore` over the local database: links, tokens, parked items, conflicts.

Each `commit_batch` is one transaction (SQLite WAL, synchronous=FULL), so a batch's links and
its parked items reach the disk together before the next batch writes anything remote.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select

from sync.engine.state import (
    ALERT_AFTER,
    MADE_SIDE,
    SYNCED,
    UNSETTLED,
    UNTRACKED,
    Batch,
    ConflictRow,
    LinkRow,
    ParkedItem,
    add_made,
    backoff,
)
from sync.messages import N_, Msg, kind_word
from sync.runs import raise_alert, resolve_alerts
from sync.store.base import utcnow
from sync.store.db import Database
from sync.store.models import ConflictRecord, ItemError, Link, SyncToken

CHUNK = 500
STORE_ALERT_ACTIONS: dict[str, Msg] = {
    "side-emptied": N_(
        "Check the account and folder; if it is intended, confirm on the Alerts page."
    ),
    "item-failed": N_("It is retried automatically; see the item's error for details."),
    "second-copy": N_("Delete, in the mailbox, the copy you do not want to keep."),
}
"""What the user can do about each alert the engine raises."""
"""Ids per IN (…) clause, well below SQLite's variable limit."""


def _naive(moment: datetime) -> datetime:
    """Stored times are naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _row(link: Link) -> LinkRow:
    return LinkRow(
        crm_id=link.crm_id,
        mailbox_id=link.mailbox_id,
        crm_version=link.crm_version,
        mailbox_version=link.mailbox_version,
        crm_fingerprint=link.crm_fingerprint,
        mailbox_fingerprint=link.mailbox_fingerprint,
        base=link.base,
        state=link.state,
    )


def conflict_row(record: ConflictRecord) -> ConflictRow:
    """A stored conflict as the engine sees it."""
    return ConflictRow(
        crm_id=record.crm_id,
        mailbox_id=record.mailbox_id,
        field=record.field,
        crm_value=record.crm_value,
        mailbox_value=record.mailbox_value,
        winner=record.winner,
        reason=record.reason,
        title=record.title,
        id=record.id,
        reversed=record.reversed_at is not None,
    )


class SqlLinkStore:
    """The LinkStore of one synchronizing organization (`org`) in the local database."""

    def __init__(self, database: Database, org: str, alert_after: int = ALERT_AFTER) -> None:
        self.database = database
        self.org = org
        self.alert_after = alert_after

    def load_links(self, kind: str) -> list[LinkRow]:
        with self.database.session() as session:
            query = select(Link).where(Link.org == self.org, Link.kind == kind)
            return [_row(link) for link in session.scalars(query)]

    def find_links(
        self, kind: str, crm_ids: Collection[str], mailbox_ids: Collection[str]
    ) -> list[LinkRow]:
        found: dict[str, LinkRow] = {}
        with self.database.session() as session:
            for column, values in ((Link.crm_id, sorted(crm_ids)),
                                   (Link.mailbox_id, sorted(mailbox_ids))):  # fmt: skip
                for start in range(0, len(values), CHUNK):
                    query = select(Link).where(
                        Link.org == self.org,
                        Link.kind == kind,
                        column.in_(values[start : start + CHUNK]),
                    )
                    for link in session.scalars(query):
                        found.setdefault(link.crm_id, _row(link))
        return list(found.values())

    def mailbox_items_held(self, kind: str, versions: Mapping[str, str]) -> set[str]:
        ids = sorted(versions)
        held: set[str] = set()
        with self.database.session() as session:
            for start in range(0, len(ids), CHUNK):
                query = select(Link.mailbox_id, Link.mailbox_version).where(
                    Link.org == self.org,
                    Link.kind == kind,
                    Link.state == SYNCED,
                    Link.mailbox_id.in_(ids[start : start + CHUNK]),
                )
                held.update(i for i, v in session.execute(query) if i and v == versions[i])
        return held

    def unsettled_links(self, kind: str) -> list[LinkRow]:
        with self.database.session() as session:
            query = select(Link).where(
                Link.org == self.org, Link.kind == kind, Link.state.in_(UNSETTLED)
            )
            return [_row(link) for link in session.scalars(query)]

    def count_links(self, kind: str) -> int:
        with self.database.session() as session:
            query = (
                select(func.count())
                .select_from(Link)
                .where(Link.org == self.org, Link.kind == kind, Link.state != UNTRACKED)
            )
            return int(session.scalar(query) or 0)

    def untracked_ids(self, kind: str) -> set[str]:
        with self.database.session() as session:
            query = select(Link.crm_id).where(
                Link.org == self.org, Link.kind == kind, Link.state == UNTRACKED
            )
            return set(session.scalars(query))

    def get_token(self, kind: str, side: str) -> str | None:
        with self.database.session() as session:
            row = session.get(SyncToken, (self.org, kind, side))
            return row.token if row is not None else None

    def save_tokens(self, kind: str, tokens: Mapping[str, str | None]) -> None:
        with self.database.session() as session:
            for side, token in tokens.items():
                row = session.get(SyncToken, (self.org, kind, side))
                if row is None:
                    session.add(SyncToken(org=self.org, kind=kind, side=side, token=token))
                else:
                    row.token = token

    def commit_batch(self, kind: str, batch: Batch, now: datetime) -> None:
        alerts: list[tuple[str, str]] = []
        alerted: list[str] = []
        with self.database.session() as session:
            if batch.made:  # in the same transaction as the links of those items
                made = session.get(SyncToken, (self.org, kind, MADE_SIDE))
                if made is None:
                    made = SyncToken(org=self.org, kind=kind, side=MADE_SIDE, token=None)
                    session.add(made)
                made.token = add_made(made.token, batch.made)
            removed = set(batch.removals) - {row.crm_id for row in batch.upserts}
            if removed:
                session.execute(
                    delete(Link).where(
                        Link.org == self.org, Link.kind == kind, Link.crm_id.in_(removed)
                    )
                )
            if batch.upserts:
                existing = {
                    link.crm_id: link
                    for link in session.scalars(
                        select(Link).where(
                            Link.org == self.org,
                            Link.kind == kind,
                            Link.crm_id.in_([r.crm_id for r in batch.upserts]),
                        )
                    )
                }
                # Free mailbox ids first: a move can hand one id from a link to another.
                for row in batch.upserts:
                    link = existing.get(row.crm_id)
                    if link is not None and link.mailbox_id != row.mailbox_id:
                        link.mailbox_id = None
                session.flush()
                for row in batch.upserts:
                    link = existing.get(row.crm_id)
                    if link is None:
                        link = Link(org=self.org, kind=kind, crm_id=row.crm_id)
                        session.add(link)
                    link.mailbox_id = row.mailbox_id
                    link.crm_version = row.crm_version
                    link.mailbox_version = row.mailbox_version
                    link.crm_fingerprint = row.crm_fingerprint
                    link.mailbox_fingerprint = row.mailbox_fingerprint
                    link.base = dict(row.base) if row.base is not None else None
                    link.state = row.state
            if batch.resolved:
                settled = session.scalars(
                    select(ItemError.item_id).where(
                        ItemError.org == self.org,
                        ItemError.kind == kind,
                        ItemError.item_id.in_(batch.resolved),
                        ItemError.attempts >= self.alert_after,
                    )
                )
                alerted = list(settled)
                session.execute(
                    delete(ItemError).where(
                        ItemError.org == self.org,
                        ItemError.kind == kind,
                        ItemError.item_id.in_(batch.resolved),
                    )
                )
            for failure in batch.failures:
                error = session.scalars(
                    select(ItemError).where(
                        ItemError.org == self.org,
                        ItemError.kind == kind,
                        ItemError.item_id == failure.crm_id,
                    )
                ).first()
                if error is None:
                    error = ItemError(
                        org=self.org, kind=kind, item_id=failure.crm_id, attempts=0,
                        created_at=utcnow(),
                    )  # fmt: skip
                    session.add(error)
                error.attempts = (error.attempts or 0) + 1
                error.side = failure.side
                error.operation = failure.operation
                error.message = failure.message
                error.payload = {"mailbox_id": failure.mailbox_id}
                wait = backoff(error.attempts, failure.retry_after)
                error.next_attempt_at = _naive(now) + timedelta(seconds=wait)
                if error.attempts == self.alert_after:
                    alerts.append((failure.crm_id, failure.message))
            for conflict in batch.conflicts:
                session.add(
                    ConflictRecord(
                        org=self.org,
                        kind=kind,
                        crm_id=conflict.crm_id,
                        mailbox_id=conflict.mailbox_id,
                        title=conflict.title,
                        field=conflict.field,
                        crm_value=conflict.crm_value,
                        mailbox_value=conflict.mailbox_value,
                        winner=conflict.winner,
                        reason=conflict.reason,
                    )
                )
        for crm_id in alerted:
            self.resolve_alert("item-failed", f"{kind}:{crm_id}")
        for crm_id, message in alerts:
            self.alert(
                "item-failed",
                N_("An item keeps failing to sync (%(kind)s)", kind=kind_word(kind)),
                N_(
                    "%(error)s (after %(num)s attempts; it is retried with backoff)",
                    error=message,
                    num=self.alert_after,
                ),
                subject=f"{kind}:{crm_id}",
            )

    def parked_items(self, kind: str) -> list[ParkedItem]:
        with self.database.session() as session:
            query = select(ItemError).where(ItemError.org == self.org, ItemError.kind == kind)
            return [
                ParkedItem(
                    crm_id=e.item_id,
                    mailbox_id=(e.payload or {}).get("mailbox_id"),
                    attempts=e.attempts,
                    next_attempt_at=e.next_attempt_at.replace(tzinfo=UTC),
                )
                for e in session.scalars(query)
            ]

    def conflicts(self, kind: str) -> list[ConflictRow]:
        with self.database.session() as session:
            query = (
                select(ConflictRecord)
                .where(ConflictRecord.org == self.org, ConflictRecord.kind == kind)
                .order_by(ConflictRecord.id)
            )
            return [conflict_row(record) for record in session.scalars(query)]

    def mark_reversed(self, conflict_id: int) -> None:
        with self.database.session() as session:
            record = session.get(ConflictRecord, conflict_id)
            if record is not None and record.reversed_at is None:
                record.reversed_at = utcnow()

    def resolve_alert(self, code: str, subject: str = "") -> None:
        resolve_alerts(self.database, code, subject)

    def alert(
        self, code: str, title: Msg | str, message: Msg | str = "", subject: str = ""
    ) -> None:
        action = STORE_ALERT_ACTIONS.get(code, "")
        raise_alert(self.database, code, title, message, action, severity="error", subject=subject)
