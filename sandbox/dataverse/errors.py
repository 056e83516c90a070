"""Dataverse-shaped errors: `{"error": {"code": "0x…", "message": …}}` with the real codes.

Every failure inside the server is raised as `ODataError`; the HTTP layer (and `$batch`) turns it
into the status, headers and body the real Web API sends, so clients can branch on the same codes.
"""

from __future__ import annotations

from typing import Any

SYNTAX = "0x80060888"
"""OData syntax/property errors (bad $filter, unknown property)."""
NOT_FOUND = "0x80040217"
DUPLICATE = "0x80040237"
VERSION_MISMATCH = "0x80060882"
THROTTLED_REQUESTS = "0x80072322"
EXPIRED_VERSION_STAMP = "0x80044352"
NOT_MEMBER = "0x80072560"
UNAUTHORIZED = "0x80072557"
BATCH_TOO_LARGE = "0x8005F103"
ATTACHMENT_TOO_LARGE = "0x80043e09"


class ODataError(Exception):
    """An error answer: HTTP status, Dataverse error code, message and extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = SYNTAX) -> ODataError:
    return ODataError(400, code, message)


def unknown_property(name: str, logical_name: str) -> ODataError:
    """The message Dataverse gives for an unknown column in $select, $filter or $orderby."""
    return bad_request(
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{logical_name}'."
    )


def unknown_body_property(name: str, logical_name: str) -> ODataError:
    """The message Dataverse gives for an unknown property in a POST/PATCH body."""
    return bad_request(
        f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{logical_name}'. "
        "Make sure to only use property names that are defined by the type."
    )


def not_found(logical_name: str, row_id: str) -> ODataError:
    return ODataError(404, NOT_FOUND, f"{logical_name} With Id = {row_id} Does Not Exist")


def duplicate_key() -> ODataError:
    return ODataError(412, DUPLICATE, "A record with matching key values already exists.")


def version_mismatch() -> ODataError:
    return ODataError(
        412,
        VERSION_MISMATCH,
        "The version of the existing record doesn't match the RowVersion property provided.",
    )


def expired_delta_token() -> ODataError:
    return ODataError(
        400,
        EXPIRED_VERSION_STAMP,
        "Version stamp associated with the client has expired. Please perform a full sync.",
    )


def throttled(limit: int, window: float, retry_after: int) -> ODataError:
    return ODataError(
        429,
        THROTTLED_REQUESTS,
        f"Number of requests exceeded the limit of {limit} over time window of "
        f"{int(window)} seconds.",
        {"Retry-After": str(retry_after)},
    )
