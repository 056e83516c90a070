"""Random histories of two users tracking email into one CRM: messages arrive, replies come,
the same message reaches both users, users track and untrack (by hand or on the Mail page),
runs crash at any call or are throttled, an install starts over with an empty database.

The promises, checked after every step (or after every clean run where a run must settle):
- one CRM email per Internet Message-Id, whatever crashed;
- after a clean run, every message carrying the tracked category is linked to the CRM email of
  its Message-Id, and every linked message carries the category (where the user did not just
  take it off);
- a message the user untracked is never tracked again by a rule or folder (nor its CRM email
  made again), until the user tracks it again.
(tests/engine/test_engine_stateful.py is the model for the contacts, tasks and appointments.)
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sync.mail.links import SYNCED, UNTRACKED
from sync.mail.ports import NewEmail
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.memory import Crash
from sync.sides import Throttled, Unavailable
from tests.mail.email_world import (
    ALICE,
    BOB,
    CAROL,
    LEE,
    STRANGER,
    User,
    World,
    make_world,
    new_database,
)

SENDERS = st.sampled_from([CAROL, LEE, STRANGER, BOB])
WHO = st.sampled_from([ALICE, BOB])
PICK = st.integers(0, 30)


class EmailMachine(RuleBasedStateMachine):
    @initialize(option=st.sampled_from(["all", "replies", "none", "records"]))
    def setup(self, option: str) -> None:
        self.world: World = make_world(page_size=2)
        for user in self.world.users.values():
            user.option(option)
            user.with_folder(user.mailbox.add_folder("Projects"), self.world.deal)
        self.numbers = itertools.count(1)
        self.untracked: dict[str, dict[str, str]] = {ALICE: {}, BOB: {}}
        """Per user, the messages (item id → Message-Id) untracked and not tracked again."""
        self.settled = {ALICE: False, BOB: False}
        self.crm_email = self.world.alice.directory.create_email(
            NewEmail(
                "e-seed",
                "Offer CRM:0000000007",
                "",
                "<seed@contoso>",
                True,
                None,
                None,
                (),
                tracking_token="CRM:0000000007",
                regarding=self.world.deal,
            )
        )

    def user(self, who: str) -> User:
        return self.world.users[who]

    def messages(self, who: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(folder, item id, fields) of every message in the user's mailbox, in a stable order."""
        mailbox = self.user(who).mailbox
        found = []
        for kind in sorted(k for k in mailbox.tables if k.startswith("messages:")):
            for item_id, record in sorted(mailbox.records(kind).items()):
                found.append((kind.split(":", 1)[1], item_id, record.fields))
        return found

    def pick(self, who: str, index: int) -> tuple[str, str, dict[str, Any]] | None:
        found = self.messages(who)
        return found[index % len(found)] if found else None

    def touched(self, who: str) -> None:
        self.settled[who] = False

    # --- what happens in the mailboxes ----------------------------------------------------------

    @rule(who=WHO, sender=SENDERS, category=st.booleans())
    def receive(self, who: str, sender: str, category: bool) -> None:
        number = next(self.numbers)
        self.user(who).receive(
            message_id=f"<m{number}@x>",
            sender=sender,
            subject=f"Message {number}",
            categories=[TRACKED_CATEGORY] if category else [],
        )
        self.touched(who)

    @rule(who=WHO, index=PICK, by_token=st.booleans())
    def reply(self, who: str, index: int, by_token: bool) -> None:
        """A reply to a CRM email (one tracked so far, or the seed), by In-Reply-To or by the
        token alone."""
        emails = sorted(self.world.org.emails.values(), key=lambda e: e.id)
        original = emails[index % len(emails)]
        number = next(self.numbers)
        fields: dict[str, Any] = {"message_id": f"<r{number}@x>", "sender": CAROL}
        if by_token:
            fields["subject"] = "RE: Offer CRM:0000000007"
        else:
            fields["subject"] = f"RE: {original.email.subject}"
            fields["in_reply_to"] = original.email.message_id
        self.user(who).receive(**fields)
        self.touched(who)

    @rule(index=PICK)
    def second_user(self, index: int) -> None:
        """Bob gets a copy of a message Alice has (the same Message-Id)."""
        found = self.pick(ALICE, index)
        if found is None:
            return
        _folder, _item, fields = found
        self.world.bob.receive(
            message_id=fields["message_id"], sender=fields.get("sender") or CAROL,
            subject=fields.get("subject") or "", in_reply_to=fields.get("in_reply_to"),
        )  # fmt: skip
        self.touched(BOB)

    @rule(who=WHO, index=PICK)
    def untrack_by_hand(self, who: str, index: int) -> None:
        found = self.pick(who, index)
        if found is None or TRACKED_CATEGORY not in (found[2].get("categories") or []):
            return
        _folder, item_id, fields = found
        links = self.user(who).links.by_mailbox([item_id])
        if item_id in links and links[item_id].state == SYNCED:
            self.untracked[who][item_id] = fields["message_id"]
        self.user(who).mailbox.categorize(item_id, [])
        self.touched(who)

    @rule(who=WHO, index=PICK)
    def track_by_hand(self, who: str, index: int) -> None:
        found = self.pick(who, index)
        if found is None:
            return
        _folder, item_id, fields = found
        self.user(who).mailbox.categorize(item_id, [TRACKED_CATEGORY])
        self.untracked[who].pop(item_id, None)
        self.touched(who)

    @rule(who=WHO, index=PICK)
    def move(self, who: str, index: int) -> None:
        """The user files a message in the tracked folder (or back in the Inbox): it gets a
        new item id there, as EWS may give."""
        found = self.pick(who, index)
        if found is None or found[0] == "sentitems":
            return
        folder, item_id, _fields = found
        mailbox = self.user(who).mailbox
        target = "inbox" if folder != "inbox" else next(iter(mailbox.folders))
        new_id = mailbox.move(item_id, target)
        if item_id in self.untracked[who]:
            message_id = self.untracked[who].pop(item_id)
            if target == "inbox":  # filed in the tracked folder: tracked by hand again
                self.untracked[who][new_id] = message_id
        self.touched(who)

    @rule(who=WHO, index=PICK)
    def delete(self, who: str, index: int) -> None:
        found = self.pick(who, index)
        if found is not None:
            self.user(who).mailbox.delete_message(found[1])
            self.touched(who)

    # --- the Mail page ------------------------------------------------------------------------------

    @rule(who=WHO, index=PICK, crash_at=st.one_of(st.none(), st.integers(1, 6)))
    def track(self, who: str, index: int, crash_at: int | None) -> None:
        found = self.pick(who, index)
        if found is None:
            return
        folder, item_id, fields = found
        user = self.user(who)
        [item] = user.mailbox.read(f"messages:{folder}", [item_id]).values()
        self.untracked[who].pop(item_id, None)
        self.touched(who)
        with self.crashing(user, crash_at):
            user.tracker().track_item(folder, item, self.world.carol)

    @rule(who=WHO, index=PICK)
    def untrack(self, who: str, index: int) -> None:
        user = self.user(who)
        links = sorted((lk for lk in user.links.all() if lk.state == SYNCED), key=lambda lk: lk.key)
        if not links:
            return
        link = links[index % len(links)]
        user.tracker().untrack(link)
        self.untracked[who][str(link.mailbox_id)] = link.message_id
        self.touched(who)

    # --- runs ----------------------------------------------------------------------------------

    def crashing(self, user: User, crash_at: int | None, throttle_at: int | None = None) -> Any:
        machine = self

        class Hooked:
            def __enter__(self) -> None:
                calls = itertools.count(1)

                def hook(point: str, operation: str) -> None:
                    number = next(calls)
                    if crash_at is not None and number == crash_at:
                        raise Crash(f"died at {point} {operation}")
                    if throttle_at is not None and number == throttle_at and point == "before":
                        raise Throttled("slow down", retry_after=1) if number % 2 else Unavailable()

                machine.world.org.hook = hook
                user.mailbox.mail_hook = hook

            def __exit__(self, kind: Any, error: Any, _tb: Any) -> bool:
                machine.world.org.hook = None
                user.mailbox.mail_hook = None
                return isinstance(error, Crash)

        return Hooked()

    @rule(
        who=WHO,
        crash_at=st.one_of(st.none(), st.integers(1, 25)),
        throttle_at=st.one_of(st.none(), st.integers(1, 25)),
    )
    def run(self, who: str, crash_at: int | None, throttle_at: int | None) -> None:
        user = self.user(who)
        clean = crash_at is None and throttle_at is None
        with self.crashing(user, crash_at, throttle_at):
            result = user.run()
            clean = clean or (not result.stopped and result.errors == 0)
        # a whole run settles what any earlier one left (pending creates, categories)
        self.settled[who] = clean and crash_at is None

    def clean_run(self, user: User) -> bool:
        """A run with nothing in the way; True when it went through."""
        user.clock += timedelta(days=1)  # parked items are due
        result = user.run()
        return not result.stopped and result.errors == 0

    @rule(who=WHO)
    def reinstall(self, who: str) -> None:
        """A fresh install: an empty local database against the same CRM and mailbox. The
        untracked marks live in that database, so they are gone with it (the category being
        gone is all that remains of them)."""
        self.user(who).database = new_database()
        self.untracked[who].clear()
        self.touched(who)

    # --- the promises ---------------------------------------------------------------------------

    @invariant()
    def one_email_per_message_id(self) -> None:
        if not hasattr(self, "world"):
            return
        counts = Counter(e.email.message_id for e in self.world.org.emails.values())
        assert not [m for m, n in counts.items() if n > 1], counts

    @precondition(lambda self: hasattr(self, "world"))
    @invariant()
    def settled_users_are_consistent(self) -> None:
        for who, settled in self.settled.items():
            if settled:
                self.check_user(who)

    def check_user(self, who: str) -> None:
        user = self.user(who)
        links = {lk.mailbox_id: lk for lk in user.links.all()}
        emails = self.world.org.emails
        untracked_ids = set(self.untracked[who].values())
        for _folder, item_id, fields in self.messages(who):
            link = links.get(item_id)
            tagged = TRACKED_CATEGORY in (fields.get("categories") or [])
            if item_id in self.untracked[who]:
                assert not tagged, f"{who}: untracked {fields['message_id']} tracked again"
                assert link is None or link.state == UNTRACKED, link  # None: moved since
                continue
            if fields["message_id"] in untracked_ids and (link is None or link.state != SYNCED):
                # another copy of a message the user untracked: no rule takes it
                assert not tagged, f"{who}: a copy of untracked {fields['message_id']} tracked"
                continue
            if tagged:
                assert link is not None and link.state == SYNCED, (who, fields, link)
                assert link.email_id in emails
                assert emails[link.email_id].email.message_id == fields["message_id"]
            if link is not None and link.state == SYNCED:
                assert tagged, f"{who}: linked message {fields['message_id']} lost its category"
        present = {item_id for _folder, item_id, _fields in self.messages(who)}
        for link in links.values():
            assert link.state in (SYNCED, UNTRACKED), f"{who}: left unsettled: {link}"
            if link.state == SYNCED:
                assert link.mailbox_id in present, f"{who}: link to a gone message {link}"

    def teardown(self) -> None:
        if not hasattr(self, "world"):
            return
        for who in (ALICE, BOB):
            user = self.user(who)
            self.settled[who] = self.clean_run(user)
            assert self.settled[who]
            self.check_user(who)
            again = user.run()
            assert (again.tracked, again.linked, again.untracked, again.errors) == (0, 0, 0, 0)
        self.one_email_per_message_id()


EmailMachine.TestCase.settings = hsettings(max_examples=300, stateful_step_count=20, deadline=None)
TestEmailTracking = EmailMachine.TestCase
