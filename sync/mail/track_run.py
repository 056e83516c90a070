"""The tracking run: mailbox messages → CRM emails, once each, whoever tracks them.

Per folder (Inbox, Sent Items unless opted out, each tracked folder) the run reads the changes
since the folder's saved token, decides (`sync.mail.tracking`), and for each message to track:
1. finds the CRM email by Internet Message-Id (`emails_by_message_id`): a message is one CRM
   email whoever tracks it, so a second user links to it and is added to its parties;
2. else writes a link holding a GUID chosen now, then creates the email with that id: a crash
   in between retries the same id (the create answers the existing row), never two emails;
3. adds the attachments (one above the organization's limit is skipped with an alert; the
   message is still tracked), then puts the tracked category on the mailbox copy.
Each page's token is saved once the page is applied. Throttling or an outage stops the run
with that folder's token unsaved (the next run reads it again; links and Message-Ids keep it
from doing anything twice); one message's error parks it (retried with backoff) and the others
go on. Untracking (the category removed by hand, or the Mail page) keeps the CRM email and
remembers the message, so no automatic way tracks it again.

Requests: per page one Message-Id lookup (the page's own ids and those it refers to), at most
one resolve for the rule and one for the parties; the token and conversation lookups only for
messages the references did not place, each asked once a run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sync.kinds.email import (
    all_addresses,
    counterparts,
    has_party,
    is_outgoing,
    my_party,
    new_email,
)
from sync.mail.correlate import (
    Lookups,
    conversation_root,
    correlate,
    message_id_of,
    needs_more,
    referenced_ids,
    wanted_tokens,
)
from sync.mail.facade import RecordRef
from sync.mail.links import PENDING_CRM, SYNCED, TAGGING, UNTRACKED, MailLink, MailLinks
from sync.mail.ports import (
    AttachmentData,
    CrmEmail,
    EmailDirectory,
    NewAttachment,
    NewEmail,
    TrackingMailbox,
)
from sync.mail.settings import EmailSettings, TrackedFolder, parse_moment
from sync.mail.tracking import (
    EMAIL_ENABLED_TABLES,
    FOLDER,
    PARTY_TABLES,
    RECORD_TABLES,
    USER,
    Decision,
    Facts,
    decide,
    in_window,
    may_track,
)
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.messages import N_, Msg, to_json
from sync.runs import raise_alert, resolve_alerts
from sync.sides import (
    AuthError,
    Deleted,
    Invalid,
    NotFound,
    SideError,
    Throttled,
    TokenExpired,
    Unavailable,
    Upsert,
    Written,
)

log = logging.getLogger(__name__)

ATTACHMENT_NAMESPACE = uuid.UUID("5b0a3c1e-2f47-4c4e-9d55-0e3a8f6b7c21")
"""Attachment ids are uuid5(namespace, email id / index / name): a retry adds the same one."""
ATTACH_BYTES = 8 * 1024 * 1024
"""Attachment bytes held before they are sent (a batch of messages' files travel together)."""
ATTACHMENT_ALERT = "attachment-skipped"
FOLDER_ALERT = "tracked-folder-missing"
STOPS = (Throttled, Unavailable)
"""Errors that stop the run (the server asks us to wait, or is away): retried next run."""
RAISED = (AuthError, TokenExpired)
"""Errors of the whole call, never one message's: the caller deals with them."""

Progress = Callable[[int, int, str], None]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TrackSettings:
    """What one tracking run needs, from the profile and the sign-in."""

    option: str
    me: RecordRef
    """The user's `systemusers` record."""
    addresses: frozenset[str]
    """The user's own address(es), lower-case: their sent messages are outgoing."""
    folders: tuple[str, ...] = ("inbox", "sentitems")
    tracked_folders: Mapping[str, TrackedFolder] = field(default_factory=dict)
    window_start: datetime | None = None
    crm_batch: int = 100
    """Messages whose CRM emails are made in one call (one `$batch`: two operations each)."""
    token_prefix: str | None = "CRM:"
    """None: tokens are off (none added, none looked for)."""
    clock: Callable[[], datetime] = _now

    @classmethod
    def from_settings(
        cls,
        settings: EmailSettings,
        me: RecordRef,
        addresses: Iterable[str],
        pop3: bool = False,
        clock: Callable[[], datetime] = _now,
    ) -> TrackSettings:
        """Inbox, Sent Items unless opted out and the tracked folders (POP3: the Inbox only:
        it has no other folder)."""
        folders = ["inbox"]
        tracked: dict[str, TrackedFolder] = {}
        if not pop3:
            if settings.track_sent_items:
                folders.append("sentitems")
            for folder in settings.tracked_folders:
                tracked[folder.id] = folder
                folders.append(folder.id)
        return cls(
            option=settings.option,
            me=me,
            addresses=frozenset(a.strip().lower() for a in addresses if a),
            folders=tuple(dict.fromkeys(folders)),
            tracked_folders=tracked,
            window_start=settings.window_start(),
            token_prefix=settings.token_prefix if settings.token_enabled else None,
            clock=clock,
        )


@dataclass
class TrackResult:
    """What a run did (the run's counts["email"])."""

    tracked: int = 0
    """CRM emails created."""
    linked: int = 0
    """Messages linked to a CRM email that existed (another user's, another copy)."""
    untracked: int = 0
    attachments_skipped: int = 0
    errors: int = 0
    message: str | None = None
    message_msg: Any = None
    """`message` as a message id with parameters (sync.messages.to_json), for the pages."""
    stopped: bool = False

    def counts(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "tracked": self.tracked,
            "linked": self.linked,
            "untracked": self.untracked,
            "attachments_skipped": self.attachments_skipped,
            "errors": self.errors,
        }
        if self.message:
            data["message"] = self.message
            if self.message_msg:
                data["message_msg"] = self.message_msg
        return data


@dataclass
class _Candidate:
    item: Upsert
    message_id: str
    outgoing: bool
    facts: Facts
    pending: MailLink | None = None
    decision: Decision | None = None
    verify: bool = False
    """The user's (Mail page) message, maybe never seen by a run: checked after the next."""
    existing: CrmEmail | None = None


class Tracker:
    """One tracking run (or one Mail-page action) over the two ports and the local state."""

    def __init__(
        self,
        directory: EmailDirectory,
        mailbox: TrackingMailbox,
        links: MailLinks,
        settings: TrackSettings,
        progress: Progress | None = None,
    ) -> None:
        self.directory = directory
        self.mailbox = mailbox
        self.links = links
        self.settings = settings
        self.progress = progress
        self.result = TrackResult()
        self._limit: int | None = None
        self._by_token: dict[str, CrmEmail | None] = {}
        self._by_conversation: dict[str, CrmEmail | None] = {}
        self._made: dict[str, CrmEmail] = {}
        """Emails made or linked this run, by Message-Id (two copies in one page)."""
        self._untracked: set[str] | None = None
        self._parked: set[str] | None = None
        self._by_id = True
        """Messages now come from reads by id (retries, the Mail page), not a folder read."""
        self._made_by_id: list[MailLink] = []

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> TrackResult:
        """Track what the folders hold since their tokens; never raises for one message."""
        folders = self.settings.folders
        try:
            unsettled = self.links.unsettled()
            # messages read by id before the folders: maybe never seen by a folder read, so
            # the links made for them are checked once the folders are read (`_verify`)
            self._by_id = True
            self._retry_unsettled([lk for lk in unsettled if lk.state in (PENDING_CRM, TAGGING)])
            self._retry_parked()
            self._by_id = False
            tokens = self.links.tokens(folders)
            for index, folder in enumerate(folders):
                self._report(index, len(folders), folder)
                self._folder(folder, tokens.get(folder))
            self._verify([lk for lk in unsettled if lk.verify] + self._made_by_id)
            self._report(len(folders), len(folders), "done")
        except STOPS as error:
            self.result.stopped = True
            kind = "throttled" if isinstance(error, Throttled) else "unavailable"
            self.result.message = f"{kind}: {error.message or type(error).__name__}"
            log.warning("email tracking stopped: %s", self.result.message)
        return self.result

    def _report(self, done: int, total: int, phase: str) -> None:
        if self.progress is not None:
            self.progress(done, total, phase)

    def _folder(self, folder: str, token: str | None) -> None:
        kind = f"messages:{folder}"
        try:
            self._read(folder, kind, token)
        except TokenExpired:
            if token is None:
                raise
            log.info("the sync state of %s expired: reading it again", folder)
            self._read(folder, kind, None)
        except NotFound as gone:
            if folder not in self.settings.tracked_folders:
                raise
            name = self.settings.tracked_folders[folder].name or folder
            raise_alert(
                self.links.database,
                FOLDER_ALERT,
                N_("A tracked folder is gone"),
                N_(
                    "The tracked folder “%(name)s” is no longer in the mailbox (%(error)s).",
                    name=name,
                    error=gone.message,
                ),
                N_("Choose the tracked folders again on the Mail page."),
                subject=folder[:200],
            )
            gone_msg = N_("tracked folder “%(name)s” is gone", name=name)
            self.result.message, self.result.message_msg = str(gone_msg), to_json(gone_msg)
            return
        if folder in self.settings.tracked_folders:
            resolve_alerts(self.links.database, FOLDER_ALERT, folder[:200])

    def _read(self, folder: str, kind: str, token: str | None) -> None:
        seen: set[str] | None = set() if token is None else None
        for page in self.mailbox.read_changes(kind, token):
            if seen is not None:
                seen.update(change.id for change in page.changes)
            self._page(folder, page.changes)
            if page.last and seen is not None:
                self._forget_missing(folder, seen)
            if page.token is not None and page.token != token:  # a quiet run writes nothing
                self.links.save_token(folder, page.token)
                token = page.token

    def _forget_missing(self, folder: str, seen: set[str]) -> None:
        """After a full read, a linked message it did not list is gone (a full read reports
        no deletions): its link goes, the CRM email stays."""
        gone = [
            link.key
            for link in self.links.in_states([SYNCED, TAGGING])
            if link.folder == folder and link.mailbox_id not in seen
        ]
        self.links.remove(gone)

    def _retry_unsettled(self, unsettled: list[MailLink]) -> None:
        """Links a stopped run left: creates to confirm (the same id again), categories to set.
        A create the service refused is parked: it waits for its backoff (`_retry_parked`)
        instead of being sent again on every run."""
        self._tag([link for link in unsettled if link.state == TAGGING])
        pending: dict[str, list[MailLink]] = {}
        parked = self._parked_ids()
        for link in unsettled:
            if link.state == PENDING_CRM and link.mailbox_id and link.mailbox_id not in parked:
                pending.setdefault(link.folder or "inbox", []).append(link)
        for folder, group in pending.items():
            found = self.mailbox.read(f"messages:{folder}", [str(lk.mailbox_id) for lk in group])
            gone = [lk.key for lk in group if lk.mailbox_id not in found]
            self.links.remove(gone)  # the message is gone; its email, if made, stays
            if found:
                self._page(folder, list(found.values()))

    def _verify(self, links: list[MailLink]) -> None:
        """Links the Mail page made: once the folders were read past them, a message gone
        now is gone for good (no later read would report it)."""
        by_folder: dict[str, list[MailLink]] = {}
        current = self.links.by_mailbox([str(lk.mailbox_id) for lk in links if lk.mailbox_id])
        for link in current.values():
            if not link.verify:
                continue
            by_folder.setdefault(link.folder or "inbox", []).append(link)
        for folder, group in by_folder.items():
            found = self.mailbox.read(f"messages:{folder}", [str(lk.mailbox_id) for lk in group])
            self.links.remove(lk.key for lk in group if lk.mailbox_id not in found)
            for link in group:
                if link.mailbox_id in found:
                    self.links.update(link, verify=False)

    def _retry_parked(self) -> None:
        due = self.links.parked_due(self.settings.clock())
        by_folder: dict[str, list[str]] = {}
        for item_id, folder in due:
            by_folder.setdefault(folder, []).append(item_id)
        for folder, ids in by_folder.items():
            found = self.mailbox.read(f"messages:{folder}", ids)
            self.links.settle([i for i in ids if i not in found])
            if found:
                self._page(folder, list(found.values()))

    # --- one page -------------------------------------------------------------------------------

    def _untracked_ids(self) -> set[str]:
        if self._untracked is None:
            self._untracked = self.links.untracked_message_ids()
        return self._untracked

    def _parked_ids(self) -> set[str]:
        if self._parked is None:
            self._parked = self.links.parked_ids()
        return self._parked

    def _page(
        self,
        folder: str,
        changes: Sequence[Upsert | Deleted],
        forced: Mapping[str, RecordRef | None] | None = None,
    ) -> dict[str, MailLink]:
        """Apply one page of changes; `forced`: item id → Regarding the user tracks it with."""
        forced = forced or {}
        upserts = [c for c in changes if isinstance(c, Upsert)]
        deleted = [c.id for c in changes if isinstance(c, Deleted)]
        known = self.links.by_mailbox([c.id for c in changes])
        # a synced copy deleted (or moved away): the CRM email stays, the link goes
        self.links.remove(
            known[i].key for i in deleted if i in known and known[i].state in (SYNCED, TAGGING)
        )
        done: dict[str, MailLink] = {}
        candidates: list[_Candidate] = []
        to_tag: list[MailLink] = []
        for item in upserts:
            link = known.get(item.id)
            category = TRACKED_CATEGORY in (item.fields.get("categories") or [])
            if link is not None and link.state == SYNCED:
                done[item.id] = link
                if link.tagged is True and not category and item.id not in forced:
                    # the user took the category off in Outlook: untracked by hand
                    done[item.id] = self.links.update(link, state=UNTRACKED, version=item.version)
                    self._untracked_ids().add(link.message_id)
                    self.result.untracked += 1
                continue
            if link is not None and link.state == TAGGING:
                if category:
                    done[item.id] = self.links.update(link, state=SYNCED, tagged=True)
                else:
                    to_tag.append(link)
                continue
            candidate = self._candidate(folder, item, link, category, forced)
            if candidate is not None:
                candidates.append(candidate)
        for item_id, link in self._track(folder, candidates).items():
            done[item_id] = link
            if link.state != TAGGING:
                continue
            item = next(c.item for c in candidates if c.item.id == item_id)
            if TRACKED_CATEGORY in (item.fields.get("categories") or []):
                done[item_id] = self.links.update(link, state=SYNCED, tagged=True)  # by hand
            else:
                to_tag.append(link)
        done.update({link.mailbox_id or "": link for link in self._tag(to_tag)})
        return done

    def _moved_untracked(self, folder: str, by_rule: list[_Candidate]) -> dict[str, MailLink]:
        """Tracked messages the user moved *and* took the category off between two runs.

        A move keeps a message's categories but may give it a new item id, so the run sees a
        new item and, elsewhere, the tracked one gone. A message only the rule would track,
        whose CRM email is linked (category ours) to an item that no longer exists, is that
        message untracked by hand: its link follows it as untracked, and no rule tracks it
        again. (A second copy, with the tracked item still there, is not this; a message
        filed in a tracked folder is not decided by the rule.) Only messages already in the
        CRM are asked about: one link query each, and one read of their old items.
        """
        linked = {
            c.item.id: [
                link
                for link in self.links.by_email(c.existing.id)
                if link.state == SYNCED and link.tagged is True and link.mailbox_id != c.item.id
            ]
            for c in by_rule
            if c.existing is not None
        }
        by_folder: dict[str, list[str]] = {}
        for link in (link for links in linked.values() for link in links):
            by_folder.setdefault(link.folder, []).append(link.mailbox_id or "")
        still_there = {
            item_id
            for old_folder, ids in by_folder.items()
            for item_id in self.mailbox.read(f"messages:{old_folder}", ids)
        }
        moved: dict[str, MailLink] = {}
        for candidate in by_rule:
            gone = [
                lk for lk in linked.get(candidate.item.id, []) if lk.mailbox_id not in still_there
            ]
            if not gone or gone[0].key in {lk.key for lk in moved.values()}:
                continue
            item = candidate.item
            moved[item.id] = self.links.update(
                gone[0], mailbox_id=item.id, folder=folder, state=UNTRACKED, version=item.version
            )
            self._untracked_ids().add(candidate.message_id)
            self.result.untracked += 1
        return moved

    def _candidate(
        self,
        folder: str,
        item: Upsert,
        link: MailLink | None,
        category: bool,
        forced: Mapping[str, RecordRef | None],
    ) -> _Candidate | None:
        fields = item.fields
        message_id = message_id_of(fields, item.id)
        outgoing = is_outgoing(fields, folder, self.settings.addresses)
        tracked_folder = self.settings.tracked_folders.get(folder)
        moment = parse_moment(
            (fields.get("sent") if outgoing else fields.get("received"))
            or fields.get("received")
            or fields.get("sent")
        )
        facts = Facts(
            category=category,
            folder=tracked_folder is not None,
            folder_regarding=tracked_folder.regarding if tracked_folder else None,
            user=item.id in forced,
            user_regarding=forced.get(item.id),
            untracked=link is not None and link.state == UNTRACKED,
            untracked_copy=message_id in self._untracked_ids(),
            in_window=in_window(moment, self.settings.window_start),
        )
        pending = link if link is not None and link.state == PENDING_CRM else None
        if pending is None and not may_track(self.settings.option, facts):
            return None
        return _Candidate(item, message_id, outgoing, facts, pending, verify=self._by_id)

    def _track(self, folder: str, candidates: list[_Candidate]) -> dict[str, MailLink]:
        if not candidates:
            return {}
        option = self.settings.option
        ids = {c.message_id for c in candidates}
        for candidate in candidates:
            ids.update(referenced_ids(candidate.item.fields))
        by_message_id = dict(self.directory.emails_by_message_id(sorted(ids)))
        by_message_id.update(self._made)
        for candidate in candidates:
            candidate.existing = by_message_id.get(candidate.message_id)
        lookups = Lookups(by_message_id, self._by_token, self._by_conversation)
        # the rule's records: one resolve for every message the rule alone decides
        rule_tables = {"records": RECORD_TABLES, "email_enabled": EMAIL_ENABLED_TABLES}.get(option)
        senders: dict[str, RecordRef] = {}
        by_rule = [
            c for c in candidates
            if c.pending is None and not (c.facts.user or c.facts.category or c.facts.folder)
        ]  # fmt: skip
        moved = self._moved_untracked(folder, by_rule)
        if moved:
            candidates = [c for c in candidates if c.item.id not in moved]
            by_rule = [c for c in by_rule if c.item.id not in moved]
        if rule_tables and by_rule:
            wanted = sorted({a for c in by_rule for a in counterparts(c.item.fields, c.outgoing)})
            if wanted:
                senders = self.directory.resolve(wanted, rule_tables)
        for candidate in candidates:
            fields = candidate.item.fields
            manual = candidate.facts.user or candidate.facts.category or candidate.facts.folder
            thread_matters = candidate.existing is None or (option == "replies" and not manual)
            if thread_matters and needs_more(fields, lookups):
                self._look_further(fields)
            correlation = correlate(fields, lookups, self.settings.token_prefix)
            from_record = any(a in senders for a in counterparts(fields, candidate.outgoing))
            candidate.facts = replace(
                candidate.facts,
                correlated=correlation.email if correlation else None,
                from_record=from_record and option == "records",
                from_enabled=from_record and option == "email_enabled",
            )
            if candidate.pending is not None:
                link = candidate.pending
                explicit = link.way in (USER, FOLDER) and link.regarding is not None
                candidate.decision = Decision(True, link.way, link.regarding, explicit, "retry")
            else:
                candidate.decision = decide(option, candidate.facts)
        chosen = [c for c in candidates if c.decision is not None and c.decision.track]
        new = [c for c in chosen if c.existing is None]
        resolved = (
            self.directory.resolve(all_addresses(c.item.fields for c in new), PARTY_TABLES)
            if new
            else {}
        )
        made: dict[str, MailLink] = dict(moved)
        group: list[_Candidate] = []
        for candidate in chosen:
            if any(c.message_id == candidate.message_id for c in group):
                # a second copy of a message in the group: linked once that one is made
                made.update(self._create(folder, group, resolved))
                group = []
            if self._made.get(candidate.message_id) is None and candidate.existing is None:
                group.append(candidate)
                if len(group) >= self.settings.crm_batch:
                    made.update(self._create(folder, group, resolved))
                    group = []
                continue
            try:
                made[candidate.item.id] = self._track_one(folder, candidate, resolved)
            except STOPS + RAISED:
                raise
            except SideError as error:
                self._park(folder, candidate.item.id, error)
                continue
            self._tracked_one(candidate, made[candidate.item.id])
        made.update(self._create(folder, group, resolved))
        settled = [
            c.item.id for c in candidates if not (c.decision and c.decision.track)
        ]  # decided not to track: nothing left to retry
        parked = [i for i in settled if i in self._parked_ids()]
        if parked:
            self.links.settle(parked)
            self._parked_ids().difference_update(parked)
        return made

    def _look_further(self, fields: Mapping[str, Any]) -> None:
        """The token and the conversation, each asked once a run."""
        token = wanted_tokens(fields, self.settings.token_prefix)
        if token and token not in self._by_token:
            self._by_token[token] = self.directory.email_by_token(token)
        root = conversation_root(fields.get("conversation_index"))
        if root and root not in self._by_conversation:
            self._by_conversation[root] = self.directory.email_by_conversation(
                str(fields.get("conversation_index"))
            )

    def _park(self, folder: str, item_id: str, error: SideError) -> None:
        log.warning("a message could not be tracked: %s", error.message or error)
        self.result.errors += 1
        retry = error.retry_after if isinstance(error, Throttled) else 0.0
        message = f"{type(error).__name__}: {error.message or error.code or ''}".strip()
        self.links.park(item_id, folder, "track", message, retry, self.settings.clock())
        self._parked_ids().add(item_id)

    # --- one message ---------------------------------------------------------------------------

    def _track_one(
        self, folder: str, candidate: _Candidate, resolved: Mapping[str, RecordRef]
    ) -> MailLink:
        decision = candidate.decision
        assert decision is not None
        existing = self._made.get(candidate.message_id) or candidate.existing
        chosen = candidate.pending.email_id if candidate.pending is not None else None
        assert existing is not None, "new messages are made in groups (`_create`)"
        return self._link_existing(folder, candidate, existing, decision, chosen)

    def _tracked_one(self, candidate: _Candidate, link: MailLink) -> None:
        """A message tracked (made or linked): checked later if read by id; no longer parked."""
        if candidate.verify:
            self._made_by_id.append(link)
        if candidate.item.id in self._parked_ids():
            self.links.settle([candidate.item.id])
            self._parked_ids().discard(candidate.item.id)

    def _create(
        self, folder: str, group: Sequence[_Candidate], resolved: Mapping[str, RecordRef]
    ) -> dict[str, MailLink]:
        """Create the group's CRM emails in one call (`create_emails`), then their attachments
        (`add_attachments`). Each message's link, holding the GUID chosen now, is on disk before
        the create, so a crash or a stop retries that very id (the create answers the existing
        row), never two emails; it becomes TAGGING once its email and attachments are in. One
        refused message is parked alone; an error of the whole call stops the run after the
        messages made before it are counted."""
        if not group:
            return {}
        pending: list[MailLink] = []
        emails: list[NewEmail] = []
        for candidate in group:
            item, decision = candidate.item, candidate.decision
            assert decision is not None
            email_id = (
                candidate.pending.email_id if candidate.pending is not None else None
            ) or str(uuid.uuid4())
            pending.append(
                self.links.put(
                    MailLink(
                        key=self.links.key_for(email_id, item.id),
                        mailbox_id=item.id,
                        email_id=email_id,
                        message_id=candidate.message_id,
                        folder=folder,
                        state=PENDING_CRM,
                        way=decision.way or "",
                        regarding=decision.regarding,
                        created=True,
                        version=item.version,
                        verify=candidate.verify
                        or (candidate.pending is not None and candidate.pending.verify),
                    )
                )
            )  # on disk before the create: a crash now retries this very id
            emails.append(
                new_email(
                    email_id,
                    item.id,
                    item.fields,
                    outgoing=candidate.outgoing,
                    resolved=resolved,
                    regarding=decision.regarding,
                )
            )
        answers = self.directory.create_emails(emails)
        stop: SideError | None = None
        written: list[tuple[_Candidate, MailLink, CrmEmail]] = []
        for candidate, link, answer in zip(group, pending, answers, strict=True):
            if isinstance(answer, CrmEmail):
                self._made[candidate.message_id] = answer
                written.append((candidate, link, answer))
            elif isinstance(answer, STOPS + RAISED):
                stop = stop or answer
            else:
                self._park(folder, candidate.item.id, answer)
        failed = self._attach_all([(email.id, c.item) for c, _, email in written])
        made: dict[str, MailLink] = {}
        for candidate, link, email in written:
            if email.id in failed:
                self._park(folder, candidate.item.id, failed[email.id])
                continue
            self.result.tracked += 1
            made[candidate.item.id] = self.links.update(link, state=TAGGING, email_id=email.id)
            self._tracked_one(candidate, made[candidate.item.id])
        if stop is not None:
            raise stop
        return made

    def _link_existing(
        self,
        folder: str,
        candidate: _Candidate,
        existing: CrmEmail,
        decision: Decision,
        chosen: str | None,
    ) -> MailLink:
        item = candidate.item
        ours = chosen is not None and existing.id == chosen  # made by us before a crash
        settings = self.settings
        if ours:
            self._attach(existing.id, item)
        elif not has_party(existing.parties, settings.me, settings.addresses):
            party = my_party(item.fields, settings.me, settings.addresses, candidate.outgoing)
            self.directory.add_parties(existing.id, [party])
            existing = replace(existing, parties=(*existing.parties, party))
        regarding = existing.regarding
        wanted = decision.regarding
        if (
            decision.explicit
            and wanted is not None
            and (regarding is None or regarding.id != wanted.id)
        ):
            self.directory.set_regarding(existing.id, wanted)
            regarding = wanted
            existing = replace(existing, regarding=wanted)
        self._made[candidate.message_id] = existing
        if ours:
            self.result.tracked += 1
        else:
            self.result.linked += 1
        return self.links.put(
            MailLink(
                key=self.links.key_for(existing.id, item.id),
                mailbox_id=item.id,
                email_id=existing.id,
                message_id=candidate.message_id,
                folder=folder,
                state=TAGGING,
                way=decision.way or "",
                regarding=regarding,
                created=ours,
                version=item.version,
                verify=candidate.verify
                or (candidate.pending is not None and candidate.pending.verify),
            )
        )

    def _attachment_limit(self) -> int:
        if self._limit is None:
            self._limit = self.directory.attachment_limit()
        return self._limit

    def _attach(self, email_id: str, item: Upsert) -> None:
        """The message's attachments on the CRM email (see `_attach_all`); an error raised."""
        failed = self._attach_all([(email_id, item)])
        if email_id in failed:
            raise failed[email_id]

    def _attach_all(self, targets: Sequence[tuple[str, Upsert]]) -> dict[str, SideError]:
        """The messages' attachments on their CRM emails (idempotent: our ids), sent together
        (`add_attachments`, ATTACH_BYTES at most held at once); those over the limit or refused
        are skipped with an alert naming the message and the file. Returns email id → the error
        that keeps a message from being tracked now (it is parked); a whole call's error raises."""
        failed: dict[str, SideError] = {}
        wanted = [(e, item) for e, item in targets if item.fields.get("has_attachments")]
        if not wanted:
            return failed
        limit = self._attachment_limit()
        held: list[tuple[NewAttachment, Upsert]] = []
        size = 0
        for email_id, item in wanted:
            try:
                listed = self.mailbox.attachments(item.id, limit)
            except STOPS + RAISED:
                raise
            except SideError as error:
                failed[email_id] = error
                continue
            for index, data in enumerate(listed):
                if data.content is None or data.size > limit:
                    self._skipped(email_id, item, data, limit, "")
                    continue
                key = f"{email_id}/{index}/{data.name}"
                attachment_id = str(uuid.uuid5(ATTACHMENT_NAMESPACE, key))
                held.append((NewAttachment(email_id, attachment_id, data), item))
                size += data.size
            if size >= ATTACH_BYTES:
                self._send_attachments(held, limit, failed)
                held, size = [], 0
        self._send_attachments(held, limit, failed)
        return failed

    def _send_attachments(
        self, held: Sequence[tuple[NewAttachment, Upsert]], limit: int, failed: dict[str, SideError]
    ) -> None:
        if not held:
            return
        answers = self.directory.add_attachments([attachment for attachment, _ in held])
        stop: SideError | None = None
        for (attachment, item), answer in zip(held, answers, strict=True):
            if answer is None:
                continue
            if isinstance(answer, STOPS + RAISED):
                stop = stop or answer
            elif isinstance(answer, Invalid):  # the CRM's own limit (or type block) said no
                self._skipped(attachment.email_id, item, attachment.data, limit, answer.message)
            else:
                failed.setdefault(attachment.email_id, answer)
        if stop is not None:
            raise stop

    def _skipped(
        self, email_id: str, item: Upsert, data: AttachmentData, limit: int, detail: str
    ) -> None:
        self.result.attachments_skipped += 1
        subject: Msg | str = str(item.fields.get("subject") or "") or N_("(no subject)")
        size, most = f"{data.size:,}", f"{limit:,}"
        reason: Msg | str = detail or N_(
            "it is larger (%(size)s bytes) than your organization's attachment limit "
            "(%(limit)s bytes)",
            size=size,
            limit=most,
        )
        raise_alert(
            self.links.database,
            ATTACHMENT_ALERT,
            N_("An attachment was not tracked"),
            N_(
                "The attachment “%(name)s” of the message “%(subject)s” was not added to its "
                "CRM email: %(reason)s. The message is tracked, with its other attachments.",
                name=data.name,
                subject=subject,
                reason=reason,
            ),
            N_(
                "Share the file another way, or ask your administrator to raise the maximum "
                "file size (Settings > Administration > System Settings > Email), then add it "
                "to the email in the CRM."
            ),
            subject=f"{email_id}:{data.name}"[:200],
        )

    # --- the category --------------------------------------------------------------------------

    def _tag(self, links: Sequence[MailLink]) -> list[MailLink]:
        """Put the tracked category on these messages' copies; the links become synced."""
        wanted = [link for link in links if link.mailbox_id]
        if not wanted:
            return []
        results = self.mailbox.set_categories(
            [str(link.mailbox_id) for link in wanted], add=[TRACKED_CATEGORY]
        )
        done: list[MailLink] = []
        for link, result in zip(wanted, results, strict=False):
            if isinstance(result, Written):
                done.append(
                    self.links.update(link, state=SYNCED, tagged=True, version=result.version)
                )
            elif isinstance(result, STOPS):
                done.append(link)  # retried at the next run's start
            elif isinstance(result, NotFound):
                self.links.remove([link.key])  # the message is gone; its CRM email stays
            else:  # the mailbox cannot (POP3) or the message is gone: tracked all the same
                done.append(self.links.update(link, state=SYNCED, tagged=False))
        return done

    # --- the Mail page's actions ------------------------------------------------------------------

    def track_item(self, folder: str, item: Upsert, regarding: RecordRef | None) -> MailLink | None:
        """Track one message now, as the user asked (with `regarding` when given)."""
        made = self._page(folder, [item], forced={item.id: regarding})
        return made.get(item.id)

    def untrack(self, link: MailLink) -> MailLink:
        """Take the category off and keep the link as untracked; the CRM email stays."""
        if link.mailbox_id:
            self.mailbox.set_categories([link.mailbox_id], remove=[TRACKED_CATEGORY])
        self.result.untracked += 1
        return self.links.update(link, state=UNTRACKED)


@dataclass
class TrackingStage:
    """What the messaging job needs to run tracking after the other kinds (`sync.connect`
    builds it from the profile; tests from the memory ports)."""

    directory: EmailDirectory
    mailbox: TrackingMailbox
    settings: TrackSettings
    chosen: bool
    """The user chose tracking (a rule or tracked folders): another incoming method is then
    an alert. False: only the category by hand, which works quietly whenever incoming email is
    this client's and is skipped without a word when it is not."""
    incoming_method: Callable[[], int | None] | None = None
    """Reads the CRM mailbox record's `incomingemaildeliverymethod` (None: no record); None:
    not checked (tests)."""
