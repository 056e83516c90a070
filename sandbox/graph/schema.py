"""Which properties a client may set on each Graph resource (v1.0), and Graph's error bodies.

From the resource pages of the Graph v1.0 reference (resources/contact.md, message.md,
event.md, todotask.md): a property that is read-only there is refused here, and a name the
type does not define is refused as Graph's OData reader refuses it.
"""

from __future__ import annotations

from typing import Any

EXTENDED = {"singleValueExtendedProperties", "multiValueExtendedProperties"}

WRITABLE: dict[str, set[str]] = {
    "contact": {
        "assistantName", "birthday", "businessAddress", "businessHomePage", "businessPhones",
        "categories", "children", "companyName", "department", "displayName", "emailAddresses",
        "fileAs", "generation", "givenName", "homeAddress", "homePhones", "imAddresses",
        "initials", "jobTitle", "manager", "middleName", "mobilePhone", "nickName",
        "officeLocation", "otherAddress", "personalNotes", "profession", "spouseName", "surname",
        "title", "yomiCompanyName", "yomiGivenName", "yomiSurname", *EXTENDED,
    },
    "todoTask": {
        "title", "body", "categories", "completedDateTime", "dueDateTime", "startDateTime",
        "importance", "isReminderOn", "reminderDateTime", "recurrence", "status",
        "linkedResources",
    },
    "event": {
        "subject", "body", "start", "end", "location", "locations", "isAllDay", "showAs",
        "attendees", "importance", "sensitivity", "isReminderOn", "reminderMinutesBeforeStart",
        "recurrence", "categories", "responseRequested", "allowNewTimeProposals",
        "isOnlineMeeting", "onlineMeetingProvider", "hideAttendees", "transactionId",
        "organizer", *EXTENDED,
    },
    "message": {
        "subject", "body", "from", "sender", "toRecipients", "ccRecipients", "bccRecipients",
        "replyTo", "categories", "importance", "isRead", "flag", "internetMessageId",
        "internetMessageHeaders", "isDeliveryReceiptRequested", "isReadReceiptRequested",
        "inferenceClassification", "attachments", *EXTENDED,
    },
}  # fmt: skip

READ_ONLY: dict[str, set[str]] = {
    "contact": {"id", "createdDateTime", "lastModifiedDateTime", "changeKey", "parentFolderId"},
    "todoTask": {
        "id", "createdDateTime", "lastModifiedDateTime", "bodyLastModifiedDateTime",
        "hasAttachments",
    },
    "event": {
        "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "type", "seriesMasterId",
        "iCalUId", "originalStart", "originalStartTimeZone", "originalEndTimeZone", "webLink",
        "isOrganizer", "responseStatus", "isCancelled", "hasAttachments",
    },
    "message": {
        "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "parentFolderId",
        "conversationId", "conversationIndex", "receivedDateTime", "sentDateTime",
        "hasAttachments", "isDraft", "webLink", "bodyPreview",
    },
}  # fmt: skip

CREATE_ONLY = {"message": {"internetMessageId"}}
"""Settable when the item is created, refused on update (message.md: internetMessageId)."""

TASK_STATUS = {"notStarted", "inProgress", "completed", "waitingOnOthers", "deferred"}
IMPORTANCE = {"low", "normal", "high"}


def error_body(code: str, message: str) -> dict[str, Any]:
    """Graph's error JSON (errors.md): `{"error": {"code", "message", "innerError"}}`."""
    return {"error": {"code": code, "message": message, "innerError": {}}}


class GraphError(Exception):
    """An error answer: HTTP status and Graph's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def check_properties(kind: str, body: Any, creating: bool) -> None:
    """Refuse what Graph refuses: not an object, unknown properties, read-only properties."""
    if not isinstance(body, dict):
        raise GraphError(400, "RequestBodyRead", "The request body must be a JSON object.")
    for name in body:
        if name.startswith("@odata."):
            continue
        if name in READ_ONLY[kind] or (not creating and name in CREATE_ONLY.get(kind, ())):
            raise GraphError(
                400,
                "ErrorInvalidPropertyUpdateSentToServer",
                f"The property '{name}' is read-only and cannot be set.",
            )
        if name not in WRITABLE[kind]:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{name}' does not exist on type 'microsoft.graph.{kind}'. Make "
                "sure to only use property names that are defined by the type or mark the type "
                "as open type.",
            )
    if kind == "todoTask" and "status" in body and body["status"] not in TASK_STATUS:
        raise GraphError(
            400, "RequestBodyRead", f"Requested value '{body['status']}' was not found."
        )
    if "importance" in body and body["importance"] not in IMPORTANCE:
        raise GraphError(
            400, "RequestBodyRead", f"Requested value '{body['importance']}' was not found."
        )
