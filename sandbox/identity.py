"""Who exists in the sandbox: tenant, organizations, users, passwords and bearer tokens.

Shared by every sandbox server (Dataverse, Global Discovery, EWS, the identity provider), so a
token issued once is accepted everywhere, as an Entra ID token is for its audiences.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field

TENANT_ID = "7f3c2a10-5b1e-4c8e-9a51-0b5d7e2c9f11"
_NAMESPACE = uuid.UUID("3b2f8a3e-64c4-4f57-b4a9-2d6f0e1c7a55")


def stable_id(*parts: str) -> str:
    """A GUID that is the same on every start for the same names (demo data, tests)."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


@dataclass(frozen=True)
class Organization:
    unique_name: str
    friendly_name: str
    url_name: str

    @property
    def id(self) -> str:
        return stable_id("org", self.unique_name)


@dataclass(frozen=True)
class User:
    upn: str
    password: str
    display_name: str
    organizations: tuple[str, ...]

    @property
    def object_id(self) -> str:
        """The user's directory (Entra) object id: the `oid` claim."""
        return stable_id("user", self.upn)

    def systemuser_id(self, org: str) -> str:
        """The user's `systemuserid` in one organization (differs per organization, as in CRM)."""
        return stable_id("systemuser", org, self.upn)

    @property
    def first_name(self) -> str:
        return self.display_name.split()[0]

    @property
    def last_name(self) -> str:
        return self.display_name.split()[-1]


ORGANIZATIONS: tuple[Organization, ...] = (
    Organization("contoso", "Contoso Sandbox", "contoso"),
    Organization("fabrikam", "Fabrikam Sandbox", "fabrikam"),
)

USERS: tuple[User, ...] = (
    User("alice@contoso.example", "alice-Sandbox-1", "Alice Wong", ("contoso", "fabrikam")),
    User("bob@contoso.example", "bob-Sandbox-1", "Bob Kelly", ("contoso",)),
    User("carol@fabrikam.example", "carol-Sandbox-1", "Carol Diaz", ("fabrikam",)),
    User("dave@fabrikam.example", "dave-Sandbox-1", "Dave Osei", ("fabrikam",)),
)


def user_by_upn(upn: str) -> User | None:
    upn = upn.lower()
    return next((u for u in USERS if u.upn == upn), None)


@dataclass
class Grant:
    upn: str
    expires_at: float
    audience: str = "*"
    # (graph) the scopes the token was issued for; None: every scope (static tokens)
    scopes: frozenset[str] | None = None


@dataclass
class TokenRegistry:
    """Bearer tokens the sandbox accepts. Thread-safe; one per sandbox process.

    Each user has one long-lived *static* token (printed by `run.py sandbox --json`, for scripts
    and tests that skip sign-in); the identity provider issues expiring ones on top.
    """

    _grants: dict[str, Grant] = field(default_factory=dict)
    _static: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for user in USERS:
            token = "sbx." + secrets.token_urlsafe(24)
            self._static[user.upn] = token
            self._grants[token] = Grant(user.upn, float("inf"))

    def static_token(self, upn: str) -> str:
        return self._static[upn.lower()]

    def issue(
        self,
        upn: str,
        lifetime: float = 3600.0,
        audience: str = "*",
        scopes: frozenset[str] | None = None,
    ) -> str:
        token = "sbx." + secrets.token_urlsafe(32)
        with self._lock:
            self._grants[token] = Grant(upn.lower(), time.time() + lifetime, audience, scopes)
        return token

    # (graph) begin: what a resource server needs to refuse a token lacking a scope
    def scopes_for(self, token: str) -> frozenset[str] | None:
        """The scopes of a token, lower case and without the resource (`mail.readwrite`);
        None when the token carries every scope (static tokens) or is unknown."""
        with self._lock:
            grant = self._grants.get(token)
        if grant is None or grant.scopes is None:
            return None
        return frozenset(s.rsplit("/", 1)[-1].lower() for s in grant.scopes)

    # (graph) end

    def revoke(self, token: str) -> None:
        with self._lock:
            self._grants.pop(token, None)

    def user_for(self, token: str) -> User | None:
        """The user a bearer token stands for, or None when unknown or expired."""
        with self._lock:
            grant = self._grants.get(token)
        if grant is None or grant.expires_at < time.time():
            return None
        return user_by_upn(grant.upn)

    def user_for_password(self, upn: str, password: str) -> User | None:
        user = user_by_upn(upn.split("\\")[-1])
        if user is None or not secrets.compare_digest(user.password, password):
            return None
        return user
