"""`$batch`: multipart/mixed requests with change sets, answered in the same shape.

A change set runs inside one store transaction: the first failing operation rolls back the ones
before it and becomes the change set's only answer. Without `Prefer: odata.continue-on-error` the
batch stops at the first failure and the batch itself answers 400, as the real service does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from sandbox.dataverse.errors import BATCH_TOO_LARGE, ODataError, bad_request
from sandbox.dataverse.store import Store

MAX_OPERATIONS = 1000
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


@dataclass
class Answer:
    """An HTTP answer as data (used for single requests and for batch parts)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    detail: str = ""
    """What the request log records besides the status (e.g. `$batch:12`)."""


@dataclass
class Operation:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class ChangeSet:
    operations: list[Operation]


Dispatch = Callable[[Operation, dict[str, str]], Answer]
"""Runs one operation (with the change set's Content-ID → URL map); never raises."""


def boundary_of(content_type: str | None) -> str | None:
    match = _BOUNDARY.search(content_type or "")
    return match.group(1).strip() if match else None


def _split_head(text: str) -> tuple[dict[str, str], str, str]:
    """'headers \\n\\n rest' → (headers lower-cased, first line if not a header, rest)."""
    normalized = text.replace("\r\n", "\n")
    head, _, rest = normalized.partition("\n\n")
    headers: dict[str, str] = {}
    first = ""
    for i, line in enumerate(head.split("\n")):
        if i == 0 and ":" not in line.split(" ")[0] and " " in line:
            first = line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, first, rest


def _parts(text: str, boundary: str) -> list[str]:
    delimiter = "--" + boundary
    segments = text.split(delimiter)
    parts: list[str] = []
    for segment in segments[1:]:
        if segment.startswith("--"):
            break
        parts.append(segment.lstrip(" \t").removeprefix("\r\n").removeprefix("\n"))
    if not parts:
        raise bad_request("The batch request body has no parts for the given boundary.")
    return parts


def _operation(part: str) -> Operation:
    part_headers, _, inner = _split_head(part)
    if "application/http" not in part_headers.get("content-type", "application/http"):
        raise bad_request("Each batch part must have Content-Type application/http.")
    request_headers, request_line, body = _split_head(inner.lstrip("\n"))
    method, _, target = request_line.partition(" ")
    target = re.sub(r"\s+HTTP/\d(?:\.\d)?$", "", target.strip())
    if not method or not target:
        raise bad_request(f"Invalid request line in batch part: '{request_line}'.")
    return Operation(
        method.upper(),
        target,
        request_headers,
        body.strip().encode(),
        part_headers.get("content-id"),
    )


def parse(body: bytes, content_type: str | None) -> list[Operation | ChangeSet]:
    boundary = boundary_of(content_type)
    if not boundary or "multipart/mixed" not in (content_type or "").lower():
        raise bad_request("A $batch request needs Content-Type multipart/mixed with a boundary.")
    items: list[Operation | ChangeSet] = []
    for part in _parts(body.decode("utf-8", errors="replace"), boundary):
        headers, _, rest = _split_head(part)
        inner_boundary = boundary_of(headers.get("content-type"))
        if "multipart/mixed" in headers.get("content-type", "").lower() and inner_boundary:
            operations = [_operation(p) for p in _parts(rest, inner_boundary)]
            for op in operations:
                if op.method == "GET":
                    raise bad_request("GET requests are not allowed inside a change set.")
            items.append(ChangeSet(operations))
        else:
            items.append(_operation(part))
    total = sum(len(i.operations) if isinstance(i, ChangeSet) else 1 for i in items)
    if total > MAX_OPERATIONS:
        raise ODataError(
            400,
            BATCH_TOO_LARGE,
            f"The number of requests in the batch ({total}) exceeds the maximum of "
            f"{MAX_OPERATIONS}.",
        )
    return items


class _ChangeSetFailed(Exception):
    def __init__(self, answer: Answer, content_id: str | None) -> None:
        self.answer = answer
        self.content_id = content_id


def _render_part(answer: Answer, content_id: str | None) -> str:
    reason = (
        HTTPStatus(answer.status).phrase if answer.status in HTTPStatus._value2member_map_ else ""
    )
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {answer.status} {reason}", "OData-Version: 4.0"]
    lines += [f"{k}: {v}" for k, v in answer.headers.items() if k.lower() != "odata-version"]
    lines.append("")
    return "\r\n".join(lines) + "\r\n" + answer.body.decode("utf-8") + "\r\n"


def execute(
    items: list[Operation | ChangeSet], store: Store, dispatch: Dispatch, continue_on_error: bool
) -> tuple[Answer, int]:
    """Run the batch; returns the multipart answer and how many operations ran."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    chunks: list[str] = []
    failed = False
    ran = 0
    for item in items:
        if isinstance(item, ChangeSet):
            content_ids: dict[str, str] = {}
            answers: list[tuple[Answer, str | None]] = []
            try:
                with store.transaction():
                    for op in item.operations:
                        ran += 1
                        answer = dispatch(op, content_ids)
                        if answer.status >= 400:
                            raise _ChangeSetFailed(answer, op.content_id)
                        answers.append((answer, op.content_id))
                        entity_id = answer.headers.get("OData-EntityId")
                        if op.content_id and entity_id:
                            content_ids[op.content_id] = entity_id
            except _ChangeSetFailed as failure:
                failed = True
                chunks.append(_render_part(failure.answer, failure.content_id))
            else:
                inner = f"changesetresponse_{uuid.uuid4()}"
                body = "".join(f"--{inner}\r\n{_render_part(a, cid)}" for a, cid in answers)
                chunks.append(
                    f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n{body}--{inner}--\r\n"
                )
        else:
            ran += 1
            answer = dispatch(item, {})
            chunks.append(_render_part(answer, item.content_id))
            failed = failed or answer.status >= 400
        if failed and not continue_on_error:
            break
    text = "".join(f"--{boundary}\r\n{chunk}" for chunk in chunks) + f"--{boundary}--\r\n"
    status = 400 if failed and not continue_on_error else 200
    headers = {"Content-Type": f"multipart/mixed; boundary={boundary}", "OData-Version": "4.0"}
    return Answer(status, headers, text.encode("utf-8"), f"$batch:{ran}"), ran
