"""Who consented to which scopes of the sandbox's app registration: per user, per scope, and
for the whole tenant (an administrator's consent).

Entra keeps a delegated permission grant per user (user consent) or for every user of the
tenant (admin consent). A token request for a scope nobody granted is refused with AADSTS65001
DelegationDoesNotExist, `invalid_grant` with `suberror` `consent_required`, and the app must send
an interactive authorization request for that resource; where users may not consent, only an
administrator can grant it (AADSTS90094 AdminConsentRequired). Sources: Microsoft Entra
reference-error-codes.md and application-sign-in-unexpected-user-consent-error.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from sandbox.idp.grants import OIDC_SCOPES

GRANTED, USER, ADMIN = "granted", "user", "admin"
MODES = (GRANTED, USER, ADMIN)
"""granted: every user has consented to every scope (the default, so the demo and the tests
that do not look at consent sign in as before); user: each user consents per scope on a
consent page, as in a tenant that allows user consent; admin: users may not consent (the
tenant setting "Do not allow user consent"), only an administrator, for the whole tenant."""

SANDBOX_ADMINS = frozenset({"dave@fabrikam.example"})
"""The sandbox tenant's administrator (may consent on behalf of the organization)."""
ALL_SCOPES = "*"
"""A tenant-wide grant of every permission the app registration asks for."""


def normalise(scope: str) -> str:
    """Scopes compare without regard to case, as Entra's do."""
    return scope.strip().lower()


@dataclass
class ConsentStore:
    """Thread-safe consent records, kept in memory (a restarted sandbox forgets them)."""

    mode: str = GRANTED
    admins: frozenset[str] = SANDBOX_ADMINS
    _users: dict[str, set[str]] = field(default_factory=dict)
    _tenant: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"consent mode must be one of {', '.join(MODES)}")
        self.mode = mode

    def missing(self, upn: str, scopes: Iterable[str]) -> list[str]:
        """The scopes of a request nobody consented to for `upn` (OpenID scopes need none)."""
        if self.mode == GRANTED:
            return []
        wanted = [s for s in scopes if normalise(s) not in OIDC_SCOPES]
        with self._lock:
            if ALL_SCOPES in self._tenant:
                return []
            granted = self._users.get(upn.lower(), set()) | self._tenant
        return [s for s in wanted if normalise(s) not in granted]

    def may_consent(self, upn: str) -> bool:
        """Whether this user may consent (in admin mode, only an administrator)."""
        return self.mode != ADMIN or self.is_admin(upn)

    def is_admin(self, upn: str) -> bool:
        return upn.lower() in self.admins

    def grant(self, upn: str, scopes: Iterable[str]) -> None:
        """The user consented to `scopes` for themselves."""
        with self._lock:
            self._users.setdefault(upn.lower(), set()).update(normalise(s) for s in scopes)

    def grant_tenant(self, scopes: Iterable[str] = (ALL_SCOPES,)) -> None:
        """An administrator consented for every user of the tenant."""
        with self._lock:
            self._tenant.update(s if s == ALL_SCOPES else normalise(s) for s in scopes)

    def revoke(self, upn: str | None = None) -> None:
        """Withdraw one user's consents (None: every consent, the tenant's too)."""
        with self._lock:
            if upn is None:
                self._users.clear()
                self._tenant.clear()
            else:
                self._users.pop(upn.lower(), None)
