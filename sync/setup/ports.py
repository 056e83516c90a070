"""What the wizard needs from the outside world, as small ports the tests can fake.

Real adapters (`sync.setup.adapters`) put the Dataverse client, Global Discovery and the
mailbox adapters behind these; the web app and `run.py configure` get a `SetupPorts` and never
import an adapter themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgInfo:
    """An organization as Global Discovery lists it."""

    id: str
    unique_name: str
    friendly_name: str
    url: str
    api_url: str
    version: str = ""


@dataclass(frozen=True)
class CrmUser:
    """A CRM user (`systemusers` row) by id and full name."""

    id: str
    name: str


@dataclass(frozen=True)
class MailboxRecord:
    """A CRM `mailboxes` row: whose it is, its address and its three delivery methods."""

    id: str
    owner_id: str
    email: str
    incoming: int
    outgoing: int
    act: int


@dataclass(frozen=True)
class MailboxConfig:
    """How to reach the user's mailbox (never the passwords: those live in the vault)."""

    type: str  # "exchange" (EWS) | "graph" (Exchange Online through Microsoft Graph) | "pop3"
    email: str
    ews_url: str = ""
    """Empty: found by autodiscover from `email`."""
    found_ews_url: str = ""
    """What autodiscover found when the connection was tested (used while `ews_url` is empty)."""
    auth: str = "oauth"  # exchange: "oauth" | "basic" | "ntlm" (Exchange Server on premises)
    username: str = ""
    pop3_host: str = ""
    pop3_port: int = 995
    pop3_security: str = "ssl"  # "ssl" | "starttls"
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"  # "ssl" | "starttls"


@dataclass(frozen=True)
class ClaimInfo:
    """Who holds the synchronizing-computer claim."""

    instance_id: str
    instance_name: str
    org_id: str = ""
    org_url: str = ""
    claimed_at: datetime | None = None


class ClaimTaken(Exception):
    """Someone else changed the claim since it was read: `current` holds it now."""

    def __init__(self, current: ClaimInfo | None) -> None:
        super().__init__(f"claim held by {current.instance_name if current else 'nobody'}")
        self.current = current


# --- ports ------------------------------------------------------------------------------


class Discovery(Protocol):
    def instances(self) -> list[OrgInfo]:
        """The organizations the signed-in user can reach."""
        ...


class CrmDirectory(Protocol):
    """One organization's users, mailbox records and record counts."""

    def current_user(self) -> CrmUser: ...

    def user_name(self, user_id: str) -> str: ...

    def users(self, limit: int = 200) -> list[CrmUser]:
        """Enabled users (`systemusers`, `isdisabled` false) by full name, at most `limit`:
        the choices of an owner picker."""
        ...

    def mailbox_of_user(self, user_id: str) -> MailboxRecord | None: ...

    def mailboxes_with_address(self, address: str) -> list[MailboxRecord]: ...

    def set_act_delivery_method(self, mailbox_id: str, act: int) -> None:
        """Write the record's method for appointments, contacts and tasks (never the email
        ones). Raises sync.sides.AuthError when the user may not change the record."""
        ...

    # [h1a] email tracking / outgoing email: the wizard points them at this client only when
    # the user turns email on (sync.setup.mailbox.take_email_methods)
    def set_email_delivery_methods(
        self, mailbox_id: str, incoming: int | None = None, outgoing: int | None = None
    ) -> None:
        """Write the record's incoming and/or outgoing email method (None: left out of the
        request). Raises sync.sides.AuthError when the user may not change the record."""
        ...

    def count(self, entity_set: str, odata_filter: str) -> int: ...


class MailboxTester(Protocol):
    def test(self, config: MailboxConfig, secrets: Mapping[str, str]) -> str | None:
        """Open the mailbox once; raises sync.sides.AuthError / Unavailable / Invalid.
        Returns the EWS address it used (autodiscover's find), None for POP3."""
        ...


class GraphProbe(Protocol):
    def has_mailbox(self, address: str) -> bool:
        """Whether the signed-in user's own tenant answers Graph `/me` and
        `/me/mailboxSettings` for `address` (then the mailbox is Exchange Online through Graph)."""
        ...


class ClaimStore(Protocol):
    """Where the claim lives: the mailbox (Exchange) or the organization (POP3)."""

    def read(self) -> ClaimInfo | None: ...

    def take(self, claim: ClaimInfo, expected: ClaimInfo | None) -> ClaimInfo:
        """Write `claim` if the stored one is still `expected`; else raise ClaimTaken."""
        ...


@dataclass
class SetupPorts:
    """Factories for the ports; each step builds only what it needs."""

    discovery: Callable[[], Discovery]
    directory: Callable[[OrgInfo], CrmDirectory]
    mailbox_tester: Callable[[], MailboxTester]
    claims: Callable[[OrgInfo, MailboxConfig, CrmUser], ClaimStore]
    extra: dict[str, object] = field(default_factory=dict)
    graph_probe: Callable[[], GraphProbe] | None = None
    """None: Graph is not asked, the wizard offers EWS as before."""
