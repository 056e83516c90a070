"""Should a message be tracked, and with which Regarding (pure).

The ways, strongest first, as in Dynamics:
- the user: the Mail page's Track (or Set Regarding) — always, with the Regarding given;
- the category `Tracked to Dynamics 365` put on the message by hand in Outlook — always, even
  on a message the user untracked before (putting the category back tracks it again);
- a tracked folder under the Inbox — its messages, with the folder's Regarding when it has one;
- the automatic rule of the personal option, for messages since the tracking start:
  "all" every message; "replies" a message that answers a CRM email (see `correlate`);
  "records" a message from a CRM contact, lead or account (for a sent message: to one);
  "email_enabled" the same over every email-enabled table (users too).
A message the user untracked is never tracked again by the rule, nor by the folder it is in;
filing it in a tracked folder afterwards (a new copy there) tracks it again.

Regarding: the user's, else the tracked folder's, else the correlated thread's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sync.mail.facade import RecordRef
from sync.mail.ports import CrmEmail

USER: Final = "user"
CATEGORY: Final = "category"
FOLDER: Final = "folder"
RULE: Final = "rule"

RECORD_TABLES: Final = ("contacts", "leads", "accounts")
"""The "records" option's tables (Dynamics: email from CRM contacts, leads and accounts)."""
EMAIL_ENABLED_TABLES: Final = ("contacts", "leads", "accounts", "systemusers")
"""The email-enabled tables the "email_enabled" option looks in: those the sandbox has too
(Dynamics also counts queues, and any custom table made email-enabled)."""
PARTY_TABLES: Final = ("contacts", "systemusers", "leads", "accounts")
"""Where a party's address is looked up, in order (as sync.crm.parties resolves attendees)."""


@dataclass(frozen=True)
class Facts:
    """What is known of one message when deciding."""

    category: bool = False
    """It carries the tracked category."""
    folder: bool = False
    """It is in a tracked folder."""
    folder_regarding: RecordRef | None = None
    user: bool = False
    """The user asked (Track / Set Regarding)."""
    user_regarding: RecordRef | None = None
    untracked: bool = False
    """The user untracked this very message (its item) before."""
    untracked_copy: bool = False
    """The user untracked a message of the same Message-Id (this copy moved, or another copy):
    no rule tracks it, but filing it in a tracked folder is tracking it by hand again."""
    in_window: bool = True
    """Received (or sent) since the tracking start minus the days back."""
    correlated: CrmEmail | None = None
    from_record: bool = False
    """Sender (incoming) or a recipient (outgoing) is a record of RECORD_TABLES."""
    from_enabled: bool = False
    """… of EMAIL_ENABLED_TABLES."""


@dataclass(frozen=True)
class Decision:
    track: bool
    way: str | None = None
    regarding: RecordRef | None = None
    explicit: bool = False
    """The Regarding was given (user or folder), not inherited from the thread: it may
    replace the one an existing CRM email has."""
    reason: str = ""


def rule_applies(option: str, facts: Facts) -> bool:
    """Whether the automatic option tracks the message (the start date included)."""
    if option == "none" or not facts.in_window:
        return False
    if option == "all":
        return True
    if option == "replies":
        return facts.correlated is not None
    if option == "records":
        return facts.from_record
    if option == "email_enabled":
        return facts.from_enabled
    return False


def may_track(option: str, facts: Facts) -> bool:
    """Whether the message could be tracked before the CRM is asked anything (no request for
    a message that no way could track)."""
    if facts.user or facts.category:
        return True
    if facts.untracked:
        return False
    if facts.folder:
        return True
    return not facts.untracked_copy and option != "none" and facts.in_window


def decide(option: str, facts: Facts) -> Decision:
    """The decision for one message."""
    thread = facts.correlated.regarding if facts.correlated is not None else None
    if facts.user:
        regarding = facts.user_regarding or facts.folder_regarding or thread
        explicit = facts.user_regarding is not None or facts.folder_regarding is not None
        return Decision(True, USER, regarding, explicit, "tracked by the user")
    if facts.category:
        regarding = facts.folder_regarding or thread
        return Decision(True, CATEGORY, regarding, facts.folder_regarding is not None,
                        "the tracked category is on it")  # fmt: skip
    if facts.untracked:
        return Decision(False, reason="the user untracked it")
    if facts.folder:
        regarding = facts.folder_regarding or thread
        return Decision(True, FOLDER, regarding, facts.folder_regarding is not None,
                        "it is in a tracked folder")  # fmt: skip
    if facts.untracked_copy:
        return Decision(False, reason="the user untracked this message")
    if rule_applies(option, facts):
        return Decision(True, RULE, thread, False, f"the {option!r} option")
    if option != "none" and not facts.in_window:
        return Decision(False, reason="older than the tracking start")
    return Decision(False, reason=f"not tracked by the {option!r} option")


def in_window(moment: datetime | None, start: datetime | None) -> bool:
    """Whether a message of `moment` is recent enough for the rule (no date: it is new)."""
    return start is None or moment is None or moment >= start
