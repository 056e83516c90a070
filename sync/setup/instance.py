"""The synchronizing-computer claim: one install per user syncs messaging data.

The claim lives where every computer of the user sees it (DESIGN.md §3): in the Exchange
mailbox through `sync.mailbox.claims` (written with the folder's change key), or, for POP3,
in the organization's `mbs_syncclaims` table (written with the row's ETag). Both stores raise
ClaimTaken when someone else wrote first, so two computers can never both win.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from sync.runs import raise_alert, resolve_alerts
from sync.setup import profile as keys
from sync.setup.messages import N_, Msg, SetupError
from sync.setup.ports import ClaimInfo, ClaimStore, ClaimTaken, OrgInfo
from sync.setup.profile import Profile

MINE, OTHER, NONE = "mine", "other", "none"
LOST_ALERT = "instance-claim-lost"
MAX_INSTANCE_NAME = 100
"""Other computers show the name in a sentence; it is stored in the claim in the mailbox."""


@dataclass(frozen=True)
class ClaimState:
    """mine / other (held by `holder`) / none."""

    status: str
    holder: ClaimInfo | None = None

    @property
    def holder_name(self) -> str:
        return self.holder.instance_name if self.holder else ""


def claim_state(store: ClaimStore, instance_id: str) -> ClaimState:
    current = store.read()
    if current is None:
        return ClaimState(NONE)
    return ClaimState(MINE if current.instance_id == instance_id else OTHER, current)


def _my_claim(profile: Profile, org: OrgInfo | None) -> ClaimInfo:
    return ClaimInfo(
        instance_id=profile.instance_id,
        instance_name=profile.instance_name,
        org_id=org.id if org else "",
        org_url=org.url if org else "",
        claimed_at=datetime.now(UTC),
    )


def clean_instance_name(value: str) -> str:
    """The name other computers show for this one, trimmed; raises SetupError when too long
    or holding control characters (a line break would split the sentences that show it)."""
    name = value.strip()
    if len(name) > MAX_INSTANCE_NAME or any(unicodedata.category(c) == "Cc" for c in name):
        raise SetupError(
            N_(
                "The computer's name is one line of at most %(max)s characters.",
                max=MAX_INSTANCE_NAME,
            ),
            "instance_name",
        )
    return name


def not_synchronizing_reason(holder_name: str) -> Msg:
    return N_("This computer does not synchronize messaging data; %(name)s does.", name=holder_name)


def decide(profile: Profile, store: ClaimStore, take_over: bool | None) -> ClaimState:
    """Settle the step: take the claim (free, or `take_over`), or run without messaging sync.

    `take_over` None means "only if nobody holds it": with another holder it raises a
    SetupError asking the question, so the wizard and `configure` ask the user.
    """
    state = claim_state(store, profile.instance_id)
    if state.status == OTHER and take_over is None:
        raise SetupError(
            N_(
                "Another computer (%(name)s) is the synchronizing computer. Make this "
                "computer the synchronizing computer?",
                name=state.holder_name,
            ),
            "take_over",
        )
    if state.status == OTHER and take_over is False:
        profile.set_messaging(
            False, str(not_synchronizing_reason(state.holder_name)), state.holder_name
        )
        profile.set(keys.INSTANCE_DECIDED, True)
        return state
    if state.status != MINE:
        try:
            store.take(_my_claim(profile, profile.synchronizing_org()), state.holder)
        except ClaimTaken as taken:
            # someone won between our read and our write: tell the user who, ask again
            holder = taken.current.instance_name if taken.current else "?"
            raise SetupError(
                N_(
                    "Another computer (%(name)s) took the claim a moment ago. Look again and "
                    "choose.",
                    name=holder,
                ),
                "take_over",
            ) from None
    profile.set_messaging(True)
    profile.set(keys.INSTANCE_DECIDED, True)
    resolve_alerts(profile.database, LOST_ALERT)
    return claim_state(store, profile.instance_id)


def ensure_still_synchronizing(profile: Profile, store: ClaimStore) -> bool:
    """For the messaging job, every run: False (and an alert, messaging off) when the claim is lost.

    An install that chose "No" (messaging off) is not alerted again; it just does not sync.
    """
    if not profile.messaging_enabled:
        return False
    state = claim_state(store, profile.instance_id)
    if state.status == MINE:
        return True
    if state.status == NONE:  # nobody holds it (cleared by hand?): take it back quietly
        try:
            store.take(_my_claim(profile, profile.synchronizing_org()), None)
            return True
        except ClaimTaken as taken:
            state = ClaimState(OTHER, taken.current)
    name = state.holder_name or "?"
    message = N_("Another computer (%(name)s) is now the synchronizing computer.", name=name)
    profile.set_messaging(False, str(not_synchronizing_reason(name)), name)
    raise_alert(
        profile.database,
        LOST_ALERT,
        title=str(message),
        message="Messaging sync stopped on this computer.",
        action="To sync here again, open the setup wizard's 'Synchronizing computer' step "
        "and make this computer the synchronizing computer.",
        severity="error",
    )
    return False
