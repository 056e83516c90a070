"""One request loop for our HTTP clients (Dataverse Web API, Microsoft Graph).

Both services follow Microsoft's same rules, so both clients send through `send_with_retries`
and keep only their own error mapping: bounded retries with backoff for 5xx answers, timeouts
and resets; `429`, and `503` with `Retry-After`, waited out (the service protection limits);
a `401` retried once with a refreshed token (a token revoked before it expired); a TLS refusal
(bad certificate, too old a protocol) raised at once, since retrying cannot heal it.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from sync.crm.errors import retry_after_seconds
from sync.sides import AuthError, SideError, Unavailable


@dataclass
class RetryPolicy:
    """How hard to try before giving up (bounded, so a dead server ends a run, not hangs it)."""

    max_retries: int = 4
    """Retries for 5xx, timeouts and resets."""
    backoff: float = 0.5
    """First backoff in seconds; doubles on each retry, capped by `max_backoff`."""
    max_backoff: float = 30.0
    max_throttle_retries: int = 5
    """How many `429`/`503 Retry-After` answers are waited out before Throttled is raised."""
    max_retry_after: float = 300.0
    """The longest single wait a `Retry-After` may ask for (longer asks are capped)."""

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2**attempt))


def is_tls_failure(exc: BaseException) -> bool:
    """Whether a transport error is a TLS refusal (bad certificate, too old a protocol)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "WRONG_VERSION_NUMBER" in str(exc)


ErrorOf = Callable[[httpx.Response, int], SideError]
"""The client's mapping of a failed answer (read as if its status were the given one) to a
typed error of `sync.sides`."""


@dataclass
class Sender:
    """One client's way of sending: its connection, token, policy and error mapping."""

    http: httpx.Client
    token: Callable[[bool], str]
    """The bearer token; True asks for a refreshed one."""
    can_refresh: bool
    policy: RetryPolicy
    sleep: Callable[[float], None]
    error_of: ErrorOf
    counted: Callable[[], None]
    """Called before every HTTP request, retries included (what the services' limits count)."""

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None = None,
        *,
        accept: Callable[[httpx.Response], bool] | None = None,
        exhausted: Callable[[SideError, int, int], SideError] | None = None,
    ) -> httpx.Response:
        """Send one request with the retries above; a failure is raised as a typed SideError.

        `accept` takes an error answer as it is (a failed `$batch` still has a body to read).
        `exhausted(error, status, tries)` may replace the error finally raised for an answer
        (e.g. a delta link that keeps failing becomes "read everything again")."""
        extra = dict(headers)
        policy = self.policy
        attempt = throttled = 0
        refreshed = refresh_now = False
        while True:
            extra["Authorization"] = f"Bearer {self.token(refresh_now)}"
            refresh_now = False
            self.counted()
            try:
                response = self.http.request(method, url, headers=extra, content=content)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if is_tls_failure(exc):
                    raise Unavailable(f"TLS handshake with {url} failed: {exc}") from exc
                if attempt >= policy.max_retries:
                    raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
                self.sleep(policy.delay(attempt))
                attempt += 1
                continue
            status = response.status_code
            if status < 400 or (accept is not None and accept(response)):
                return response
            if status == 401 and not refreshed and self.can_refresh:
                refreshed = refresh_now = True
                continue
            wait = retry_after_seconds(response.headers.get("retry-after"))
            if status == 429 or (status == 503 and wait is not None):
                if throttled >= policy.max_throttle_retries:
                    raise self.error_of(response, 429)
                delay = wait if wait is not None else policy.delay(throttled)
                self.sleep(min(delay, policy.max_retry_after))
                throttled += 1
                continue
            error = self.error_of(response, status)
            if status == 401 and refreshed:
                raise AuthError(
                    f"The service refused a newly issued token too: {error.message or status}. "
                    "Sign in again; if that does not help, ask an administrator whether this "
                    "user may use the service.",
                    error.code,
                )
            if status >= 500 and isinstance(error, Unavailable) and attempt < policy.max_retries:
                self.sleep(policy.delay(attempt))
                attempt += 1
                continue
            raise exhausted(error, status, attempt + 1) if exhausted is not None else error
