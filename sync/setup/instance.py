"""The synchronizing-computer claim: one install per user syncs messaging data.

The claim lives where every computer of the user sees it (DESIGN.md §3): in the Exchange
mailbox through `sync.mailbox.claims` (written with the folder's change key), or, for POP3,
in the organization: a note (`annotations`, a table every organization has, so nothing needs
creating or customizing) of the user's with an id derived from the user id, written with the
row's ETag (`NoteClaims`). Both stores raise ClaimTaken when someone else wrote first, so two
computers can never both win.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.runs import raise_alert, resolve_alerts
from sync.setup import profile as keys
from sync.setup.messages import N_, Msg, SetupError
from sync.setup.ports import ClaimInfo, ClaimStore, ClaimTaken, OrgInfo
from sync.setup.profile import Profile

MINE, OTHER, NONE = "mine", "other", "none"
NOTES = "annotations"
CLAIM_NOTE_SUBJECT = "Mailbox Sync for Dynamics 365: the synchronizing computer"
"""The title of the claim's note, as CRM users see it (it holds only the computer's name)."""
_CLAIM_NAMESPACE = uuid.UUID("5d0c6f0e-2b7a-4a8f-9f39-61a3f0b2c4d1")
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
        title=message,
        message=N_("Messaging sync stopped on this computer."),
        action=N_(
            "To sync here again, open the setup wizard's 'Synchronizing computer' step "
            "and make this computer the synchronizing computer."
        ),
        severity="error",
    )
    return False


class NoteClaims:
    """The POP3 claim in the organization, in a note: one per CRM user, its `annotationid`
    derived from the user id, so every computer of the user reads and writes the same row.

    Why a note: `annotations` exists in every organization and users may write their own
    notes, whereas a table of our own (`mbs_syncclaims`) exists only where an administrator
    created it: elsewhere its first request is a 404 (reference/entities/annotation.md lists
    Create, Retrieve and Update with a caller-chosen `annotationid`).

    A first claim is a create with that id (of two creates one gets Duplicate, 412
    0x80040237); a change is a PATCH with the row's ETag (a stale one: Conflict). Either way
    the loser is told who holds it (ClaimTaken)."""

    def __init__(self, client: Any, user_id: str) -> None:
        self.client = client
        """A sync.crm.client.DataverseClient (get / create / update)."""
        self.user_id = user_id
        self.row_id = str(uuid.uuid5(_CLAIM_NAMESPACE, f"note/{user_id.lower()}"))
        self._etag: str | None = None

    def read(self) -> ClaimInfo | None:
        """The claim as the organization holds it (one GET; None: nobody claimed yet)."""
        from sync.sides import NotFound

        try:
            row = self.client.get(NOTES, self.row_id, select=["notetext", "modifiedon"])
        except NotFound:
            self._etag = None
            return None
        self._etag = row.get("@odata.etag")
        try:
            data = json.loads(str(row.get("notetext") or ""))
        except ValueError:
            return None  # edited by hand into something else: free to take (with its ETag)
        if not isinstance(data, dict) or not data.get("instance_id"):
            return None
        return ClaimInfo(
            instance_id=str(data["instance_id"]),
            instance_name=str(data.get("instance_name") or ""),
            org_id=str(data.get("org_id") or ""),
            org_url=str(data.get("org_url") or ""),
            claimed_at=_parse_time(row.get("modifiedon")),
        )

    def take(self, claim: ClaimInfo, expected: ClaimInfo | None) -> ClaimInfo:
        """Write `claim` if the stored one is still `expected`; else raise ClaimTaken."""
        from sync.sides import Conflict, Duplicate

        current = self.read()
        if _holder(current) != _holder(expected):
            raise ClaimTaken(current)
        text = {
            "instance_id": claim.instance_id,
            "instance_name": claim.instance_name,
            "org_id": claim.org_id,
            "org_url": claim.org_url,
            "systemuserid": self.user_id,
        }
        body = {"subject": CLAIM_NOTE_SUBJECT, "notetext": json.dumps(text, sort_keys=True)}
        try:
            if self._etag is None:
                self.client.create(NOTES, body, id=self.row_id)
            else:
                self.client.update(NOTES, self.row_id, body, if_match=self._etag)
        except (Duplicate, Conflict):
            raise ClaimTaken(self.read()) from None
        return claim


def _holder(claim: ClaimInfo | None) -> str | None:
    return claim.instance_id if claim else None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
