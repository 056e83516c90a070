"""A thin, synchronous Dataverse Web API client on httpx.

Why our own: the official Python SDK has neither change tracking nor 429 handling (DESIGN §3).
What it adds over raw httpx: the bearer token from a callable (so msal refreshes plug in; a
401 is retried once with a refreshed token), the token sent over HTTPS only (plain HTTP to the
loopback sandbox alone), bounded retries with backoff for 5xx/timeouts/resets, waiting out
service protection (`429` and `503` with `Retry-After`), OData errors raised as the typed errors
of `sync.sides`, paging that holds one page at a time, change tracking, conditional writes and
`$batch`.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from sync.crm.batch import (
    MAX_BATCH_OPERATIONS,
    NOT_RUN,
    BatchOp,
    BatchResult,
    Item,
    build_batch,
    count_operations,
    entity_id_from,
    parse_batch,
    results_for,
)
from sync.crm.entities import primary_key_for
from sync.crm.errors import error_for
from sync.crm.retry import RetryPolicy, Sender
from sync.sides import AuthError, Invalid, SideError, TokenExpired, Unavailable
from sync.urls import is_secure_url

DEFAULT_PAGE_SIZE = 5000
_QUERY_SAFE = "$,()'=:@-*._~/"

EXPIRED_VERSION_STAMP = "0x80044352"
""""Version stamp associated with the client has expired. Please perform a full sync."
(ExpiredVersionStamp, Web service error codes). The change-tracking page says only that "the
system throws an exception" past `ExpireChangeTrackingInDays`; users report this fault
(MicrosoftDocs/powerapps-docs issue #3845). The docs give no HTTP status, so the code (or its
text) decides, whatever the status: 400, or a 5xx."""
PRIVILEGE_DENIED = "0x80040220"
"""SecLib's privilege check ("SecLib::CheckPrivilege failed … Required Depth: Global" when change
tracking meets less than organization-level read: powerapps-docs issue #3883)."""
NOT_TRACKED = "0x80072491"
"""ChangeTrackingNotEnabledForEntity: "Entity {0} isn't enabled for change tracking."."""


class ChangeTrackingRefused(Invalid):
    """The service will not track changes of this table for this user.

    `reason` is "privilege" (change tracking needs organization-level read: "If the user has
    limited read access, the system throws a privilege check error") or "disabled" (the table
    does not have change tracking enabled). Either way a reader by `modifiedon` still works."""

    def __init__(self, message: str, code: str | None, reason: str) -> None:
        super().__init__(message, code)
        self.reason = reason


def change_tracking_refusal(error: SideError) -> str | None:
    """ "privilege" / "disabled" when `error` is the service refusing change tracking, else None."""
    code = (error.code or "").lower()
    text = error.message or ""
    if code == NOT_TRACKED or "enabled for change tracking" in text:
        return "disabled"
    if code == PRIVILEGE_DENIED or "SecLib::" in text or "Required Depth" in text:
        return "privilege"
    return None


def _delta_error(error: SideError) -> SideError:
    """A refused delta link as the engine needs it: ExpiredVersionStamp (by code or text) is
    TokenExpired at any status, 5xx included, so it is neither retried nor reported as an
    outage; a refusal of change tracking itself is ChangeTrackingRefused."""
    reason = change_tracking_refusal(error)
    if reason is not None:
        return ChangeTrackingRefused(error.message, error.code, reason)
    if isinstance(error, TokenExpired):
        return error
    if (error.code or "").lower() == EXPIRED_VERSION_STAMP:
        return TokenExpired(error.message, error.code)
    return error


def _delta_exhausted(error: SideError, status: int, tries: int) -> SideError:
    """A saved delta link the service keeps failing with 5xx (the docs do not say how an
    expired one is answered): read everything again once, instead of failing every run on a
    link it may never serve again. A real outage fails that full read too, and the link is kept."""
    if status >= 500 and isinstance(error, Unavailable):
        return TokenExpired(
            f"The service answered {status} to the saved delta link {tries} times "
            f"({error.message}): reading everything again.",
            error.code,
        )
    return error


class InsecureUrl(Invalid):
    """A URL the bearer token would travel to unencrypted (plain HTTP to another computer)."""


def check_secure_url(url: str) -> None:
    """Raise InsecureUrl unless `url` is HTTPS, or plain HTTP to exactly a loopback host.

    The host is parsed, never prefix-matched: `http://127.0.0.1.evil.example/` and
    `http://localhost@evil.example/` name other computers.
    """
    if is_secure_url(url):
        return
    raise InsecureUrl(
        f"Refusing to send the sign-in token to {url}: Dataverse must be reached over https:// "
        "(plain http:// is accepted only for the sandbox on this computer).",
        code="insecure_url",
    )


@dataclass(frozen=True)
class DeltaPage:
    """One page of a change-tracking read: upserted rows, deleted ids, and the delta link (only
    on the last page: saving it earlier would skip the rest of the pages)."""

    rows: list[dict[str, Any]]
    deleted: list[str]
    delta_link: str | None
    last: bool = True


def tls_context(verify: str | None = None) -> ssl.SSLContext:
    """Certificate-checking TLS ≥ 1.2; `verify` is a CA file (the sandbox's), else system CAs."""
    context = ssl.create_default_context(cafile=verify) if verify else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def query_string(**options: Any) -> str:
    """`?$select=…&$filter=…` with OData's `$` names left readable and values escaped."""
    pairs = []
    for name, value in options.items():
        if value is None or value == "" or value == ():
            continue
        if isinstance(value, list | tuple):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append(f"${name}={quote(str(value), safe=_QUERY_SAFE)}")
    return ("?" + "&".join(pairs)) if pairs else ""


@dataclass
class DataverseClient:
    """One organization's Web API, e.g. `https://contoso.crm.dynamics.com/api/data/v9.2/`."""

    api_url: str
    token_provider: Callable[[], str]
    verify: str | None = None
    """CA file to trust (the sandbox's); None = the system's CAs. Checking is never off."""
    timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    """Injectable so tests can record the waits."""
    transport: httpx.BaseTransport | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    annotations: str | None = None
    """`odata.include-annotations` on reads, e.g. "*" for formatted values and lookup types
    (`_x_value@Microsoft.Dynamics.CRM.lookuplogicalname`); None asks for none (smaller pages)."""
    request_count: int = 0
    """Every HTTP request sent, retries included (what service protection counts)."""

    def __post_init__(self) -> None:
        if not self.api_url.endswith("/"):
            self.api_url += "/"
        check_secure_url(self.api_url)
        self._http = httpx.Client(
            verify=tls_context(self.verify),
            timeout=self.timeout,
            transport=self.transport,
            headers={
                "Accept": "application/json",
                "OData-Version": "4.0",
                "OData-MaxVersion": "4.0",
                "User-Agent": "mailbox-sync/0.1",
            },
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """An absolute URL: links from the service pass through, paths join the API root."""
        return path if path.startswith(("http://", "https://")) else self.api_url + path

    def _token(self, refresh: bool = False) -> str:
        try:
            if refresh:
                return _refresh(self.token_provider)
            return self.token_provider()
        except SideError:
            raise
        except Exception as exc:  # msal and friends: the sign-in is gone, not the server
            raise AuthError(f"could not get an access token: {exc}") from exc

    @property
    def can_refresh(self) -> bool:
        """Whether the token provider can issue a new token (a `refresh()` method, as
        sync.auth.TokenSource has); asking a plain callable again gives the refused token."""
        return callable(getattr(self.token_provider, "refresh", None))

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        delta: bool = False,
        accept: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Send one request with retries; a failure is raised as a typed SideError.

        `accept` lets a caller take an error answer as it is (a failed `$batch` still has a
        multipart body to read). `delta`: the URL is a delta link (a refusal = TokenExpired).
        """
        url = self.url(path)
        extra = dict(headers or {})
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            extra.setdefault("Content-Type", "application/json")
        check_secure_url(url)  # also links from the service: the token goes with them

        def error_of(response: httpx.Response, status: int) -> SideError:
            error = error_for(status, response.content, response.headers, delta=delta)
            return _delta_error(error) if delta else error

        return self._sender(error_of).send(
            method,
            url,
            extra,
            content,
            accept=accept,
            exhausted=_delta_exhausted if delta else None,
        )

    def _sender(self, error_of: Callable[[httpx.Response, int], SideError]) -> Sender:
        return Sender(
            self._http,
            self._token,
            self.can_refresh,
            self.retry,
            self.sleep,
            error_of,
            self._count,
        )

    def _count(self) -> None:
        self.request_count += 1

    def get_json(self, path: str, headers: Mapping[str, str] | None = None) -> Any:
        return self.request("GET", path, headers=headers).json()

    def _prefer(self, *preferences: str | None) -> dict[str, str]:
        values = [p for p in preferences if p]
        return {"Prefer": ",".join(values)} if values else {}

    def read_preferences(self, *preferences: str | None) -> dict[str, str]:
        """The Prefer header of a read: the given preferences plus the annotations asked for."""
        wanted = f'odata.include-annotations="{self.annotations}"' if self.annotations else None
        return self._prefer(*preferences, wanted)

    # --- reading -------------------------------------------------------------------------------

    def get(
        self,
        entity_set: str,
        id: str,
        select: Sequence[str] | None = None,
        expand: str | None = None,
    ) -> dict[str, Any]:
        """One row by id; NotFound when it does not exist."""
        path = f"{entity_set}({id})" + query_string(select=select, expand=expand)
        return dict(self.get_json(path, headers=self.read_preferences()))

    def iter_pages(
        self,
        entity_set: str,
        select: Sequence[str] | None = None,
        filter: str | None = None,
        orderby: str | None = None,
        top: int | None = None,
        expand: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """The rows, one page at a time, following `@odata.nextLink` (memory stays flat)."""
        url: str | None = entity_set + query_string(
            select=select, filter=filter, orderby=orderby, top=top, expand=expand
        )
        prefer = self.read_preferences(f"odata.maxpagesize={page_size or self.page_size}")
        while url:
            data = self.request("GET", url, headers=prefer).json()
            yield list(data.get("value", []))
            url = data.get("@odata.nextLink")

    def count(self, entity_set: str, filter: str | None = None, key: str | None = None) -> int:
        """How many rows match. `@odata.count` stops at 5,000 on the real service, so past
        that the ids are paged and counted."""
        url = entity_set + query_string(select=[key] if key else None, filter=filter, count=True)
        data = self.request("GET", url, headers=self._prefer("odata.maxpagesize=1")).json()
        total = data.get("@odata.count")
        capped = data.get("@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded")
        if (
            isinstance(total, int)
            and not capped
            and not (total == 5000 and data.get("@odata.nextLink"))
        ):
            return total
        key = key or primary_key_for(entity_set)
        return sum(len(page) for page in self.iter_pages(entity_set, select=[key], filter=filter))

    def track_changes(
        self,
        entity_set: str,
        delta_link: str | None = None,
        select: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[DeltaPage]:
        """Change tracking: without `delta_link` every row (and a delta link at the end); with
        it, the rows created/changed since and the ids deleted since. A refused link raises
        TokenExpired: the caller reads everything again. ChangeTrackingRefused: the table is
        not tracked, or the user lacks organization-level read on it."""
        size = f"odata.maxpagesize={page_size or self.page_size}"
        url: str | None
        if delta_link:
            url, prefer, delta = delta_link, self.read_preferences(size), True
        else:
            url = entity_set + query_string(select=select)
            prefer, delta = self.read_preferences("odata.track-changes", size), False
        while url:
            try:
                data = self.request("GET", url, headers=prefer, delta=delta).json()
            except (AuthError, Invalid) as error:
                reason = change_tracking_refusal(error)
                if reason is None or isinstance(error, ChangeTrackingRefused):
                    raise
                raise ChangeTrackingRefused(error.message, error.code, reason) from error
            rows: list[dict[str, Any]] = []
            deleted: list[str] = []
            for item in data.get("value", []):
                if str(item.get("@odata.context", "")).endswith("$deletedEntity") or (
                    item.get("reason") == "deleted" and "id" in item
                ):
                    deleted.append(str(item["id"]).lower())
                else:
                    rows.append(item)
            url = data.get("@odata.nextLink")
            if url:
                yield DeltaPage(rows, deleted, None, last=False)
            else:
                yield DeltaPage(rows, deleted, data.get("@odata.deltaLink"), last=True)

    def who_am_i(self) -> dict[str, Any]:
        """`UserId`, `BusinessUnitId`, `OrganizationId` of the signed-in user."""
        return dict(self.get_json("WhoAmI"))

    # --- writing -------------------------------------------------------------------------------

    def create(
        self,
        entity_set: str,
        body: Mapping[str, Any],
        id: str | None = None,
        return_representation: bool = False,
        key: str | None = None,
    ) -> tuple[str, str | None, dict[str, Any] | None]:
        """Create a row, with our chosen primary key `id` when given (an idempotency key: a
        second create with it fails with Duplicate). Returns (id, etag, row)."""
        payload = dict(body)
        key = key or primary_key_for(entity_set)
        if id:
            payload[key] = id
        headers = self._prefer("return=representation" if return_representation else None)
        response = self.request("POST", entity_set, headers=headers, json_body=payload)
        row = response.json() if return_representation and response.content else None
        new_id = (
            entity_id_from(response.headers.get("OData-EntityId")) or (row or {}).get(key) or id
        )
        if not new_id:
            raise Unavailable("the service created a row but did not say its id")
        etag = (row or {}).get("@odata.etag") or response.headers.get("ETag")
        return str(new_id).lower(), etag, row

    def update(
        self,
        entity_set: str,
        id: str,
        body: Mapping[str, Any],
        if_match: str | None = None,
        if_none_match: str | None = None,
        return_representation: bool = False,
    ) -> str | None:
        """PATCH a row. `if_match` an ETag (stale → Conflict) or "*" (missing → NotFound instead
        of the upsert a bare PATCH is); `if_none_match="*"` refuses to touch an existing row.
        Returns the new ETag when the service tells it."""
        headers = self._prefer("return=representation" if return_representation else None)
        if if_match:
            headers["If-Match"] = if_match
        if if_none_match:
            headers["If-None-Match"] = if_none_match
        response = self.request(
            "PATCH", f"{entity_set}({id})", headers=headers, json_body=dict(body)
        )
        if return_representation and response.content:
            etag = response.json().get("@odata.etag")
            if etag:
                return str(etag)
        return response.headers.get("ETag")

    def upsert(
        self, entity_set: str, id: str, body: Mapping[str, Any], return_representation: bool = False
    ) -> str | None:
        """Create or update the row with this id (a bare PATCH)."""
        return self.update(entity_set, id, body, return_representation=return_representation)

    def delete(self, entity_set: str, id: str, if_match: str | None = None) -> None:
        self.request(
            "DELETE", f"{entity_set}({id})", headers={"If-Match": if_match} if if_match else None
        )

    # --- $batch --------------------------------------------------------------------------------

    def batch(
        self, operations: Sequence[Item], continue_on_error: bool = False
    ) -> list[BatchResult]:
        """Run operations in `$batch` requests of at most 1,000; a list inside `operations` is a
        change set (atomic). One result per operation, in order. Without `continue_on_error`
        the service stops at the first failure: later operations get status 0 (not run)."""
        results: list[BatchResult] = []
        stopped = False
        for chunk in _chunks(operations):
            if stopped:
                results += [
                    BatchResult(0, error=Unavailable(NOT_RUN))
                    for _ in range(count_operations(chunk))
                ]
                continue
            content_type, body = build_batch(chunk, self.api_url)
            headers = {"Content-Type": content_type}
            headers |= self._prefer("odata.continue-on-error" if continue_on_error else None)
            response = self.request(
                "POST",
                "$batch",
                headers=headers,
                content=body,
                accept=lambda r: (
                    r.status_code < 500
                    and r.status_code not in (401, 403, 429)
                    and r.headers.get("content-type", "").lower().startswith("multipart/")
                ),
            )
            chunk_results = results_for(
                chunk, parse_batch(response.headers["content-type"], response.content)
            )
            results += chunk_results
            stopped = not continue_on_error and any(r.error for r in chunk_results)
        return results


def _refresh(provider: Callable[[], str]) -> str:
    """A new token from a provider that can refresh (see `DataverseClient.can_refresh`)."""
    refresh = getattr(provider, "refresh", None)
    return str(refresh()) if callable(refresh) else provider()


def _chunks(items: Sequence[Item]) -> Iterator[list[Item]]:
    """Split batch items into requests of at most 1,000 operations (change sets kept whole)."""
    chunk: list[Item] = []
    size = 0
    for item in items:
        n = 1 if isinstance(item, BatchOp) else len(item)
        if n > MAX_BATCH_OPERATIONS:
            raise ValueError(f"a change set holds at most {MAX_BATCH_OPERATIONS} operations")
        if size + n > MAX_BATCH_OPERATIONS:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk
