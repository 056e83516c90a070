"""In-memory ports for the wizard: the tests' fakes, and a way to try the wizard offline.

One `MemoryWorld` holds organizations, users, mailbox records, record counts and the claims;
several installs (two data dirs) can share it, as two computers share a tenant.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from sync.setup.ports import (
    ClaimInfo,
    ClaimTaken,
    CrmUser,
    MailboxConfig,
    MailboxRecord,
    OrgInfo,
    SetupPorts,
)
from sync.sides import AuthError, Unavailable


@dataclass
class MemoryOrg:
    info: OrgInfo
    users: dict[str, CrmUser] = field(default_factory=dict)
    """systemuserid → user"""
    upn_to_user: dict[str, str] = field(default_factory=dict)
    mailboxes: dict[str, MailboxRecord] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """OData filter → count (missing filters count 0)"""
    may_edit_mailboxes: bool = True


@dataclass
class MemoryWorld:
    """Everything the fakes answer from; tests change it to set up a case."""

    orgs: dict[str, MemoryOrg] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    """mailbox address → password that the fake mailbox accepts"""
    unreachable_hosts: set[str] = field(default_factory=set)
    claims: dict[str, ClaimInfo] = field(default_factory=dict)
    """claim location (mailbox address) → claim"""
    tests: list[str] = field(default_factory=list)
    graph_mailboxes: set[str] = field(default_factory=set)
    """Addresses whose owner's tenant answers Microsoft Graph (Exchange Online): the wizard
    picks Graph for them (empty: every mailbox is reached through EWS)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_org(self, info: OrgInfo) -> MemoryOrg:
        self.orgs[info.id] = MemoryOrg(info)
        return self.orgs[info.id]

    def add_user(self, org_id: str, upn: str, user: CrmUser, mailbox: MailboxRecord) -> None:
        org = self.orgs[org_id]
        org.users[user.id] = user
        org.upn_to_user[upn.lower()] = user.id
        org.mailboxes[mailbox.id] = mailbox


class MemoryDiscovery:
    def __init__(self, world: MemoryWorld, upn: str) -> None:
        self.world, self.upn = world, upn.lower()

    def instances(self) -> list[OrgInfo]:
        return [o.info for o in self.world.orgs.values() if self.upn in o.upn_to_user]


class MemoryDirectory:
    def __init__(self, world: MemoryWorld, org_id: str, upn: str) -> None:
        self.world, self.org, self.upn = world, world.orgs[org_id], upn.lower()

    def current_user(self) -> CrmUser:
        user_id = self.org.upn_to_user.get(self.upn)
        if user_id is None:
            raise AuthError(f"{self.upn} is not a user of {self.org.info.unique_name}")
        return self.org.users[user_id]

    def user_name(self, user_id: str) -> str:
        user = self.org.users.get(user_id)
        return user.name if user else user_id

    def users(self, limit: int = 200) -> list[CrmUser]:
        return sorted(self.org.users.values(), key=lambda u: u.name.casefold())[:limit]

    def mailbox_of_user(self, user_id: str) -> MailboxRecord | None:
        return next((m for m in self.org.mailboxes.values() if m.owner_id == user_id), None)

    def mailboxes_with_address(self, address: str) -> list[MailboxRecord]:
        return [m for m in self.org.mailboxes.values() if m.email.lower() == address.lower()]

    def set_act_delivery_method(self, mailbox_id: str, act: int) -> None:
        if not self.org.may_edit_mailboxes:
            raise AuthError("no privilege on mailbox")
        self.org.mailboxes[mailbox_id] = replace(self.org.mailboxes[mailbox_id], act=act)

    def set_email_delivery_methods(  # [h1a]
        self, mailbox_id: str, incoming: int | None = None, outgoing: int | None = None
    ) -> None:
        if not self.org.may_edit_mailboxes:
            raise AuthError("no privilege on mailbox")
        record = self.org.mailboxes[mailbox_id]
        self.org.mailboxes[mailbox_id] = replace(
            record,
            incoming=record.incoming if incoming is None else incoming,
            outgoing=record.outgoing if outgoing is None else outgoing,
        )

    def count(self, entity_set: str, odata_filter: str) -> int:
        return self.org.counts.get(f"{entity_set}?{odata_filter}", 0)


class MemoryTester:
    def __init__(self, world: MemoryWorld) -> None:
        self.world = world

    def test(self, config: MailboxConfig, secrets: Mapping[str, str]) -> str | None:
        self.world.tests.append(config.email)
        if config.type == "graph":
            if config.email.lower() not in self.world.graph_mailboxes:
                raise AuthError("no Exchange Online mailbox", "ErrorAccessDenied")
            return None
        host = config.ews_url or config.pop3_host
        if host and any(h in host for h in self.world.unreachable_hosts):
            raise Unavailable("connection refused")
        expected = self.world.passwords.get(config.email.lower())
        used = (
            (config.ews_url or "https://mail.example.com/EWS/Exchange.asmx")
            if (config.type == "exchange")
            else None
        )
        if config.type == "exchange" and config.auth == "oauth":
            return used  # the signed-in token: accepted
        if expected is None or secrets.get("mailbox_password") != expected:
            raise AuthError("wrong password")
        return used


class MemoryGraphProbe:
    """`GraphProbe` answering from `world.graph_mailboxes`."""

    def __init__(self, world: MemoryWorld) -> None:
        self.world = world

    def has_mailbox(self, address: str) -> bool:
        return address.strip().lower() in self.world.graph_mailboxes


class MemoryClaims:
    """The claim store of one mailbox; `take` is compare-and-set under a lock."""

    def __init__(self, world: MemoryWorld, location: str) -> None:
        self.world, self.location = world, location.lower()

    def read(self) -> ClaimInfo | None:
        with self.world.lock:
            return self.world.claims.get(self.location)

    def take(self, claim: ClaimInfo, expected: ClaimInfo | None) -> ClaimInfo:
        with self.world.lock:
            current = self.world.claims.get(self.location)
            if current != expected:
                raise ClaimTaken(current)
            self.world.claims[self.location] = claim
            return claim


def memory_ports(world: MemoryWorld, upn: str) -> SetupPorts:
    """Ports answering from `world` for the user `upn`."""
    return SetupPorts(
        discovery=lambda: MemoryDiscovery(world, upn),
        directory=lambda org: MemoryDirectory(world, org.id, upn),
        mailbox_tester=lambda: MemoryTester(world),
        claims=lambda org, mailbox, user: MemoryClaims(
            world, mailbox.email if mailbox.type == "exchange" else f"{org.id}/{user.id}"
        ),
        graph_probe=lambda: MemoryGraphProbe(world),
    )


def demo_world() -> MemoryWorld:
    """Two organizations with the sandbox's users and passwords.

    Alice's delivery methods already name this client in contoso and server-side sync in
    fabrikam, so both paths of the mailbox step can be seen.
    """
    world = MemoryWorld()
    contoso = world.add_org(
        OrgInfo(
            "11111111-1111-1111-1111-111111111111",
            "contoso",
            "Contoso Sandbox",
            "https://contoso.example/",
            "https://contoso.example/api/data/v9.2/",
        )
    )
    fabrikam = world.add_org(
        OrgInfo(
            "22222222-2222-2222-2222-222222222222",
            "fabrikam",
            "Fabrikam Sandbox",
            "https://fabrikam.example/",
            "https://fabrikam.example/api/data/v9.2/",
        )
    )
    people = [
        (contoso, "alice@contoso.example", "Alice Wong", (1, 1, 0)),
        (contoso, "bob@contoso.example", "Bob Kelly", (2, 2, 1)),
        (fabrikam, "alice@contoso.example", "Alice Wong", (2, 2, 1)),
        (fabrikam, "carol@fabrikam.example", "Carol Diaz", (2, 2, 1)),
    ]
    for number, (org, upn, name, methods) in enumerate(people, start=1):
        user_id = f"{number:08d}-0000-0000-0000-{org.info.unique_name[:4].encode().hex():0>12}"
        mailbox_id = user_id.replace("-0000-0000-", "-1111-0000-")
        world.add_user(
            org.info.id,
            upn,
            CrmUser(user_id, name),
            MailboxRecord(mailbox_id, user_id, upn, *methods),
        )
        world.passwords[upn] = f"{upn.split('@')[0]}-Sandbox-1"
    return world
