"""What the sandbox identity provider remembers between requests: logins in progress,
authorization codes and refresh tokens, with the checks Entra ID makes when they are redeemed.

Kept in memory (a sandbox restart signs everyone out, as a revoked session would).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.identity import stable_id

SANDBOX_CLIENT_ID = stable_id("app", "mailbox-sync-public-client")
"""The app registration the sandbox knows: a public client (no secret), loopback redirects."""

KNOWN_CLIENTS = frozenset({SANDBOX_CLIENT_ID})
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
GRAPH = "https://graph.microsoft.com"
CODE_LIFETIME = 600.0  # Entra: authorization codes live about 10 minutes
REFRESH_LIFETIME = 90 * 24 * 3600.0  # Entra: refresh tokens, 90 days


class OAuthError(Exception):
    """An OAuth 2.0 error answer (RFC 6749 §5.2) with Entra's AADSTS code in the description."""

    def __init__(
        self,
        error: str,
        aadsts: int,
        description: str,
        status: int = 400,
        suberror: str | None = None,
    ) -> None:
        super().__init__(f"{error}: AADSTS{aadsts}: {description}")
        self.error = error
        self.aadsts = aadsts
        self.description = f"AADSTS{aadsts}: {description}"
        self.status = status
        self.suberror = suberror
        """Entra's finer reason beside `error`, e.g. `consent_required` with invalid_grant."""


def is_loopback_redirect(uri: str) -> bool:
    """Entra lets public clients redirect to http://localhost or 127.0.0.1 on any port."""
    parts = urlsplit(uri)
    return (
        parts.scheme == "http"
        and parts.hostname in ("127.0.0.1", "localhost", "::1")
        and not parts.fragment
    )


def s256(verifier: str) -> str:
    """The PKCE S256 transform (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def resource_of(scope: str) -> str | None:
    """The resource (audience) a scope belongs to: `https://org/user_impersonation` →
    `https://org`; a bare Graph permission like `Mail.Read` → Graph; OIDC scopes → None."""
    if scope in OIDC_SCOPES:
        return None
    if "/" in scope:
        return scope.rsplit("/", 1)[0]
    return GRAPH


def audience_for(scopes: list[str]) -> tuple[str, list[str]]:
    """The one audience a token request is for and the scopes granted for it.

    Like Entra, one access token is for one resource (AADSTS28000 otherwise); a request with
    only OpenID scopes gets a Graph token.
    """
    resources = {r for r in map(resource_of, scopes) if r is not None}
    if len(resources) > 1:
        raise OAuthError(
            "invalid_scope",
            28000,
            "Provided value for the input parameter scope is not valid because it contains "
            "more than one resource.",
        )
    if not resources:
        return GRAPH, [s for s in scopes if s != "offline_access"]
    audience = resources.pop()
    return audience, [s for s in scopes if resource_of(s) == audience]


@dataclass(frozen=True)
class AuthRequest:
    """A validated authorization request, waiting for the user to sign in."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str
    response_mode: str
    login_hint: str = ""


@dataclass
class CodeGrant:
    request: AuthRequest
    upn: str
    expires_at: float
    redeemed: bool = False


@dataclass
class RefreshGrant:
    upn: str
    client_id: str
    expires_at: float


@dataclass
class GrantStore:
    """Thread-safe memory of logins, codes and refresh tokens.

    With a `path`, refresh tokens are also kept in that file (mode 0600), so a restarted
    sandbox still honours the refresh tokens in the app's cache, as Entra ID would.
    """

    path: str | None = None
    _logins: dict[str, AuthRequest] = field(default_factory=dict)
    _signed_in: dict[str, str] = field(default_factory=dict)
    """Login handles whose user gave the right password and is now asked to consent."""
    _codes: dict[str, CodeGrant] = field(default_factory=dict)
    _refresh: dict[str, RefreshGrant] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.path and Path(self.path).exists():
            try:
                stored = json.loads(Path(self.path).read_text())
                self._refresh = {t: RefreshGrant(**g) for t, g in stored.items()}
            except (ValueError, TypeError):
                self._refresh = {}  # a damaged file: everyone signs in again

    def _save_refresh(self) -> None:
        """Write the refresh tokens (call with the lock held)."""
        if not self.path:
            return
        now = time.time()
        live = {t: asdict(g) for t, g in self._refresh.items() if g.expires_at > now}
        temporary = f"{self.path}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(live, handle)
        os.replace(temporary, self.path)

    def begin_login(self, request: AuthRequest) -> str:
        """Remember a validated request; the login form carries only this handle."""
        handle = secrets.token_urlsafe(16)
        with self._lock:
            self._logins[handle] = request
        return handle

    def login(self, handle: str) -> AuthRequest | None:
        with self._lock:
            return self._logins.get(handle)

    def cancel_login(self, handle: str) -> None:
        with self._lock:
            self._logins.pop(handle, None)
            self._signed_in.pop(handle, None)

    def mark_signed_in(self, handle: str, upn: str) -> None:
        """The password was right; the same handle now carries the consent page."""
        with self._lock:
            if handle in self._logins:
                self._signed_in[handle] = upn

    def signed_in(self, handle: str) -> str | None:
        """The user who signed in with this handle, if they did."""
        with self._lock:
            return self._signed_in.get(handle)

    def finish_login(self, handle: str, upn: str) -> tuple[AuthRequest, str] | None:
        """Spend the login handle and make a one-time authorization code for the user."""
        with self._lock:
            request = self._logins.pop(handle, None)
            self._signed_in.pop(handle, None)
            if request is None:
                return None
            code = "sbxcode." + secrets.token_urlsafe(32)
            self._codes[code] = CodeGrant(request, upn, time.time() + CODE_LIFETIME)
        return request, code

    def redeem_code(self, code: str, client_id: str, redirect_uri: str, verifier: str) -> CodeGrant:
        """Check and spend a code: client, redirect URI and PKCE verifier must all match."""
        with self._lock:
            grant = self._codes.get(code)
            if grant is None:
                raise OAuthError(
                    "invalid_grant",
                    70000,
                    "The provided value for the 'code' parameter is not valid.",
                )
            if grant.redeemed:
                raise OAuthError(
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new "
                    "valid code or use an existing refresh token.",
                )
            if grant.expires_at < time.time():
                raise OAuthError(
                    "invalid_grant", 70008, "The provided authorization code has expired."
                )
            if grant.request.client_id != client_id:
                raise OAuthError(
                    "invalid_grant", 70000, "The code was issued to another application."
                )
            if grant.request.redirect_uri != redirect_uri:
                raise OAuthError(
                    "invalid_grant",
                    50011,
                    "The redirect URI does not match the one of the authorization request.",
                )
            if not verifier:
                raise OAuthError("invalid_request", 50148, "The code_verifier is missing.")
            # The code is spent even when the verifier is wrong: a stolen code is not retryable.
            grant.redeemed = True
            if not secrets.compare_digest(s256(verifier), grant.request.code_challenge):
                raise OAuthError(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier doesn't match the code_challenge supplied in the "
                    "authorization request.",
                )
            return grant

    def issue_refresh(self, upn: str, client_id: str) -> str:
        token = "sbxrt." + secrets.token_urlsafe(48)
        with self._lock:
            self._refresh[token] = RefreshGrant(upn, client_id, time.time() + REFRESH_LIFETIME)
            self._save_refresh()
        return token

    def use_refresh(self, token: str, client_id: str) -> RefreshGrant:
        with self._lock:
            grant = self._refresh.get(token)
        if grant is None:
            raise OAuthError(
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is "
                "needed. The user might have changed or reset their password.",
            )
        if grant.expires_at < time.time():
            raise OAuthError(
                "invalid_grant", 70008, "The refresh token has expired due to inactivity."
            )
        if grant.client_id != client_id:
            raise OAuthError(
                "invalid_grant", 70000, "The refresh token was issued to another application."
            )
        return grant

    def revoke_user(self, upn: str) -> int:
        """Revoke every refresh token of a user (as an admin's "revoke sessions"); how many."""
        upn = upn.lower()
        with self._lock:
            gone = [t for t, g in self._refresh.items() if g.upn == upn]
            for token in gone:
                del self._refresh[token]
            self._save_refresh()
        return len(gone)
