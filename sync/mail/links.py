"""Where email tracking keeps its state: the `links` table (kind "email"), tokens, parked items.

One link per tracked mailbox message: `crm_id` is the CRM email's id (with a suffix when a
second copy of the same message — Sent Items and Inbox of a message to oneself — links to the
same email), `mailbox_id` the message's item id, `base` the rest (`MailLink`). States:
- "pending-crm": the CRM email's id is chosen and stored, the create not confirmed yet: the
  next run retries with the same id, so a crash between the two never makes a second email;
- "tagging": linked, the category not yet confirmed on the mailbox copy;
- "synced": done;
- "untracked": the user untracked it; kept so that no automatic way tracks it again.

Tokens: kind "email:<folder>" (tracked folders by a short hash of their id), side "mailbox".
Parked items: `item_errors` rows of kind "email" keyed by the mailbox item id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select

from sync.engine.state import ALERT_AFTER, PENDING_CRM, SYNCED, UNTRACKED, backoff
from sync.mail.facade import RecordRef
from sync.mail.settings import record_dict
from sync.messages import N_
from sync.runs import raise_alert, resolve_alerts
from sync.store.base import utcnow
from sync.store.db import Database
from sync.store.models import ItemError, Link, SyncToken

KIND = "email"
TAGGING = "tagging"
SIDE = "mailbox"
CHUNK = 500


def token_kind(folder: str) -> str:
    """The token row's kind for a folder: its distinguished name, or a hash of a folder id
    (EWS ids are longer than the column)."""
    if folder in ("inbox", "sentitems"):
        return f"{KIND}:{folder}"
    return f"{KIND}:f-{hashlib.sha256(folder.encode()).hexdigest()[:24]}"


@dataclass(frozen=True)
class MailLink:
    """One tracked (or untracked) mailbox message."""

    key: str
    """The link's `crm_id`: the email id, or `<email id>#<hash>` for a second copy."""
    mailbox_id: str | None
    email_id: str
    message_id: str
    folder: str
    state: str = TAGGING
    way: str = ""
    regarding: RecordRef | None = None
    tagged: bool | None = None
    """True: we put the category on the copy; False: the mailbox cannot (POP3); None: not yet."""
    created: bool = False
    """This install created the CRM email (so its attachments are ours to add)."""
    version: str | None = None
    verify: bool = False
    """Made outside a run (the Mail page) for a message the runs may not have seen: the next
    run checks that it still exists (a message made and deleted between two reads is never
    reported as deleted)."""

    @property
    def tracked(self) -> bool:
        return self.state != UNTRACKED


def _record(value: Any) -> RecordRef | None:
    if not isinstance(value, dict) or not value.get("id"):
        return None
    return RecordRef(str(value.get("entity_set", "")), str(value["id"]), str(value.get("name", "")))


def _from_row(row: Link) -> MailLink:
    base = dict(row.base or {})
    return MailLink(
        key=row.crm_id,
        mailbox_id=row.mailbox_id,
        email_id=str(base.get("email_id") or row.crm_id.split("#", 1)[0]),
        message_id=str(base.get("message_id") or ""),
        folder=str(base.get("folder") or ""),
        state=row.state,
        way=str(base.get("way") or ""),
        regarding=_record(base.get("regarding")),
        tagged=base.get("tagged"),
        created=bool(base.get("created")),
        version=row.mailbox_version,
        verify=bool(base.get("verify")),
    )


def copy_key(email_id: str, mailbox_id: str) -> str:
    return f"{email_id}#{hashlib.sha256(mailbox_id.encode()).hexdigest()[:16]}"


class MailLinks:
    """The tracking state of one synchronizing organization in the local database."""

    def __init__(self, database: Database, org: str, alert_after: int = ALERT_AFTER) -> None:
        self.database = database
        self.org = org
        self.alert_after = alert_after

    # --- links ---------------------------------------------------------------------------------

    def _query(self) -> Any:
        return select(Link).where(Link.org == self.org, Link.kind == KIND)

    def by_mailbox(self, ids: Collection[str]) -> dict[str, MailLink]:
        found: dict[str, MailLink] = {}
        wanted = sorted(set(ids))
        with self.database.session() as session:
            for start in range(0, len(wanted), CHUNK):
                query = self._query().where(Link.mailbox_id.in_(wanted[start : start + CHUNK]))
                for row in session.scalars(query):
                    found[str(row.mailbox_id)] = _from_row(row)
        return found

    def by_email(self, email_id: str) -> list[MailLink]:
        """Every link (copies too) to the CRM email `email_id`."""
        with self.database.session() as session:
            query = self._query().where(
                or_(Link.crm_id == email_id, Link.crm_id.like(f"{email_id}#%"))
            )
            return [_from_row(row) for row in session.scalars(query)]

    def in_states(self, states: Collection[str]) -> list[MailLink]:
        with self.database.session() as session:
            query = self._query().where(Link.state.in_(list(states)))
            return [_from_row(row) for row in session.scalars(query)]

    def all(self) -> list[MailLink]:
        with self.database.session() as session:
            return [_from_row(row) for row in session.scalars(self._query())]

    def unsettled(self) -> list[MailLink]:
        """Links a run must finish or check first: a create to confirm, a category to set, a
        Mail-page link to verify (one query)."""
        with self.database.session() as session:
            query = self._query().where(
                or_(
                    Link.state.in_([PENDING_CRM, TAGGING]),
                    Link.base["verify"].as_boolean().is_(True),
                )
            )
            return [_from_row(row) for row in session.scalars(query)]

    def to_verify(self) -> list[MailLink]:
        """Links waiting for their check (a JSON test in SQL: no row is loaded for nothing)."""
        with self.database.session() as session:
            query = self._query().where(Link.base["verify"].as_boolean().is_(True))
            return [_from_row(row) for row in session.scalars(query)]

    def untracked_message_ids(self) -> set[str]:
        return {link.message_id for link in self.in_states([UNTRACKED]) if link.message_id}

    def count_tracked(self) -> int:
        with self.database.session() as session:
            query = (
                select(func.count())
                .select_from(Link)
                .where(Link.org == self.org, Link.kind == KIND, Link.state != UNTRACKED)
            )
            return int(session.scalar(query) or 0)

    def key_for(self, email_id: str, mailbox_id: str) -> str:
        """The `crm_id` a link from `mailbox_id` to `email_id` gets: the email id unless
        another message's link holds it already."""
        with self.database.session() as session:
            holder = session.scalars(self._query().where(Link.crm_id == email_id)).first()
            if holder is None or holder.mailbox_id == mailbox_id:
                return email_id
        return copy_key(email_id, mailbox_id)

    def put(self, link: MailLink) -> MailLink:
        """Store `link` (one transaction): it replaces any other link of the same message."""
        base = {
            "email_id": link.email_id,
            "message_id": link.message_id,
            "folder": link.folder,
            "way": link.way,
            "regarding": record_dict(link.regarding),
            "tagged": link.tagged,
            "created": link.created,
            "verify": link.verify,
        }
        with self.database.session() as session:
            if link.mailbox_id is not None:
                session.execute(
                    delete(Link).where(
                        Link.org == self.org,
                        Link.kind == KIND,
                        Link.mailbox_id == link.mailbox_id,
                        Link.crm_id != link.key,
                    )
                )
            row = session.scalars(self._query().where(Link.crm_id == link.key)).first()
            if row is None:
                row = Link(org=self.org, kind=KIND, crm_id=link.key)
                session.add(row)
            row.mailbox_id = link.mailbox_id
            row.mailbox_version = link.version
            row.crm_version = None
            row.state = link.state
            row.base = base
        return link

    def update(self, link: MailLink, **changes: Any) -> MailLink:
        return self.put(replace(link, **changes))

    def remove(self, keys: Iterable[str]) -> None:
        wanted = list(keys)
        if not wanted:
            return
        with self.database.session() as session:
            session.execute(
                delete(Link).where(Link.org == self.org, Link.kind == KIND, Link.crm_id.in_(wanted))
            )

    # --- tokens --------------------------------------------------------------------------------

    def get_token(self, folder: str) -> str | None:
        with self.database.session() as session:
            row = session.get(SyncToken, (self.org, token_kind(folder), SIDE))
            return row.token if row is not None else None

    def tokens(self, folders: Iterable[str]) -> dict[str, str | None]:
        """The saved token of each folder (one query)."""
        kinds = {token_kind(folder): folder for folder in folders}
        found: dict[str, str | None] = dict.fromkeys(kinds.values())
        with self.database.session() as session:
            query = select(SyncToken).where(
                SyncToken.org == self.org, SyncToken.side == SIDE, SyncToken.kind.in_(list(kinds))
            )
            for row in session.scalars(query):
                found[kinds[row.kind]] = row.token
        return found

    def save_token(self, folder: str, token: str | None) -> None:
        with self.database.session() as session:
            row = session.get(SyncToken, (self.org, token_kind(folder), SIDE))
            if row is None:
                session.add(
                    SyncToken(org=self.org, kind=token_kind(folder), side=SIDE, token=token)
                )
            else:
                row.token = token

    # --- parked items ---------------------------------------------------------------------------

    def park(
        self,
        item_id: str,
        folder: str,
        operation: str,
        message: str,
        retry_after: float,
        now: datetime,
    ) -> None:
        """Record a failed message; retried once due, an alert after `alert_after` attempts."""
        alert = False
        with self.database.session() as session:
            error = session.scalars(
                select(ItemError).where(
                    ItemError.org == self.org, ItemError.kind == KIND, ItemError.item_id == item_id
                )
            ).first()
            if error is None:
                error = ItemError(
                    org=self.org, kind=KIND, item_id=item_id, attempts=0, created_at=utcnow()
                )
                session.add(error)
            error.attempts = (error.attempts or 0) + 1
            error.side = "crm"
            error.operation = operation
            error.message = message
            error.payload = {"mailbox_id": item_id, "folder": folder}
            wait = backoff(error.attempts, retry_after)
            naive = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
            error.next_attempt_at = naive + timedelta(seconds=wait)
            alert = error.attempts == self.alert_after
        if alert:
            raise_alert(
                self.database,
                "item-failed",
                N_("A message keeps failing to be tracked"),
                N_(
                    "%(error)s (after %(num)s attempts; it is retried with backoff)",
                    error=message,
                    num=self.alert_after,
                ),
                N_("It is retried automatically; see the message's error for details."),
                severity="error",
                subject=f"{KIND}:{item_id}"[:200],
            )

    def parked_due(self, now: datetime) -> list[tuple[str, str]]:
        """(item id, folder) of the parked messages due for a retry."""
        naive = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
        with self.database.session() as session:
            query = select(ItemError).where(
                ItemError.org == self.org,
                ItemError.kind == KIND,
                ItemError.next_attempt_at <= naive,
            )
            return [
                (e.item_id, str((e.payload or {}).get("folder") or "inbox"))
                for e in session.scalars(query)
            ]

    def parked_ids(self) -> set[str]:
        with self.database.session() as session:
            query = select(ItemError.item_id).where(
                ItemError.org == self.org, ItemError.kind == KIND
            )
            return set(session.scalars(query))

    def parked_count(self) -> int:
        with self.database.session() as session:
            query = (
                select(func.count())
                .select_from(ItemError)
                .where(ItemError.org == self.org, ItemError.kind == KIND)
            )
            return int(session.scalar(query) or 0)

    def settle(self, item_ids: Collection[str]) -> None:
        """These messages went through: their parked rows (and alerts) are gone."""
        wanted = list(item_ids)
        if not wanted:
            return
        with self.database.session() as session:
            alerted = list(
                session.scalars(
                    select(ItemError.item_id).where(
                        ItemError.org == self.org,
                        ItemError.kind == KIND,
                        ItemError.item_id.in_(wanted),
                        ItemError.attempts >= self.alert_after,
                    )
                )
            )
            session.execute(
                delete(ItemError).where(
                    ItemError.org == self.org, ItemError.kind == KIND, ItemError.item_id.in_(wanted)
                )
            )
        for item_id in alerted:
            resolve_alerts(self.database, "item-failed", f"{KIND}:{item_id}"[:200])


__all__ = ["KIND", "PENDING_CRM", "SYNCED", "TAGGING", "UNTRACKED", "MailLink", "MailLinks"]
