"""The send journal: one row per outgoing CRM email in the local database's `links` table.

A row (kind "outgoing", `crm_id` the email's activityid, `mailbox_id` its Message-Id) is
committed before the message is handed to the mail server; SQLite runs with synchronous=FULL, so
the commit is on disk first (sync/store/db.py). The state then follows the message: "sending"
→ "accepted" (the server took it) → "sent" (marked Sent in the CRM), or "failed"; "queued" is
a chosen Message-Id that was not handed over (the server said no before taking it). The
stage's rules on these states are in `sync.mail.outgoing`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from sync.mail.outgoing import (
    ACCEPTED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    JournalEntry,
    SentCopy,
    utc_now,
)
from sync.runs import raise_alert
from sync.setup.messages import Msg
from sync.store.db import Database
from sync.store.models import Link

KIND = "outgoing"
"""The `links.kind` of journal rows."""


def _entry(link: Link) -> JournalEntry:
    base: dict[str, Any] = dict(link.base or {})
    return JournalEntry(
        email_id=link.crm_id,
        message_id=link.mailbox_id,
        state=link.state,
        handed_at=base.get("handed_at"),
        sent_at=base.get("sent_at"),
        reason=base.get("reason"),
    )


class SendJournal:
    """The journal of the synchronizing organization `org` (one row per CRM email)."""

    def __init__(self, database: Database, org: str) -> None:
        self.database = database
        self.org = org

    def entry(self, email_id: str) -> JournalEntry | None:
        with self.database.session() as session:
            link = self._find(session, email_id)
            return _entry(link) if link is not None else None

    def entries(self, state: str | None = None) -> list[JournalEntry]:
        """Every row (in one state), oldest first."""
        with self.database.session() as session:
            query = select(Link).where(Link.org == self.org, Link.kind == KIND)
            if state is not None:
                query = query.where(Link.state == state)
            return [_entry(link) for link in session.scalars(query.order_by(Link.id))]

    def counts(self) -> dict[str, int]:
        """Rows per state (the dashboard's "sent" and "failed to send" figures)."""
        return dict(Counter(entry.state for entry in self.entries()))

    # --- the states ------------------------------------------------------------------------

    def queued(self, email_id: str, message_id: str) -> None:
        self._write(email_id, QUEUED, message_id)

    def sending(self, email_id: str, message_id: str, subject: str) -> None:
        self._write(email_id, SENDING, message_id, handed_at=utc_now(), subject=subject)

    def accepted(self, email_id: str, copy: SentCopy) -> None:
        self._write(email_id, ACCEPTED, copy.message_id, sent_at=copy.sent_at)

    def sent(self, email_id: str) -> None:
        self._write(email_id, SENT)

    def failed(self, email_id: str, message_id: str | None, reason: str) -> None:
        self._write(email_id, FAILED, message_id, reason=reason)

    def alert(
        self, code: str, subject: str, severity: str, title: Msg, message: Msg, action: Msg
    ) -> None:
        """An alert for the user (the stage's, about one email: `subject` is its id)."""
        raise_alert(
            self.database,
            code,
            title,
            message,
            action,
            severity=severity,
            subject=subject,
        )

    # --- plumbing --------------------------------------------------------------------------

    def _find(self, session: Any, email_id: str) -> Link | None:
        query = select(Link).where(
            Link.org == self.org, Link.kind == KIND, Link.crm_id == email_id.lower()
        )
        return session.scalars(query).first()

    def _write(self, email_id: str, state: str, message_id: str | None = None, **base: Any) -> None:
        """Set the row's state (and Message-Id, and `base` facts), creating the row; one
        committed transaction."""
        with self.database.session() as session:
            link = self._find(session, email_id)
            if link is None:
                link = Link(org=self.org, kind=KIND, crm_id=email_id.lower(), base={})
                session.add(link)
            link.state = state
            if message_id:
                link.mailbox_id = message_id
            kept = {k: v for k, v in (link.base or {}).items() if state == FAILED or k != "reason"}
            link.base = {**kept, **base}
