"""Signing in with msal and handing out access tokens, with a persisted token cache.

One `TokenProvider` per authority (Microsoft Entra ID, or the sandbox identity provider). The
browser part of the authorization code flow lives in webapp/signin.py; this module owns msal,
the cache (encrypted at rest where the platform allows; plaintext only with the user's consent)
and the scopes of each resource. Tokens and codes are never logged.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from msal_extensions import FilePersistence, PersistedTokenCache, build_encrypted_persistence
from requests.adapters import HTTPAdapter

from sync.redaction import remember_secret
from sync.sides import AuthError, Unavailable

log = logging.getLogger(__name__)

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/organizations"
GLOBAL_DISCOVERY_RESOURCE = "https://globaldisco.crm.dynamics.com"
EXCHANGE_ONLINE_RESOURCE = "https://outlook.office365.com"
HTTP_TIMEOUT = 30.0
TOKEN_CACHE_FILE = "token_cache.bin"


class EncryptionUnavailable(RuntimeError):
    """No encrypted token store on this platform (e.g. Linux without libsecret or a keyring).

    The UI asks the user whether tokens may be stored unencrypted, then retries with
    `allow_plaintext=True`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            "Tokens cannot be stored encrypted on this computer "
            f"({reason}). They can be stored unencrypted, in a file only your user may read, "
            "if you agree."
        )
        self.reason = reason


@dataclass(frozen=True)
class Account:
    """A signed-in user as the token cache knows them."""

    username: str  # the UPN, e.g. alice@contoso.example
    home_account_id: str
    tenant_id: str
    name: str = ""


def dataverse_scope(org_url: str) -> str:
    """The delegated scope of one Dataverse organization (`https://org.crm.dynamics.com`)."""
    return f"{org_url.rstrip('/')}/user_impersonation"


def discovery_scope(discovery_url: str | None = None) -> str:
    """The Global Discovery Service scope; a discovery URL (the sandbox's) gives its origin's."""
    if discovery_url is None:
        return f"{GLOBAL_DISCOVERY_RESOURCE}/user_impersonation"
    parts = urlsplit(discovery_url)
    return f"{parts.scheme}://{parts.netloc}/user_impersonation"


def ews_scope(ews_url: str | None = None) -> str:
    """Delegated full access to the user's mailbox through EWS (Exchange Online by default)."""
    if ews_url is None:
        return f"{EXCHANGE_ONLINE_RESOURCE}/EWS.AccessAsUser.All"
    parts = urlsplit(ews_url)
    return f"{parts.scheme}://{parts.netloc}/EWS.AccessAsUser.All"


def open_token_cache(path: str | Path, allow_plaintext: bool) -> tuple[PersistedTokenCache, bool]:
    """The persisted msal cache at `path` and whether it is encrypted.

    Raises EncryptionUnavailable when the platform cannot encrypt and plaintext was not allowed.
    """
    location = str(path)
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    try:
        persistence = build_encrypted_persistence(location)
    except Exception as exc:  # ImportError (no PyGObject), keyring errors, unsupported OS
        if not allow_plaintext:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EncryptionUnavailable(reason) from exc
        log.warning("token cache stored unencrypted (the user agreed): %s", location)
        persistence = FilePersistence(location)  # created with mode 0600
    return PersistedTokenCache(persistence), bool(persistence.is_encrypted)


class _Tls12Adapter(HTTPAdapter):
    """Refuses anything older than TLS 1.2 (DESIGN.md §5)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_minimum_version"] = ssl.TLSVersion.TLSv1_2
        super().init_poolmanager(*args, **kwargs)


def _http_client(ca_file: str | None) -> requests.Session:
    session = requests.Session()
    adapter = _Tls12Adapter(max_retries=1)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if ca_file:
        # Trust only the sandbox CA. Without trust_env=False, REQUESTS_CA_BUNDLE would silently
        # replace `verify` (requests merges environment settings over the session's).
        session.verify = ca_file
        session.trust_env = False
    return session


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


class TokenProvider:
    """msal's PublicClientApplication over a persisted cache, with errors as sync.sides errors.

    The msal application is built on first use: building it fetches the authority's OpenID
    configuration, and a provider should be cheap to construct when offline.
    """

    def __init__(
        self,
        authority: str,
        client_id: str,
        cache_path: str | Path,
        ca_file: str | None = None,
        sandbox: bool = False,
        allow_plaintext: bool = False,
    ) -> None:
        self.authority = authority.rstrip("/")
        self.client_id = client_id
        self.sandbox = sandbox
        self.ca_file = ca_file
        self.cache, self.cache_is_encrypted = open_token_cache(cache_path, allow_plaintext)
        self._app: msal.PublicClientApplication | None = None

    @property
    def app(self) -> msal.PublicClientApplication:
        if self._app is None:
            try:
                self._app = msal.PublicClientApplication(
                    self.client_id,
                    authority=self.authority,
                    token_cache=self.cache,
                    http_client=_http_client(self.ca_file if self.sandbox else None),
                    instance_discovery=False if self.sandbox else None,
                    timeout=HTTP_TIMEOUT,
                )
            except requests.RequestException as exc:
                raise Unavailable(
                    f"The sign-in service at {self.authority} could not be reached: "
                    f"{type(exc).__name__}. Check the network and try again."
                ) from exc
            except ValueError as exc:
                raise AuthError(
                    f"The sign-in authority {self.authority} is not valid: {_first_line(str(exc))}"
                ) from exc
        return self._app

    def begin(
        self,
        redirect_uri: str,
        scopes: Sequence[str],
        response_mode: str = "form_post",
        login_hint: str | None = None,
    ) -> dict[str, Any]:
        """Start an authorization code flow (PKCE and nonce included): keep the returned dict
        (e.g. in the session) and send the browser to its `auth_uri`."""
        flow = self.app.initiate_auth_code_flow(
            list(scopes),
            redirect_uri=redirect_uri,
            response_mode=response_mode,
            login_hint=login_hint,
            prompt="select_account",
        )
        return dict(flow)

    def complete(self, flow: Mapping[str, Any], query_params: Mapping[str, str]) -> Account:
        """Finish the flow with what the authority sent back to the redirect URI."""
        try:
            result = self.app.acquire_token_by_auth_code_flow(dict(flow), dict(query_params))
        except ValueError as exc:  # state mismatch, a reply to another sign-in, no code
            raise AuthError(
                "The answer from the sign-in page does not belong to this sign-in. Start again.",
                code="state_mismatch",
            ) from exc
        except requests.RequestException as exc:
            raise Unavailable(
                f"The sign-in service could not be reached: {type(exc).__name__}."
            ) from exc
        except RuntimeError as exc:  # nonce mismatch
            raise AuthError(f"The sign-in answer was not valid: {exc}", code="nonce") from exc
        if "error" in result:
            raise AuthError(
                f"Sign-in failed: {_first_line(result.get('error_description', '')) or result['error']}",
                code=str(result["error"]),
            )
        claims = result.get("id_token_claims", {})
        username = claims.get("preferred_username", "")
        account = next((a for a in self.accounts() if a.username == username), None)
        if account is None:
            raise AuthError("Sign-in returned no account; sign in again.", code="no_account")
        return dataclasses.replace(account, name=str(claims.get("name", "")))

    def accounts(self) -> list[Account]:
        """The accounts in the cache (usually one)."""
        result = []
        for raw in self.app.get_accounts():
            result.append(
                Account(
                    username=raw.get("username", ""),
                    home_account_id=raw.get("home_account_id", ""),
                    tenant_id=raw.get("realm", ""),
                    name=raw.get("name", "") or "",
                )
            )
        return result

    def _msal_account(self, username: str | None) -> dict[str, Any] | None:
        accounts = self.app.get_accounts(username=username) if username else self.app.get_accounts()
        return accounts[0] if accounts else None

    def token_for(
        self, scopes: Sequence[str], username: str | None = None, force_refresh: bool = False
    ) -> str:
        """An access token for one resource's scopes, from the cache or refreshed silently.

        `force_refresh=True` skips the cached access token: for a retry after a service
        answered 401 to it (revoked server-side, or a restarted sandbox).
        Raises AuthError ("sign in again") when there is no account or the refresh token was
        refused (expired, revoked consent), Unavailable when the authority cannot be reached.
        """
        try:
            account = self._msal_account(username)
            if account is None:
                raise AuthError("You are not signed in. Sign in again.", code="no_account")
            result = self.app.acquire_token_silent_with_error(
                list(scopes), account=account, force_refresh=force_refresh
            )
        except requests.RequestException as exc:
            raise Unavailable(
                f"The sign-in service could not be reached to refresh the token: "
                f"{type(exc).__name__}."
            ) from exc
        if not result or "access_token" not in result:
            detail = _first_line((result or {}).get("error_description", ""))
            raise AuthError(
                "Your sign-in has expired or was revoked. Sign in again."
                + (f" ({detail})" if detail else ""),
                code=(result or {}).get("error", "no_token"),
            )
        token = str(result["access_token"])
        remember_secret(token)  # whatever prints it later (a library at DEBUG) prints a mask
        return token

    def token_callable(
        self, scopes: Sequence[str], username: str | None = None
    ) -> Callable[[], str]:
        """A zero-argument callable for clients that ask for a token per request."""
        return lambda: self.token_for(scopes, username)

    def sign_out(self) -> None:
        """Forget every account and its tokens in this cache (no network needed)."""
        forget_tokens(self.cache)


def forget_tokens(cache: msal.TokenCache) -> None:
    """Remove every token and account from a cache (a persisted cache flushes each removal)."""
    kinds = msal.TokenCache.CredentialType
    for rt in list(cache.search(kinds.REFRESH_TOKEN)):
        cache.remove_rt(rt)
    for at in list(cache.search(kinds.ACCESS_TOKEN)):
        cache.remove_at(at)
    for idt in list(cache.search(kinds.ID_TOKEN)):
        cache.remove_idt(idt)
    for account in list(cache.search(kinds.ACCOUNT)):
        cache.remove_account(account)


def clear_token_cache(data_dir: str | Path) -> None:
    """Sign out without a provider (e.g. the sandbox is gone): empty the data dir's cache."""
    cache, _ = open_token_cache(Path(data_dir) / TOKEN_CACHE_FILE, allow_plaintext=True)
    forget_tokens(cache)


def provider_from_config(
    config: Mapping[str, Any],
    data_dir: str | Path,
    sandbox_info: Mapping[str, Any] | None = None,
) -> TokenProvider:
    """The provider for a stored sign-in choice (the `auth` setting webapp/signin.py saves).

    `config` holds `provider` ("microsoft" | "sandbox"), `authority`, `client_id` and
    `plaintext` (the user agreed to an unencrypted cache). The sandbox's authority and CA file
    change on every start, so they come from the running sandbox's `describe()`.
    """
    allow_plaintext = bool(config.get("plaintext"))
    cache_path = Path(data_dir) / TOKEN_CACHE_FILE
    if config.get("provider") == "sandbox":
        if sandbox_info is None:
            raise AuthError("The sandbox is not running: start the app with the sandbox.")
        return TokenProvider(
            authority=str(sandbox_info["authority"]),
            client_id=str(sandbox_info["client_id"]),
            cache_path=cache_path,
            ca_file=str(sandbox_info["identity_ca_file"]),
            sandbox=True,
            allow_plaintext=allow_plaintext,
        )
    return TokenProvider(
        authority=str(config.get("authority") or MICROSOFT_AUTHORITY),
        client_id=str(config["client_id"]),
        cache_path=cache_path,
        allow_plaintext=allow_plaintext,
    )
