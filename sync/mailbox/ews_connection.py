"""How we talk to one Exchange mailbox through exchangelib: TLS, sign-in, retries, error mapping.

`EwsConnection` builds exchangelib's `Configuration` and `Account` with the endpoint, the
authentication and the version given, so the `Account` makes no autodiscover call. Every call the
adapter makes goes through `EwsConnection.call`, which turns exchangelib's exceptions into the
errors of `sync.sides` (and, on a 401, sends the call once more with a token the provider issues
anew). Reads that are safe to send twice (`idempotent=True`) are sent again after a dropped
connection or a server timeout; writes never are, as the first attempt may have reached the
server (the engine's find_by_key covers a create whose answer was lost). A 401 is different: the
server refused the request without running it.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import requests.adapters
from exchangelib import DELEGATE, Account, Configuration, Credentials
from exchangelib import errors as ews_errors
from exchangelib.credentials import OAuth2AuthorizationCodeCredentials
from exchangelib.protocol import BaseProtocol, FaultTolerance
from exchangelib.transport import BASIC, NTLM, OAUTH2
from exchangelib.version import EXCHANGE_2016, Build, Version

from sync.sides import (
    AuthError,
    Conflict,
    Invalid,
    NotFound,
    SideError,
    Throttled,
    TokenExpired,
    Unavailable,
)

T = TypeVar("T")

log = logging.getLogger(__name__)

READ_RETRY_WAITS: tuple[float, ...] = (0.5, 2.0)
"""Seconds to wait before each new attempt of an idempotent read that met a dropped connection
or a server timeout: three attempts in all, so one network blip does not fail a whole run."""

# --- TLS ---------------------------------------------------------------------------------------
#
# exchangelib makes its HTTP sessions itself; the one documented hook is the process-global
# `BaseProtocol.HTTP_ADAPTER_CLS`. So the adapter we install there cannot know which connection it
# serves: it trusts the system CAs plus every CA file any connection registered (a sandbox's own
# CA). Registering a CA adds trust for that CA only; certificate and host name checks stay on and
# TLS below 1.2 is refused for every EWS endpoint.

_extra_cas: dict[str, str] = {}
"""Registered CA certificates (PEM text, by file path): read once, so a CA file deleted later
(a sandbox's temporary directory) cannot break every other connection."""
_ca_lock = threading.Lock()


def trust_ca_file(ca_file: str) -> None:
    """Trust the CA in `ca_file` (PEM) in addition to the system CAs for every EWS connection."""
    with open(ca_file, encoding="ascii") as handle:
        pem = handle.read()
    ssl.create_default_context().load_verify_locations(cadata=pem)  # refuse a bad file now
    with _ca_lock:
        _extra_cas[ca_file] = pem


READ_CHUNK = 64 * 1024
"""Bytes a parser is handed at a time from an EWS answer."""


class ChunkedResponse(requests.Response):
    """exchangelib parses each answer from `response.iter_content()`, whose default chunk is one
    byte: a Python call per byte of XML, about a tenth of a sync's CPU. The same bytes, handed
    over 64 KiB at a time (never for a streaming subscription's answer: see TlsAdapter)."""

    def iter_content(
        self, chunk_size: int | None = 1, decode_unicode: bool = False
    ) -> Iterator[Any]:
        return super().iter_content(READ_CHUNK if chunk_size == 1 else chunk_size, decode_unicode)


class TlsAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter with TLS 1.2 or later, certificate checks and the registered CAs;
    its answers are read in large chunks (`ChunkedResponse`)."""

    def build_response(self, req: Any, resp: Any) -> requests.Response:
        response = super().build_response(req, resp)
        body = req.body if isinstance(req.body, bytes) else str(req.body or "").encode()
        # GetStreamingEvents' answer is cut into documents by a reader that takes exactly one
        # byte per step of iter_content() (exchangelib's DocumentYielder): left as it is.
        if b"GetStreamingEvents" not in body:
            response.__class__ = ChunkedResponse
        return response

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with _ca_lock:
            for pem in _extra_cas.values():
                context.load_verify_locations(cadata=pem)
        kwargs["ssl_context"] = context
        super().init_poolmanager(*args, **kwargs)


BaseProtocol.HTTP_ADAPTER_CLS = TlsAdapter


# --- authentication ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BasicAuth:
    """User name (UPN or DOMAIN\\user) and password, sent as HTTP Basic over TLS."""

    username: str
    password: str = ""

    def __repr__(self) -> str:
        return f"BasicAuth({self.username!r}, '********')"


@dataclass(frozen=True)
class NtlmAuth:
    """A Windows account (DOMAIN\\user or UPN) and password, signed in with NTLM: Exchange
    Server on premises, where Windows authentication is on by default (exchangelib's `NTLM`
    auth type, through requests_ntlm). The password itself never goes over the wire."""

    username: str
    password: str = ""

    def __repr__(self) -> str:
        return f"NtlmAuth({self.username!r}, '********')"


@dataclass(frozen=True)
class OAuthToken:
    """A bearer token for EWS from `token_provider`. When the server refuses the token, the
    provider's `refresh()` (sync.auth.TokenSource) issues a new one; a provider without it is
    simply asked again."""

    token_provider: Callable[[], str]


MailboxAuth = BasicAuth | NtlmAuth | OAuthToken
"""How one connection signs in to Exchange."""


def _fresh_token(provider: Callable[[], str]) -> str:
    """A token other than the refused one: `refresh()` skips msal's cached access token."""
    refresh = getattr(provider, "refresh", None)
    return str(refresh()) if callable(refresh) else provider()


class _ProvidedTokenCredentials(OAuth2AuthorizationCodeCredentials):
    """exchangelib OAuth credentials fed by our token provider instead of a token endpoint."""

    def __init__(self, provider: Callable[[], str]) -> None:
        super().__init__(access_token=self._bearer(provider()))
        self._provider = provider

    @staticmethod
    def _bearer(token: str) -> dict[str, str]:
        return {"access_token": token, "token_type": "Bearer"}

    def refresh(self, session: Any = None) -> None:
        """A new token (after the server refused the current one; also exchangelib's hook)."""
        with self.lock:
            self.access_token = self._bearer(_fresh_token(self._provider))

    def use_provider(self, provider: Callable[[], str]) -> None:
        """Later refreshes ask `provider` (the current token stays until it is refused)."""
        with self.lock:
            self._provider = provider


FORBIDDEN = "HTTP 403"
"""The `AuthError.code` of an HTTP 403: Exchange refused this app or mailbox EWS at all."""
TOO_MANY_REQUESTS = "HTTP 429"
"""The `Throttled.code` of an HTTP 429 that outlasted the wait (see _Policy)."""


class EwsForbidden(ews_errors.TransportError):
    """HTTP 403 from EWS: the request was understood and refused as a whole."""


class _Policy(FaultTolerance):
    """FaultTolerance (waits out ErrorServerBusy up to max_wait), but a 401 fails at once, and
    403 and 429 are told apart from a server that cannot be reached.

    exchangelib's fault-tolerant policy treats a 401 as throttling and retries it for up to
    `max_wait`: a wrong password would look like a hang. We want a clear sign-in error instead.
    exchangelib knows neither 403 nor 429 and reports both as "Unknown failure in response",
    which the adapter would call unreachable. A 403 is what Exchange answers when EWS is off
    for the mailbox or the app (DESIGN.md §3: Exchange Online's EWS block); a 429 asks us to
    wait (its `Retry-After` is honoured like ErrorServerBusy's BackOffMilliseconds, within
    max_wait).
    """

    def raise_response_errors(self, response: Any) -> None:
        if response.status_code == 401:
            raise ews_errors.UnauthorizedError(f"The server refused the sign-in ({response.url})")
        if response.status_code == 403:
            raise EwsForbidden(_first_text(response))
        if response.status_code == 429:
            wait = _retry_after_seconds(response.headers.get("Retry-After"))
            raise ews_errors.ErrorServerBusy(TOO_MANY_REQUESTS, back_off=wait)
        super().raise_response_errors(response)


def _first_text(response: Any) -> str:
    """A short, printable first line of an answer's body (no markup dump in messages)."""
    text = (getattr(response, "text", "") or "").strip()
    if not text or text.startswith("<"):
        return ""
    return text.splitlines()[0][:200]


def _retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` in seconds (delta-seconds only; a date or junk: the policy's default)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


# --- errors ------------------------------------------------------------------------------------

CONFLICT_ERRORS: tuple[type[Exception], ...] = (
    ews_errors.ErrorIrresolvableConflict,
    ews_errors.ErrorStaleObject,
    ews_errors.ErrorInvalidChangeKey,
    # "returned when the change key for an item is missing or stale. For SendItem, UpdateItem,
    # and UpdateFolder operations, the caller must pass in a correct and current change key"
    # (EWS reference, ResponseCode): the answer to a lost ChangeKey race on a folder.
    ews_errors.ErrorChangeKeyRequiredForWriteOperations,
)
NOT_FOUND_ERRORS: tuple[type[Exception], ...] = (
    ews_errors.ErrorItemNotFound,
    ews_errors.ErrorInvalidIdMalformed,
    ews_errors.ErrorFolderNotFound,
)
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    # exchangelib re-raises a dropped connection / read timeout as ErrorTimeoutExpired
    # ("Reraised from ConnectionError(...)"); Exchange itself answers it when a request ran out
    # of time. Both say nothing about the request being wrong.
    ews_errors.ErrorTimeoutExpired,
    ews_errors.ErrorInternalServerTransientError,
    ews_errors.ErrorConnectionFailed,
    ews_errors.ErrorConnectionFailedTransientError,
    ews_errors.ErrorMailboxStoreUnavailable,
    ews_errors.ErrorMailboxMoveInProgress,
    # "HTTP 200 … with an ErrorInternalServerError error code. An inner ErrorServerBusy error
    # code may be present. This indicates that the client should delay sending additional
    # requests until a later time." (EWS throttling in Exchange, table 4)
    ews_errors.ErrorInternalServerError,
)
RETRYABLE_CODES = frozenset(
    [cls.__name__ for cls in TRANSIENT_ERRORS]
    + ["ConnectionError", "ConnectionResetError", "ChunkedEncodingError", "Timeout"]
    + ["ReadTimeout", "ConnectTimeout", "TimeoutError"]
)
"""`Unavailable.code`s worth a new attempt (not TLS or certificate failures: those persist)."""
UNAUTHORIZED = ews_errors.UnauthorizedError.__name__
"""The `AuthError.code` of an HTTP 401 (a refused password or token)."""
AUTH_ERRORS: tuple[type[Exception], ...] = (
    ews_errors.UnauthorizedError,
    ews_errors.ErrorAccessDenied,
    ews_errors.ErrorNonExistentMailbox,
)


def side_error(exc: BaseException) -> SideError:
    """The `sync.sides` error for an exchangelib exception (raised or returned per item)."""
    if isinstance(exc, SideError):
        return exc
    code = type(exc).__name__
    message = str(exc) or code
    if isinstance(exc, ValueError | TypeError | KeyError):
        return Invalid(f"The item's data was refused before sending: {message}", code)
    if isinstance(exc, ews_errors.ErrorInvalidSyncStateData):
        return TokenExpired(f"Exchange no longer accepts the saved sync state: {message}", code)
    if isinstance(exc, CONFLICT_ERRORS):
        return Conflict(f"The item changed since it was read: {message}", code)
    if isinstance(exc, NOT_FOUND_ERRORS):
        return NotFound(message, code)
    if isinstance(exc, AUTH_ERRORS):
        return AuthError(
            f"Exchange refused the sign-in or access to the mailbox ({message}). "
            "Check the password or sign in again.",
            code,
        )
    if isinstance(exc, EwsForbidden):
        detail = f": {message}" if message and message != code else ""
        return AuthError(
            f"Exchange refused Mailbox Sync access to the mailbox (HTTP 403 Forbidden{detail}). "
            "EWS is turned off for this mailbox, or this app is not on the organization's EWS "
            "allow list. Ask your Exchange administrator to allow EWS for Mailbox Sync.",
            FORBIDDEN,
        )
    if isinstance(exc, ews_errors.ErrorServerBusy):
        return Throttled(_busy_message(exc.back_off), code, retry_after=float(exc.back_off or 0))
    if isinstance(exc, ews_errors.RateLimitError):
        wait = float(getattr(exc, "wait", 0) or 0)
        return Throttled(_busy_message(wait), code, retry_after=wait)
    if isinstance(exc, TRANSIENT_ERRORS):
        return Unavailable(f"Exchange could not be reached or timed out: {message}", code)
    if isinstance(exc, ews_errors.ResponseMessageError):
        return Invalid(message, code)  # an EWS ResponseCode about this request or item
    if isinstance(exc, ews_errors.TransportError | OSError | requests.RequestException):
        return Unavailable(f"Exchange could not be reached: {message}", code)
    if isinstance(exc, ews_errors.EWSError):
        return Invalid(message, code)
    return Unavailable(message, code)


def _busy_message(wait: float | None) -> str:
    after = f" It asked to wait {wait:.0f} s;" if wait else ""
    return (
        f"Exchange is throttling requests (too many requests or a busy server).{after} "
        "sync tries again later."
    )


# --- the connection ----------------------------------------------------------------------------


class EwsConnection:
    """One mailbox on one EWS endpoint.

    `max_wait` bounds how long exchangelib waits out ErrorServerBusy (BackOffMilliseconds) and
    transient failures before the call fails with `Throttled` / `Unavailable`. exchangelib shares
    one protocol (HTTP sessions, retry policy) between connections with the same endpoint and
    credentials, so the first such connection's `max_wait` applies to all of them.
    `read_retry_waits`: the pauses before each new attempt of an idempotent read (see `call`).
    """

    def __init__(
        self,
        endpoint: str,
        email: str,
        auth: MailboxAuth,
        ca_file: str | None = None,
        version: Build = EXCHANGE_2016,
        max_wait: float = 300,
        read_retry_waits: Sequence[float] = READ_RETRY_WAITS,
    ) -> None:
        if not endpoint.lower().startswith("https://"):
            raise ValueError("EWS endpoints must use https:// (TLS 1.2 or later)")
        if ca_file:
            trust_ca_file(ca_file)
        self.endpoint = endpoint
        self.email = email
        self.read_retry_waits = tuple(read_retry_waits)
        self.auth = auth
        self._credentials: Credentials | _ProvidedTokenCredentials
        if isinstance(auth, BasicAuth):
            self._credentials = Credentials(auth.username, auth.password)
            auth_type = BASIC
        elif isinstance(auth, NtlmAuth):
            self._credentials = Credentials(auth.username, auth.password)
            auth_type = NTLM
        else:
            self._credentials = _ProvidedTokenCredentials(auth.token_provider)
            auth_type = OAUTH2
        self.config = Configuration(
            service_endpoint=endpoint,
            credentials=self._credentials,
            auth_type=auth_type,
            version=Version(build=version),
            retry_policy=_Policy(max_wait=max_wait),
        )
        self._account: Account | None = None
        self._lock = threading.Lock()
        self.hidden_folder_id: str | None = None
        """The id of our hidden folder (sync.mailbox.claims), once found: later lookups by id."""

    @property
    def account(self) -> Account:
        """The exchangelib account (made on first use; making it sends no request)."""
        with self._lock:
            if self._account is None:
                self._account = Account(
                    primary_smtp_address=self.email,
                    config=self.config,
                    autodiscover=False,
                    access_type=DELEGATE,
                )
            return self._account

    def call(self, fn: Callable[[], T], *, idempotent: bool = False) -> T:
        """Run `fn` (exchangelib calls), mapping errors; an OAuth 401 refreshes the token once.

        `idempotent`: `fn` only reads (GetFolder, SyncFolderItems from a given state, GetItem,
        FindItem), so a dropped connection or a server timeout is met by sending it again after
        each of `read_retry_waits`. Never pass it for a write: its first attempt may have been
        applied although the answer was lost.
        """
        waits = self.read_retry_waits if idempotent else ()
        for attempt, wait in enumerate(waits, start=1):
            try:
                return self._call_once(fn)
            except Unavailable as error:
                if error.code not in RETRYABLE_CODES:
                    raise
                log.info(
                    "EWS read on %s failed (%s), attempt %d of %d; again in %.1f s",
                    self.email, error.message, attempt, len(waits) + 1, wait,
                )  # fmt: skip
                time.sleep(wait)
        return self._call_once(fn)

    def _call_once(self, fn: Callable[[], T]) -> T:
        try:
            with self.errors():
                return fn()
        except AuthError as refused:
            # Only a 401 says the token itself was refused; ErrorAccessDenied and the like
            # would be refused again with any token. A refused request was not run, so sending
            # `fn` again is safe as long as it is one request (a write of one batch: the
            # engine's batches are no larger than EwsSide.write_batch by default).
            if refused.code != UNAUTHORIZED or not self._refresh_token():
                raise
        with self.errors():
            return fn()

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Raise exchangelib's exceptions as `sync.sides` errors."""
        try:
            yield
        except SideError:
            raise
        except (ews_errors.EWSError, OSError, requests.RequestException) as exc:
            raise side_error(exc) from exc

    def _refresh_token(self) -> bool:
        if not isinstance(self._credentials, _ProvidedTokenCredentials):
            return False
        self._credentials.refresh()
        # Sessions carry the old token: drop them so new ones are made with the new token.
        self.account.protocol.close()
        return True

    def use_token_provider(self, provider: Callable[[], str]) -> None:
        """Take bearer tokens from `provider` from now on (OAuth connections only)."""
        if isinstance(self._credentials, _ProvidedTokenCredentials):
            self.auth = OAuthToken(provider)
            self._credentials.use_provider(provider)

    def verify(self) -> None:
        """One cheap call (GetFolder of the Inbox) to check endpoint, TLS and sign-in."""
        self.call(lambda: self.account.inbox.id, idempotent=True)

    def close(self) -> None:
        """Close the HTTP sessions of this connection's protocol."""
        if self._account is not None:
            self._account.protocol.close()

    def __repr__(self) -> str:
        return f"EwsConnection({self.endpoint!r}, {self.email!r})"


_shared: dict[tuple[str, ...], EwsConnection] = {}
_shared_lock = threading.Lock()


def shared_connection(
    endpoint: str, email: str, auth: MailboxAuth, ca_file: str | None = None
) -> EwsConnection:
    """One connection per mailbox, endpoint and credentials for the whole process.

    Each messaging run (and its claim check) would otherwise make a new exchangelib Account and
    look its folders up again: a GetFolder per folder per run. A changed password or another
    sign-in method is another key, so a new connection."""
    secret = auth.password if isinstance(auth, BasicAuth | NtlmAuth) else ""
    key = (
        endpoint,
        email.lower(),
        ca_file or "",
        type(auth).__name__,
        getattr(auth, "username", ""),
        hashlib.sha256(secret.encode()).hexdigest(),
    )
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = EwsConnection(endpoint, email, auth, ca_file=ca_file)
        elif isinstance(auth, OAuthToken):
            found.use_token_provider(auth.token_provider)  # the newest sign-in's provider
        return found
