"""A thin, synchronous Microsoft Graph client on httpx, with the Dataverse client's rules.

The same request loop as the Dataverse client (`sync.crm.retry.Sender`): bounded retries with
backoff for 5xx, timeouts and resets; `429` and `503` with `Retry-After` waited out; a `401`
retried once with a refreshed token; errors raised as the typed errors of `sync.sides`.
On top: JSON `$batch` in chunks of 20 (json-batching.md) with throttled parts sent again, and
delta paging (`@odata.nextLink` until `@odata.deltaLink`; `410 Gone` is TokenExpired).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from sync.crm.client import RetryPolicy, check_secure_url, tls_context
from sync.crm.errors import retry_after_seconds
from sync.crm.retry import Sender
from sync.sides import (
    AuthError,
    Conflict,
    Duplicate,
    Invalid,
    NotFound,
    SideError,
    Throttled,
    TokenExpired,
    Unavailable,
)

GRAPH_URL = "https://graph.microsoft.com/v1.0"
MAX_BATCH = 20
"""json-batching.md: a JSON batch holds at most 20 requests."""
SCOPES = tuple(
    f"https://graph.microsoft.com/{name}"
    for name in (
        "Mail.ReadWrite",
        "Mail.Send",
        "Contacts.ReadWrite",
        "Calendars.ReadWrite",
        "Tasks.ReadWrite",
        "MailboxSettings.Read",
    )
)
"""The delegated permissions the Graph mailbox side asks for."""


def error_for(status: int, body: Any, headers: Mapping[str, str] | None = None) -> SideError:
    """A Graph error answer (`{"error": {"code", "message"}}`) as a typed SideError."""
    error = body.get("error") if isinstance(body, dict) else None
    code = str(error.get("code")) if isinstance(error, dict) and error.get("code") else None
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    message = message or f"HTTP {status}"
    if status == 401 or status == 403:
        return AuthError(message, code or str(status))
    if status == 404:
        return NotFound(message, code)
    if status == 410 or (code or "").lower() in ("syncstatenotfound", "resyncrequired"):
        return TokenExpired(message, code)
    if status == 409:
        return Duplicate(message, code) if code == "ErrorFolderExists" else Conflict(message, code)
    if status == 412:
        return Conflict(message, code)
    if status == 429:
        wait = retry_after_seconds((headers or {}).get("retry-after"))
        return Throttled(message, code, wait or 0)
    if status >= 500:
        return Unavailable(message, code)
    return Invalid(message, code)


@dataclass
class GraphClient:
    """One signed-in user's Graph, e.g. `https://graph.microsoft.com/v1.0`."""

    base_url: str = GRAPH_URL
    token_provider: Callable[[], str] = lambda: ""
    verify: str | None = None
    """CA file to trust (the sandbox's); None = the system's CAs. Checking is never off."""
    timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    transport: httpx.BaseTransport | None = None
    timezone: str | None = None
    """Sent as `Prefer: outlook.timezone` when set; None: times come back in UTC."""
    request_count: int = 0
    """Every HTTP request sent, retries included (what Graph's limits count)."""

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        check_secure_url(self.base_url)
        self._http = httpx.Client(
            verify=tls_context(self.verify),
            timeout=self.timeout,
            transport=self.transport,
            headers={"Accept": "application/json", "User-Agent": "mailbox-sync/0.1"},
        )

    def close(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _token(self, refresh: bool = False) -> str:
        try:
            refresher = getattr(self.token_provider, "refresh", None)
            if refresh and callable(refresher):
                return str(refresher())
            return self.token_provider()
        except SideError:
            raise
        except Exception as exc:  # the sign-in is gone, not the server
            raise AuthError(f"could not get an access token: {exc}") from exc

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.timezone and "Prefer" not in headers:
            headers["Prefer"] = f'outlook.timezone="{self.timezone}"'
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request with retries; a failure is raised as a typed SideError."""
        url = self.url(path)
        check_secure_url(url)  # links from the service too: the token goes with them
        extra = self._headers(headers)
        content = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            extra["Content-Type"] = "application/json"
        return Sender(
            self._http,
            self._token,
            callable(getattr(self.token_provider, "refresh", None)),
            self.retry,
            self.sleep,
            lambda response, status: error_for(status, _json(response), response.headers),
            self._count,
        ).send(method, url, extra, content)

    def _count(self) -> None:
        self.request_count += 1

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Any:
        return self.request("GET", path, headers=headers).json()

    def post(self, path: str, body: Any, headers: Mapping[str, str] | None = None) -> Any:
        response = self.request("POST", path, json_body=body, headers=headers)
        return response.json() if response.content else None

    def patch(self, path: str, body: Any, headers: Mapping[str, str] | None = None) -> Any:
        response = self.request("PATCH", path, json_body=body, headers=headers)
        return response.json() if response.content else None

    def delete(self, path: str, headers: Mapping[str, str] | None = None) -> None:
        self.request("DELETE", path, headers=headers)

    def pages(self, path: str, headers: Mapping[str, str] | None = None) -> Iterator[Any]:
        """Each page of a collection or delta, following `@odata.nextLink`."""
        link: str | None = path
        while link:
            page = self.get(link, headers)
            yield page
            link = page.get("@odata.nextLink")

    def all(self, path: str, headers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        return [item for page in self.pages(path, headers) for item in page.get("value", [])]

    def batch(self, requests: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Run requests (`method`, `url` relative to the version, `body`?, `headers`?) in
        JSON batches of 20. One answer per request, in order: the body of a success (None when
        empty) or the SideError of a failure. Throttled parts are sent again after the
        largest Retry-After, up to the policy's throttle retries."""
        answers: list[Any] = [None] * len(requests)
        pending = list(range(len(requests)))
        rounds = 0
        while pending:
            throttled: list[int] = []
            wait = 0.0
            for start in range(0, len(pending), MAX_BATCH):
                chunk = pending[start : start + MAX_BATCH]
                payload = {
                    "requests": [
                        {
                            "id": str(index),
                            "method": requests[index]["method"],
                            "url": requests[index]["url"],
                            **(
                                {"body": requests[index]["body"]}
                                if "body" in requests[index]
                                else {}
                            ),  # fmt: skip
                            "headers": {
                                **self._headers(requests[index].get("headers")),
                                **(
                                    {"Content-Type": "application/json"}
                                    if "body" in requests[index]
                                    else {}
                                ),  # fmt: skip
                            },
                        }
                        for index in chunk
                    ]
                }
                result = self.post("$batch", payload)
                for part in result.get("responses", []):
                    index = int(part["id"])
                    status = int(part.get("status", 500))
                    headers = {k.lower(): v for k, v in (part.get("headers") or {}).items()}
                    if status == 429 or (status == 503 and "retry-after" in headers):
                        throttled.append(index)
                        wait = max(wait, retry_after_seconds(headers.get("retry-after")) or 1.0)
                        answers[index] = error_for(429, part.get("body"), headers)
                    elif status >= 400:
                        answers[index] = error_for(status, part.get("body"), headers)
                    else:
                        answers[index] = part.get("body")
            if not throttled or rounds >= self.retry.max_throttle_retries:
                break
            self.sleep(min(wait, self.retry.max_retry_after))
            rounds += 1
            pending = sorted(throttled)
        return answers


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
