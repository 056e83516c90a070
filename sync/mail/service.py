"""`MailService`: the Mail page's `MailFacade` over the live ports and the local state.

Track, Untrack and Set Regarding act at once through the same `Tracker` as the runs, so a
message tracked here is deduplicated, categorised and remembered exactly as a run would do it
(a run and a click on the same message make one CRM email: the link's chosen id and the
Message-Id lookup see to it). Every failure of a server becomes a `MailError` whose text says
what happened in words for the user (the page translates the known ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from sync.mail import settings as email_settings
from sync.mail.facade import (
    SEARCHABLE,
    TRACKED_FOLDERS_MAX,
    FolderRow,
    MailCounts,
    MailError,
    MessageRow,
    RecordRef,
)
from sync.mail.links import PENDING_CRM, SYNCED, TAGGING, MailLink, MailLinks
from sync.mail.ports import EmailDirectory, TrackingMailbox
from sync.mail.settings import TrackedFolder
from sync.mail.track_run import Tracker, TrackSettings
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.runs import recent_runs
from sync.setup.messages import N_
from sync.setup.profile import Profile
from sync.sides import AuthError, SideError, Throttled, Unavailable, Upsert
from sync.store.models import ItemError, Link

GONE = N_("This message is no longer in the mailbox.")
FOLDER_GONE = N_("This folder is no longer in the mailbox.")
TOO_MANY_FOLDERS = N_(
    "At most %(max)s folders can be tracked. Stop tracking another folder first.",
    max=TRACKED_FOLDERS_MAX,
)
BUSY = N_("The server is busy. Try again in a minute.")
UNREACHABLE = N_("The server could not be reached. Check your network, then try again.")
SIGN_IN = N_("Your sign-in was refused or has expired. Sign in again, then try again.")
NOT_TRACKED = N_("The message could not be tracked: %(detail)s It is tried again later.")
RECENT_RUNS = 200


def _refused(detail: str) -> MailError:
    return MailError(N_("The server refused it: %(detail)s", detail=detail))


def _mail_error(error: SideError) -> MailError:
    """A server's failure as a `MailError` carrying a translatable `Msg`."""
    if isinstance(error, Throttled):
        return MailError(BUSY)
    if isinstance(error, Unavailable):
        return MailError(UNREACHABLE)
    if isinstance(error, AuthError):
        return MailError(SIGN_IN)
    return _refused(error.message or type(error).__name__)


class MailService:
    """The `MailFacade` of one user (their CRM user, mailbox and local database)."""

    def __init__(
        self,
        directory: EmailDirectory,
        mailbox: TrackingMailbox,
        profile: Profile,
        org_id: str,
        me: RecordRef,
        addresses: Sequence[str],
        pop3: bool = False,
        close: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.directory = directory
        self.mailbox = mailbox
        self.profile = profile
        self.links = MailLinks(profile.database, org_id)
        self.me = me
        self.addresses = tuple(addresses)
        self.pop3 = pop3
        self.close = close
        self.clock = clock
        self._folders: dict[str, str] = {}
        """Item id → the folder it was listed in (the facade's calls name items only)."""

    # --- helpers --------------------------------------------------------------------------------

    def _tracker(self) -> Tracker:
        stored = email_settings.ensure_started(
            self.profile, email_settings.load(self.profile), self.clock()
        )
        settings = TrackSettings.from_settings(
            stored, self.me, self.addresses, pop3=self.pop3, clock=self.clock
        )
        return Tracker(self.directory, self.mailbox, self.links, settings)

    def _row(self, item: Upsert, folder: str, link: MailLink | None) -> MessageRow:
        fields = item.fields
        category = TRACKED_CATEGORY in (fields.get("categories") or [])
        linked = link is not None and link.state in (SYNCED, TAGGING)
        return MessageRow(
            id=item.id,
            folder=folder,
            subject=str(fields.get("subject") or ""),
            sender=str(fields.get("sender_name") or fields.get("sender") or ""),
            received=str(fields.get("received") or fields.get("sent") or ""),
            tracked=linked,
            crm_email_id=link.email_id if linked and link is not None else None,
            regarding=link.regarding if linked and link is not None else None,
            pending=not linked and (category or (link is not None and link.state == PENDING_CRM)),
        )

    def _item(self, message_id: str) -> tuple[Upsert, str]:
        link = self.links.by_mailbox([message_id]).get(message_id)
        folder = self._folders.get(message_id) or (link.folder if link else "") or "inbox"
        try:
            found = self.mailbox.read(f"messages:{folder}", [message_id])
        except SideError as error:
            raise _mail_error(error) from None
        item = found.get(message_id)
        if item is None:
            raise MailError(GONE)
        return item, str(item.fields.get("folder") or folder)

    def _why(self, message_id: str) -> str:
        """The parked message's error (what the server said)."""
        with self.profile.database.session() as session:
            row = session.scalars(
                select(ItemError).where(
                    ItemError.org == self.links.org,
                    ItemError.kind == "email",
                    ItemError.item_id == message_id,
                )
            ).first()
            return (row.message if row is not None else "") or "-"

    def _linked(self, message_id: str) -> MailLink | None:
        link = self.links.by_mailbox([message_id]).get(message_id)
        return link if link is not None and link.state in (SYNCED, TAGGING) else None

    # --- MailFacade -----------------------------------------------------------------------------

    def recent(self, folder: str, limit: int = 50) -> Sequence[MessageRow]:
        try:
            items = self.mailbox.recent(folder, limit)
        except SideError as error:
            raise _mail_error(error) from None
        links = self.links.by_mailbox([item.id for item in items])
        for item in items:
            self._folders[item.id] = folder
        return [self._row(item, folder, links.get(item.id)) for item in items]

    def track(self, message_id: str, regarding: RecordRef | None = None) -> MessageRow:
        link = self._linked(message_id)
        if link is not None and regarding is not None:
            return self.set_regarding(message_id, regarding)
        item, folder = self._item(message_id)
        if link is None:
            try:
                link = self._tracker().track_item(folder, item, regarding)
            except SideError as error:
                raise _mail_error(error) from None
            if link is None:  # parked: the server refused this message
                raise MailError(replace(NOT_TRACKED, params={"detail": self._why(message_id)}))
            item, folder = self._item(message_id)
        return self._row(item, folder, link)

    def untrack(self, message_id: str) -> MessageRow:
        link = self.links.by_mailbox([message_id]).get(message_id)
        item, folder = self._item(message_id)
        try:
            if link is not None and link.state != "untracked":
                link = self._tracker().untrack(link)
            elif TRACKED_CATEGORY in (item.fields.get("categories") or []):
                # tracked by hand but not in the CRM yet: taking the category off is all
                self.mailbox.set_categories([message_id], remove=[TRACKED_CATEGORY])
        except SideError as error:
            raise _mail_error(error) from None
        item, folder = self._item(message_id)
        return self._row(item, folder, link)

    def set_regarding(self, message_id: str, regarding: RecordRef | None) -> MessageRow:
        link = self._linked(message_id)
        if link is None:
            return self.track(message_id, regarding)
        try:
            self.directory.set_regarding(link.email_id, regarding)
        except SideError as error:
            raise _mail_error(error) from None
        for other in self.links.by_email(link.email_id):  # every copy shows the new one
            self.links.update(other, regarding=regarding)
        item, folder = self._item(message_id)
        return self._row(item, folder, replace(link, regarding=regarding))

    def search_records(self, text: str, limit: int = 25) -> Sequence[RecordRef]:
        text = text.strip()
        if not text:
            return []
        try:
            return self.directory.search_records(text, SEARCHABLE, limit)[:limit]
        except SideError as error:
            raise _mail_error(error) from None

    def folders(self) -> Sequence[FolderRow]:
        try:
            found = self.mailbox.subfolders("inbox")
        except SideError as error:
            raise _mail_error(error) from None
        tracked = {f.id: f for f in email_settings.load(self.profile).tracked_folders}
        return [
            FolderRow(folder_id, name, folder_id in tracked,
                      tracked[folder_id].regarding if folder_id in tracked else None)
            for folder_id, name in found
        ]  # fmt: skip

    def set_folder_tracking(
        self, folder_id: str, tracked: bool, regarding: RecordRef | None = None
    ) -> FolderRow:
        try:
            names = dict(self.mailbox.subfolders("inbox"))
        except SideError as error:
            raise _mail_error(error) from None
        if folder_id not in names:
            raise MailError(FOLDER_GONE)
        current = email_settings.load(self.profile).tracked_folders
        others = tuple(f for f in current if f.id != folder_id)
        if tracked:
            if len(others) >= TRACKED_FOLDERS_MAX:
                raise MailError(TOO_MANY_FOLDERS)
            folders = (*others, TrackedFolder(folder_id, names[folder_id], regarding))
        else:
            folders = others
        email_settings.save_folders(self.profile, folders)
        return FolderRow(folder_id, names[folder_id], tracked, regarding if tracked else None)

    def counts(self) -> MailCounts:
        runs = recent_runs(self.profile.database, limit=RECENT_RUNS)
        last_email = next((r for r in runs if (r.counts or {}).get("email")), None)
        last_out = next((r for r in runs if (r.counts or {}).get("outgoing")), None)
        email: dict[str, Any] = (last_email.counts or {}).get("email", {}) if last_email else {}
        out: dict[str, Any] = (last_out.counts or {}).get("outgoing", {}) if last_out else {}
        last = max(
            (r.finished_at or r.started_at for r in (last_email, last_out) if r is not None),
            default=None,
        )
        return MailCounts(
            tracked_total=self.links.count_tracked(),
            tracked_last_run=int(email.get("tracked", 0)) + int(email.get("linked", 0)),
            sent_total=self._sent_total(),
            sent_last_run=int(out.get("sent", 0)),
            failed_to_send=int(out.get("failed", 0)),
            last_run=email_settings.utc_text(last.replace(tzinfo=UTC)) if last else None,
        )

    def _sent_total(self) -> int:
        """CRM emails sent through this mailbox (the send journal's "sent" rows)."""
        with self.profile.database.session() as session:
            query = (
                select(func.count())
                .select_from(Link)
                .where(Link.org == self.links.org, Link.kind == "outgoing", Link.state == "sent")
            )
            return int(session.scalar(query) or 0)
