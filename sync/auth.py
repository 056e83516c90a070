"""Signing in with msal and handing out access tokens, with a persisted token cache.

One `TokenProvider` per authority (Microsoft Entra ID, or the sandbox identity provider). The
browser part of the authorization code flow lives in webapp/signin.py; this module owns msal,
the cache (encrypted at rest where the platform allows; plaintext only with the user's consent)
and the scopes of each resource. Tokens and codes are never logged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from msal_extensions import FilePersistence, PersistedTokenCache, build_encrypted_persistence
from requests.adapters import HTTPAdapter

from sync.redaction import remember_secret
from sync.sides import AuthError, SideError, Unavailable

log = logging.getLogger(__name__)

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/organizations"
GLOBAL_DISCOVERY_RESOURCE = "https://globaldisco.crm.dynamics.com"
EXCHANGE_ONLINE_RESOURCE = "https://outlook.office365.com"
HTTP_TIMEOUT = 30.0
TOKEN_CACHE_FILE = "token_cache.bin"

IDP_RETRY_WAITS: tuple[float, ...] = (1.0, 3.0)
"""Seconds before each new attempt when the sign-in service answers 429 or 5xx: three attempts
in all (MSAL.NET retries a 5xx once; one more covers a short blip without stalling a run)."""
IDP_MAX_RETRY_AFTER = 30.0
"""The longest `Retry-After` waited out within one token request; a longer one ends the attempt
at once (the next run asks again)."""
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

SIGN_IN_ERRORS = frozenset(
    {"invalid_grant", "interaction_required", "consent_required", "login_required"}
)
"""msal/OAuth errors that only the user can clear, by signing in again in the browser."""
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})

_APPS: dict[tuple[Any, ...], msal.PublicClientApplication] = {}
"""The msal applications of this process, one per authority, client and token cache. Each run
(and each web request) builds a new TokenProvider, and building an msal application fetches the
authority's OpenID configuration: sharing the application (as msal intends: make it once, reuse
it) means a run whose access tokens are still valid sends nothing to the sign-in service."""
_APPS_LOCK = threading.Lock()


SIGN_IN_ALERT = "signin_required"
"""The code of the "Sign in again" alert (webapp/signin.py resolves it after a sign-in)."""


class SignInRequired(AuthError):
    """The sign-in is no longer accepted (refresh token revoked or expired, consent withdrawn,
    MFA or a password change required): only signing in again in the browser helps."""

    def __init__(self, message: str, code: str | None = None, username: str | None = None) -> None:
        super().__init__(message, code)
        self.username = username


class SignInServiceUnavailable(requests.HTTPError):
    """The sign-in service kept answering 429/5xx (raised to msal as a network error, so msal
    still hands out a valid cached access token instead of failing)."""

    def __init__(
        self, response: requests.Response, attempts: int, retry_after: float | None
    ) -> None:
        self.status = response.status_code
        self.attempts = attempts
        self.retry_after = retry_after
        self.detail = _error_detail(response)
        super().__init__(f"HTTP {self.status} after {attempts} attempts", response=response)

    def describe(self, authority: str) -> str:
        """In words, for the run's message and the log."""
        try:
            reason = HTTPStatus(self.status).phrase
        except ValueError:
            reason = "an error"
        tries = "once" if self.attempts == 1 else f"{self.attempts} times in a row"
        text = (
            f"The sign-in service at {authority} is not available: it answered "
            f"{self.status} {reason} {tries}"
        )
        if self.detail:
            text += f" ({self.detail})"
        if self.retry_after and self.retry_after > IDP_MAX_RETRY_AFTER:
            text += f" and asked to wait {self.retry_after:.0f} s"
        return text + ". Sync tries again at the next run."


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


def _retry_after(response: requests.Response) -> float | None:
    """The `Retry-After` of an answer in seconds (delta-seconds or an HTTP date), if any."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error_detail(response: requests.Response) -> str:
    """The first line of an OAuth error answer (`AADSTS50033: …`), or ''."""
    try:
        body = json.loads(response.text)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    return _first_line(str(body.get("error_description") or body.get("error") or ""))


class _IdpSession(requests.Session):
    """The HTTP client msal uses: an answer of 429 or 5xx is asked again after a pause (the
    server's `Retry-After` when it gives one), a bounded number of times, then raised as
    `SignInServiceUnavailable`. Retrying below msal matters: msal remembers a 5xx answer and
    replays it for a minute without asking again."""

    def __init__(self, waits: Sequence[float]) -> None:
        super().__init__()
        self.waits = tuple(waits)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            response = super().request(method, url, *args, **kwargs)
            if response.status_code not in _RETRY_STATUSES:
                return response
            hint = _retry_after(response)
            if attempt == len(self.waits) or (hint is not None and hint > IDP_MAX_RETRY_AFTER):
                raise SignInServiceUnavailable(response, attempt + 1, hint)
            pause = max(self.waits[attempt], hint or 0.0)
            attempt += 1
            log.info(
                "sign-in service answered %d (attempt %d of %d); asking again in %.1f s",
                response.status_code, attempt, len(self.waits) + 1, pause,
            )  # fmt: skip
            response.close()
            time.sleep(pause)


def _http_client(ca_file: str | None, waits: Sequence[float] = IDP_RETRY_WAITS) -> requests.Session:
    session = _IdpSession(waits)
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

    The msal application is built on first use and shared in the process (see `_APPS`):
    building it fetches the authority's OpenID configuration, and a provider should be cheap to
    construct when offline.
    """

    def __init__(
        self,
        authority: str,
        client_id: str,
        cache_path: str | Path,
        ca_file: str | None = None,
        sandbox: bool = False,
        allow_plaintext: bool = False,
        retry_waits: Sequence[float] | None = None,
    ) -> None:
        self.authority = authority.rstrip("/")
        self.client_id = client_id
        self.sandbox = sandbox
        self.ca_file = ca_file
        self.retry_waits = IDP_RETRY_WAITS if retry_waits is None else tuple(retry_waits)
        """Pauses before each new attempt when the sign-in service answers 429/5xx."""
        self.cache_path = str(Path(cache_path).resolve())
        self.cache, self.cache_is_encrypted = open_token_cache(cache_path, allow_plaintext)
        self._app: msal.PublicClientApplication | None = None

    @property
    def app(self) -> msal.PublicClientApplication:
        """The process's msal application for this provider's settings (made on first use)."""
        if self._app is None:
            key = (
                self.authority,
                self.client_id,
                self.cache_path,
                self.cache_is_encrypted,
                self.ca_file if self.sandbox else None,
                self.retry_waits,
            )
            with _APPS_LOCK:
                app = _APPS.get(key)
            if app is None:
                app = self._new_app()  # network: outside the lock
                with _APPS_LOCK:
                    app = _APPS.setdefault(key, app)
            self._app = app
        return self._app

    def _new_app(self) -> msal.PublicClientApplication:
        # Its token cache object reads the same file as `self.cache` and reloads it whenever
        # the file changes (a sign-in or a sign-out through another provider).
        try:
            return msal.PublicClientApplication(
                self.client_id,
                authority=self.authority,
                token_cache=self.cache,
                http_client=_http_client(self.ca_file if self.sandbox else None, self.retry_waits),
                instance_discovery=False if self.sandbox else None,
                timeout=HTTP_TIMEOUT,
            )
        except SignInServiceUnavailable as exc:
            raise Unavailable(exc.describe(self.authority), code=str(exc.status)) from exc
        except requests.RequestException as exc:
            raise Unavailable(
                f"The sign-in service at {self.authority} could not be reached: "
                f"{type(exc).__name__}. Check the network and try again."
            ) from exc
        except ValueError as exc:
            raise AuthError(
                f"The sign-in authority {self.authority} is not valid: {_first_line(str(exc))}"
            ) from exc

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
        except SignInServiceUnavailable as exc:
            raise Unavailable(exc.describe(self.authority), code=str(exc.status)) from exc
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

        `force_refresh=True` skips the cached access token and redeems the refresh token: for
        the one retry after a service answered 401 to the cached token (revoked server-side, or
        a restarted sandbox). Raises SignInRequired when there is no account or msal says only
        an interactive sign-in helps, Unavailable when the sign-in service cannot be reached or
        keeps failing, AuthError for any other refusal (e.g. the app registration).
        """
        who = username or "your account"
        try:
            account = self._msal_account(username)
            if account is None:
                raise SignInRequired(
                    f"You are not signed in as {who} on this computer. Sign in again.",
                    code="no_account",
                    username=username,
                )
            result = self.app.acquire_token_silent_with_error(
                list(scopes), account=account, force_refresh=force_refresh
            )
        except SignInServiceUnavailable as exc:
            raise Unavailable(exc.describe(self.authority), code=str(exc.status)) from exc
        except requests.RequestException as exc:
            raise Unavailable(
                f"The sign-in service could not be reached to refresh the token: "
                f"{type(exc).__name__}. Sync tries again at the next run."
            ) from exc
        if result and "access_token" in result:
            token = str(result["access_token"])
            remember_secret(token)  # whatever prints it later (a library at DEBUG) prints a mask
            return token
        raise _token_error(result, who, username)

    def token_callable(self, scopes: Sequence[str], username: str | None = None) -> TokenSource:
        """A token callable for clients that ask for a token per request (and can refresh)."""
        return TokenSource(self, tuple(scopes), username)

    def sign_out(self) -> None:
        """Forget every account and its tokens in this cache (no network needed)."""
        forget_tokens(self.cache)


def _token_error(result: Mapping[str, Any] | None, who: str, username: str | None) -> SideError:
    """The error for an msal answer without an access token (None: no refresh token to use)."""
    if not result:
        return SignInRequired(
            f"No saved sign-in for {who} can be used any more. Sign in again.",
            code="no_token",
            username=username,
        )
    error = str(result.get("error") or "no_token")
    detail = _first_line(str(result.get("error_description") or ""))
    suffix = f" ({detail})" if detail else ""
    if error in SIGN_IN_ERRORS:
        return SignInRequired(
            f"The sign-in of {who} has expired or was revoked{suffix}. Sign in again.",
            code=error,
            username=username,
        )
    if error in TRANSIENT_ERRORS:
        return Unavailable(
            f"The sign-in service is not available{suffix}. Sync tries again at the next run.",
            code=error,
        )
    return AuthError(f"The sign-in service refused to issue a token: {error}{suffix}", code=error)


@dataclass(frozen=True)
class TokenSource:
    """Bearer tokens for one resource's scopes, as the clients ask for them.

    `source()` gives the cached token (msal refreshes it when it expires); `source.refresh()`
    redeems the refresh token for a new one. A client calls `refresh()` once after a service
    answered 401, since asking `source()` again would hand back the same refused token.
    """

    provider: TokenProvider
    scopes: tuple[str, ...]
    username: str | None = None

    def __call__(self, force_refresh: bool = False) -> str:
        return self.provider.token_for(self.scopes, self.username, force_refresh=force_refresh)

    def refresh(self) -> str:
        return self(force_refresh=True)


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
