"""Signing in with msal and handing out access tokens, with a persisted token cache.

One `TokenProvider` per authority (Microsoft Entra ID, or the sandbox identity provider). The
browser part of the authorization code flow lives in webapp/signin.py; this module owns msal,
the cache (encrypted at rest where the platform allows; plaintext only with the user's consent)
and the scopes of each resource. Tokens and codes are never logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

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
EXCHANGE_ONLINE_HOSTS = frozenset({"outlook.office365.com", "outlook.office.com"})
"""Exchange Online's own EWS hosts; Microsoft's Autodiscover hosts under `.outlook.com`
(autodiscover-s.outlook.com, where Exchange Online's Autodiscover redirects) count as well."""
GRAPH_RESOURCE = "https://graph.microsoft.com"
HTTP_TIMEOUT = 30.0
TOKEN_CACHE_FILE = "token_cache.bin"
PENDING_CONSENT_FILE = "consent_needed.json"
"""Beside the token cache: the scopes a silent token request found without consent, so the
Sign-in page can offer exactly those (no token or secret in it)."""

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
CONSENT_CODES = frozenset({65001})
"""AADSTS65001 DelegationDoesNotExist: "The user or administrator has not consented to use the
application … Send an interactive authorization request for this user and resource." Entra
answers it as `invalid_grant` with `suberror` `consent_required` (Microsoft Entra
reference-error-codes.md); msal passes both through (and copies the suberror to
`classification`)."""
ADMIN_CONSENT_CODES = frozenset({90093, 90094, 90095})
"""AADSTS90093 (a policy stops users from consenting), 90094 AdminConsentRequired, 90095
AdminConsentRequiredRequestAccess (the admin consent workflow): only an administrator can allow
the app (reference-error-codes.md, application-sign-in-unexpected-user-consent-error.md)."""

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


class ConsentRequired(SignInRequired):
    """Nobody consented yet to one resource's scopes for this app (AADSTS65001): an interactive
    sign-in asking for exactly `scopes` clears it, unless the tenant lets only an administrator
    consent (`admin`), in which case the administrator's consent page (`admin_url`) does.

    A subclass of SignInRequired so every place that shows "sign in again" still shows it; the
    message names the missing resource (`label`) instead of asking for a whole new sign-in,
    which would only ask again for the scopes already granted."""

    def __init__(
        self,
        message: str,
        scopes: Sequence[str],
        label: str,
        username: str | None = None,
        admin: bool = False,
        admin_url: str = "",
    ) -> None:
        super().__init__(message, "consent_required", username)
        self.scopes = tuple(scopes)
        self.label = label
        self.admin = admin
        self.admin_url = admin_url


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

    def __init__(self, reason: str, command: str | None = None) -> None:
        super().__init__(
            "Tokens cannot be stored encrypted on this computer "
            f"({reason}). They can be stored unencrypted, in a file only your user may read, "
            "if you agree."
        )
        self.reason = reason
        """What is missing, in plain words (never a raw import error)."""
        self.command = command
        """The one command that fixes it on this system, where known."""


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


def is_exchange_online(url: str) -> bool:
    """Whether `url` is one of Exchange Online's hosts (see EXCHANGE_ONLINE_HOSTS)."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return host in EXCHANGE_ONLINE_HOSTS or host.endswith(".outlook.com")


def ews_scope(ews_url: str | None = None) -> str:
    """Delegated full access to the user's mailbox through EWS, for the server at `ews_url`.

    Exchange Online has one resource, `https://outlook.office365.com` (its EWS address and
    scope in "Authenticate an EWS application by using OAuth"), whichever of its hosts answers.
    An Exchange Server on premises with hybrid modern authentication registers its own URLs as
    the resource's names, so there the resource is the origin Autodiscover reported (or the
    Autodiscover server being asked).
    """
    if ews_url is None or is_exchange_online(ews_url):
        return f"{EXCHANGE_ONLINE_RESOURCE}/EWS.AccessAsUser.All"
    parts = urlsplit(ews_url)
    return f"{parts.scheme}://{parts.netloc}/EWS.AccessAsUser.All"


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def scope_resource(scope: str) -> str:
    """The resource a scope belongs to (`https://org/user_impersonation` → `https://org`); a
    bare permission such as `Mail.ReadWrite` is Microsoft Graph's."""
    return scope.rsplit("/", 1)[0] if "/" in scope else GRAPH_RESOURCE


def describe_scope(scope: str) -> tuple[str, str]:
    """What a scope gives access to, as (kind, name) for messages in any language.

    kind: "mailbox" (name "EWS" or "Microsoft Graph"), "discovery", "organization" (name: the
    organization's URL name, e.g. "Contoso"), or "other" (name: the resource)."""
    resource = scope_resource(scope)
    if scope.endswith("/EWS.AccessAsUser.All"):
        return "mailbox", "EWS"
    if resource == GRAPH_RESOURCE:
        return "mailbox", "Microsoft Graph"
    parts = urlsplit(resource)
    host = (parts.hostname or "").lower()
    path = parts.path.strip("/")
    if scope.endswith("/user_impersonation"):
        if host.startswith("globaldisco.") or (not path and host in _LOOPBACK):
            return "discovery", ""  # the sandbox's discovery is the bare origin of its server
        name = path.rsplit("/", 1)[-1] if path else host.split(".", 1)[0]
        return "organization", name[:1].upper() + name[1:]
    return "other", resource


def scope_label(scopes: Sequence[str]) -> str:
    """In English words, what `scopes` (one resource's) give access to."""
    kind, name = describe_scope(scopes[0]) if scopes else ("other", "")
    if kind == "mailbox":
        return f"access to your mailbox ({name})"
    if kind == "discovery":
        return "access to your list of organizations (Global Discovery)"
    if kind == "organization":
        return f"access to the {name} organization"
    return f"access to {name}"


def admin_consent_url(authority: str, client_id: str, tenant: str | None = None) -> str:
    """The page where an administrator consents to the app for the whole tenant:
    `https://login.microsoftonline.com/{organization}/adminconsent?client_id={client-id}`
    (Microsoft Entra grant-admin-consent.md), on the authority's host (the sandbox serves its
    own). `tenant`: the signed-in account's tenant, better than "organizations"."""
    parts = urlsplit(authority)
    tenant = tenant or parts.path.strip("/").split("/")[0] or "organizations"
    return (
        f"{parts.scheme}://{parts.netloc}/{quote(tenant, safe='')}/adminconsent"
        f"?client_id={quote(client_id, safe='')}"
    )


@dataclass(frozen=True)
class PendingConsent:
    """Scopes a silent token request found without consent, waiting for the user."""

    scopes: tuple[str, ...]
    label: str
    username: str | None = None
    admin: bool = False
    """The last interactive attempt said only an administrator may consent."""


_PENDING_LOCK = threading.Lock()


def _pending_key(scopes: Sequence[str]) -> str:
    return " ".join(sorted(scopes))


def _read_pending(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_pending(path: Path, entries: Mapping[str, Any]) -> None:
    if not entries:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(entries, handle, sort_keys=True)
    os.replace(temporary, path)


def pending_consents(data_dir: str | Path) -> list[PendingConsent]:
    """The consents the Sign-in page should ask for (oldest first)."""
    with _PENDING_LOCK:
        entries = _read_pending(Path(data_dir) / PENDING_CONSENT_FILE)
    found = []
    for entry in sorted(entries.values(), key=lambda e: float(e.get("since", 0))):
        scopes = tuple(str(s) for s in entry.get("scopes") or ())
        if scopes:
            found.append(
                PendingConsent(
                    scopes,
                    str(entry.get("label") or scope_label(scopes)),
                    entry.get("username"),
                    bool(entry.get("admin")),
                )
            )
    return found


def note_consent_needed(
    data_dir: str | Path,
    scopes: Sequence[str],
    username: str | None = None,
    admin: bool | None = None,
) -> PendingConsent:
    """Remember that `scopes` need consent (`admin`: only an administrator may give it; None
    keeps what was known)."""
    path = Path(data_dir) / PENDING_CONSENT_FILE
    key = _pending_key(scopes)
    with _PENDING_LOCK:
        entries = _read_pending(path)
        entry = dict(entries.get(key) or {"since": time.time()})
        entry.update(scopes=sorted(scopes), label=scope_label(scopes), username=username)
        if admin is not None:
            entry["admin"] = admin
        entries[key] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_pending(path, entries)
    return PendingConsent(tuple(sorted(scopes)), entry["label"], username, bool(entry.get("admin")))


def forget_consent_needed(data_dir: str | Path, scopes: Sequence[str] | None = None) -> None:
    """The consent for `scopes` was given (None: forget every pending consent)."""
    path = Path(data_dir) / PENDING_CONSENT_FILE
    with _PENDING_LOCK:
        if not path.exists():
            return
        entries = {} if scopes is None else _read_pending(path)
        if scopes is not None and entries.pop(_pending_key(scopes), None) is None:
            return  # nothing pending for these scopes: leave the file alone
        _write_pending(path, entries)


_WARNED_PLAINTEXT: set[str] = set()


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
            from sync.keyring_help import advice_for

            advice = advice_for(exc)
            raise EncryptionUnavailable(advice.reason, advice.command) from exc
        if location not in _WARNED_PLAINTEXT:  # once per process, not at every request
            _WARNED_PLAINTEXT.add(location)
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
        self.data_dir = Path(self.cache_path).parent
        """Where the pending consents are noted (beside the token cache)."""
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
        prompt: str | None = "select_account",
    ) -> dict[str, Any]:
        """Start an authorization code flow (PKCE and nonce included): keep the returned dict
        (e.g. in the session) and send the browser to its `auth_uri`. For an added consent,
        pass the account as `login_hint` and `prompt=None` (the authority asks what it must)."""
        flow = self.app.initiate_auth_code_flow(
            list(scopes),
            redirect_uri=redirect_uri,
            response_mode=response_mode,
            login_hint=login_hint,
            prompt=prompt,
        )
        return dict(flow)

    def admin_consent_url(self, username: str | None = None) -> str:
        """The tenant-wide admin consent page for this app, in the account's tenant if known."""
        tenant = None
        try:
            account = self._msal_account(username)
        except (SideError, requests.RequestException, ValueError):
            account = None  # offline: the authority's tenant will do
        if account and account.get("realm"):
            tenant = str(account["realm"])
        return admin_consent_url(self.authority, self.client_id, tenant)

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
        return self._signed_in(result)

    def start_device_flow(self, scopes: Sequence[str]) -> dict[str, Any]:
        """Begin a device code sign-in (for a computer without a browser, as `az login
        --use-device-code` does): show the returned `message` (the page and the code) to the
        user, then call `finish_device_flow` with the same dict."""
        try:
            flow = dict(self.app.initiate_device_flow(scopes=list(scopes)))
        except requests.RequestException as exc:
            raise Unavailable(
                f"The sign-in service could not be reached: {type(exc).__name__}."
            ) from exc
        if "user_code" not in flow:
            detail = _first_line(str(flow.get("error_description", ""))) or flow.get("error")
            raise AuthError(f"The device sign-in could not start: {detail}", code="device_flow")
        return flow

    def finish_device_flow(self, flow: Mapping[str, Any]) -> Account:
        """Wait (polling as the service asks) until the user signed in on the page, declined
        or the code expired; the signed-in account, its tokens now in the cache."""
        try:
            result = self.app.acquire_token_by_device_flow(dict(flow))
        except requests.RequestException as exc:
            raise Unavailable(
                f"The sign-in service could not be reached: {type(exc).__name__}."
            ) from exc
        if "error" in result:
            reasons = {
                "authorization_declined": "The sign-in was cancelled on the page.",
                "expired_token": "The code expired before anyone signed in: run signin again.",
            }
            error = str(result["error"])
            description = _first_line(str(result.get("error_description", "")))
            raise AuthError(reasons.get(error) or f"Sign-in failed: {description or error}", error)
        return self._signed_in(result)

    def _signed_in(self, result: Mapping[str, Any]) -> Account:
        """The cached account a successful sign-in answer (either flow) names."""
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
            if (self.data_dir / PENDING_CONSENT_FILE).exists():
                with contextlib.suppress(OSError):  # e.g. `status` on a read-only data dir
                    forget_consent_needed(self.data_dir, scopes)  # given meanwhile (an admin)
            return token
        error = _token_error(result, who, username, scopes)
        if isinstance(error, ConsentRequired):
            raise self._consent_required(error, result or {})
        raise error

    def _consent_required(self, error: ConsentRequired, result: Mapping[str, Any]) -> SideError:
        """Note the missing consent for the Sign-in page; the message says who can give it."""
        try:
            pending = note_consent_needed(self.data_dir, error.scopes, error.username)
        except OSError:  # a read-only data dir: the message still says what is missing
            pending = PendingConsent(error.scopes, error.label, error.username)
        detail = _first_line(str(result.get("error_description") or ""))
        suffix = f" ({detail})" if detail else ""
        if pending.admin:
            url = self.admin_consent_url(error.username)
            message = (
                f"Mailbox Sync needs {error.label}, and your organization lets only an "
                f"administrator allow it{suffix}. Send your administrator this link to approve "
                f"it: {url}"
            )
            return ConsentRequired(
                message, error.scopes, error.label, error.username, admin=True, admin_url=url
            )
        message = (
            f"Mailbox Sync needs your consent for {error.label}{suffix}. Open the Sign-in page "
            '(/signin) and choose "Give consent" to allow it.'
        )
        return ConsentRequired(message, error.scopes, error.label, error.username)

    def token_callable(self, scopes: Sequence[str], username: str | None = None) -> TokenSource:
        """A token callable for clients that ask for a token per request (and can refresh)."""
        return TokenSource(self, tuple(scopes), username)

    def sign_out(self) -> None:
        """Forget every account and its tokens in this cache (no network needed)."""
        forget_tokens(self.cache)


def needs_consent(result: Mapping[str, Any]) -> bool:
    """Whether an OAuth error answer says consent is missing (see CONSENT_CODES)."""
    if "consent_required" in (result.get("error"), result.get("suberror")):
        return True
    codes = result.get("error_codes") or ()
    if isinstance(codes, list | tuple) and any(c in CONSENT_CODES for c in codes):
        return True
    return "AADSTS65001" in str(result.get("error_description") or "")


def needs_admin(description: str) -> bool:
    """Whether an error description carries one of the ADMIN_CONSENT_CODES."""
    return any(f"AADSTS{code}" in description for code in ADMIN_CONSENT_CODES)


def _token_error(
    result: Mapping[str, Any] | None,
    who: str,
    username: str | None,
    scopes: Sequence[str] = (),
) -> SideError:
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
    if scopes and needs_consent(result):
        label = scope_label(scopes)
        return ConsentRequired(
            f"Mailbox Sync needs your consent for {label}{suffix}.", scopes, label, username
        )
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
    """Sign out without a provider (e.g. the sandbox is gone): empty the data dir's cache and
    forget the consents that were pending for the account."""
    cache, _ = open_token_cache(Path(data_dir) / TOKEN_CACHE_FILE, allow_plaintext=True)
    forget_tokens(cache)
    forget_consent_needed(data_dir)


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
