"""Build and parse Dataverse `$batch` bodies (OData 4.0 multipart/mixed, change sets).

A batch carries up to 1,000 operations; a change set (a nested multipart) is atomic: when one of
its operations fails the service rolls the others back and answers the whole change set with
that one error. Without `Prefer: odata.continue-on-error` the service stops at the first
failure, so operations after it get no answer at all; `results_for` gives those a result that
says so, and every operation exactly one result, in order.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.crm.errors import error_for
from sync.sides import SideError, Unavailable

MAX_BATCH_OPERATIONS = 1000


@dataclass(frozen=True)
class BatchOp:
    """One request inside a batch; `url` is relative to the API root (e.g. "contacts(…)")."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class BatchPart:
    """One parsed response part."""

    status: int
    headers: dict[str, str]
    body: Any
    content_id: str | None = None


@dataclass
class BatchResult:
    """The answer to one operation: status (0 when it was not run), headers, JSON body, and the
    typed error when it failed."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error: SideError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300

    @property
    def entity_id(self) -> str | None:
        """The id from `OData-EntityId` (creates answered 204), if any."""
        return entity_id_from(self.headers.get("odata-entityid"))

    @property
    def etag(self) -> str | None:
        if isinstance(self.body, Mapping) and self.body.get("@odata.etag"):
            return str(self.body["@odata.etag"])
        return self.headers.get("etag")


Item = BatchOp | Sequence[BatchOp]
"""A batch item: one operation, or a change set (a list of operations run atomically)."""

_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")


def entity_id_from(url: str | None) -> str | None:
    """The GUID at the end of an entity URL like `…/contacts(00000000-…)`."""
    if not url:
        return None
    match = _ENTITY_ID.search(url)
    return match.group(1).lower() if match else None


def count_operations(items: Sequence[Item]) -> int:
    return sum(1 if isinstance(item, BatchOp) else len(item) for item in items)


def _request_lines(op: BatchOp, api_url: str, content_id: int | None) -> list[str]:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    url = op.url if op.url.startswith(("http://", "https://", "$")) else api_url + op.url
    lines += ["", f"{op.method.upper()} {url} HTTP/1.1"]
    headers = dict(op.headers)
    if op.body is not None:
        headers.setdefault("Content-Type", "application/json; type=entry")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("")
    lines.append(json.dumps(op.body, separators=(",", ":")) if op.body is not None else "")
    return lines


def build_batch(
    items: Sequence[Item], api_url: str, boundary: str | None = None
) -> tuple[str, bytes]:
    """The Content-Type header and the body of one `$batch` request."""
    if count_operations(items) > MAX_BATCH_OPERATIONS:
        raise ValueError(f"a $batch holds at most {MAX_BATCH_OPERATIONS} operations")
    boundary = boundary or f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    for item in items:
        lines.append(f"--{boundary}")
        if isinstance(item, BatchOp):
            lines += _request_lines(item, api_url, None)
            continue
        changeset = f"changeset_{uuid.uuid4()}"
        lines += [f'Content-Type: multipart/mixed; boundary="{changeset}"', ""]
        # Content-IDs number the operations of each change set from 1 ($1, $2 … refer to them).
        for content_id, op in enumerate(item, start=1):
            lines.append(f"--{changeset}")
            lines += _request_lines(op, api_url, content_id)
        lines.append(f"--{changeset}--")
    lines.append(f"--{boundary}--")
    lines.append("")
    return f'multipart/mixed; boundary="{boundary}"', "\r\n".join(lines).encode("utf-8")


# --- parsing ---------------------------------------------------------------------------------

_BOUNDARY = re.compile(r'boundary\s*=\s*"?([^";]+)"?', re.IGNORECASE)


def boundary_of(content_type: str) -> str | None:
    match = _BOUNDARY.search(content_type or "")
    return match.group(1).strip() if match else None


def _split_head(text: str) -> tuple[dict[str, str], str]:
    """Headers (lower-cased names) and the rest, split at the first blank line."""
    head, _, rest = text.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _split_multipart(text: str, boundary: str) -> list[str]:
    """The bodies between `--boundary` delimiters (text with \\n line ends)."""
    parts: list[str] = []
    delimiter = f"--{boundary}"
    chunks = text.split(delimiter)
    for chunk in chunks[1:]:
        if chunk.startswith("--"):
            break
        parts.append(chunk.removeprefix("\n").removesuffix("\n"))
    return parts


def _parse_http_response(text: str, content_id: str | None) -> BatchPart:
    text = text.lstrip("\n")
    status_line, _, rest = text.partition("\n")
    match = re.match(r"HTTP/\d(?:\.\d)?\s+(\d{3})", status_line.strip())
    status = int(match.group(1)) if match else 0
    headers, body_text = _split_head(rest) if rest.strip() else ({}, "")
    body: Any = None
    if body_text.strip():
        try:
            body = json.loads(body_text)
        except ValueError:
            body = body_text.strip()
    return BatchPart(status, headers, body, content_id)


def parse_batch(content_type: str, data: bytes) -> list[BatchPart | list[BatchPart]]:
    """The parts of a `$batch` response in order; a change set's answers as a list (or, when
    it failed, the single error part that stands for all of it)."""
    boundary = boundary_of(content_type)
    if not boundary:
        raise ValueError("a $batch response without a multipart boundary")
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    items: list[BatchPart | list[BatchPart]] = []
    for part in _split_multipart(text, boundary):
        headers, rest = _split_head(part)
        inner = boundary_of(headers.get("content-type", ""))
        if headers.get("content-type", "").lower().startswith("multipart/") and inner:
            items.append(
                [
                    _parse_http_response(_split_head(p)[1], _split_head(p)[0].get("content-id"))
                    for p in _split_multipart(rest, inner)
                ]
            )
        else:
            items.append(_parse_http_response(rest, headers.get("content-id")))
    return items


def _result(part: BatchPart) -> BatchResult:
    ok = 200 <= part.status < 300 or part.status == 304
    error = None if ok else error_for(part.status, part.body, part.headers)
    return BatchResult(part.status, part.headers, part.body, error)


NOT_RUN = "not run: the batch stopped at an earlier failure"


def results_for(
    items: Sequence[Item], parts: Sequence[BatchPart | list[BatchPart]]
) -> list[BatchResult]:
    """One result per operation of `items`, in order, from the parsed response parts."""
    results: list[BatchResult] = []
    for index, item in enumerate(items):
        part = parts[index] if index < len(parts) else None
        ops = [item] if isinstance(item, BatchOp) else list(item)
        if part is None:
            results += [BatchResult(0, error=Unavailable(NOT_RUN)) for _ in ops]
        elif isinstance(part, BatchPart):
            # A single answer for a change set is its failure: every operation shares it.
            results += [_result(part) for _ in ops]
        else:
            by_id = {p.content_id: p for p in part if p.content_id}
            for position, _op in enumerate(ops):
                found = by_id.get(str(position + 1)) if by_id else None
                if found is None and position < len(part):
                    found = part[position]
                results.append(
                    _result(found) if found else BatchResult(0, error=Unavailable(NOT_RUN))
                )
    return results
