"""The email action of the sandbox Web API: `SendEmail`, bound to one email.

`POST emails(<id>)/Microsoft.Dynamics.CRM.SendEmail` with `{"IssueSend": bool, "TrackingToken":
str?}` (Web API SendEmail action: IssueSend "Indicates whether the email is to be sent or marked
as sent"; SendEmailRequest.IssueSend: "true if the email should be sent; otherwise, false, just
record it as sent"), answered with a SendEmailResponse `{"Subject": …}`.

- `IssueSend: false` records the email as sent: Completed / Sent (statecode 1, statuscode 3,
  email.md's StatusCode table) with `senton` set by the server (a read-only column: email.md,
  "Read-only columns"). This is how a sending client (Outlook then, this app now) closes an email
  it sent. Taken from Draft or Failed (state Open) or Pending Send.
- `IssueSend: true` asks the organization to send it. The sandbox has no mail server of its own:
  the email is queued as Completed / Pending Send (statuscode 6), which is what Dynamics does when
  the sender's mailbox delivers outgoing email through a client (email-activity-entities.md:
  the email router or Dynamics 365 for Outlook "polls Dataverse for pending email messages"),
  and waits there for that client. Taken from Draft or Failed only, and only with at least one
  recipient (EmailRecipientNotSpecified, 0x80040b04 "The e-mail must have at least one recipient
  before it can be sent", Web service error codes). A tracking token is kept when given, else made.

Sending an email in any other state (Sent, Received, Canceled, Pending Send with IssueSend true)
is refused: the docs name no error code for it, so the sandbox answers InvalidOperation
(0x8004023b "Invalid Operation performed.") with a message that says which state it is in.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.dataverse.errors import bad_request, not_found
from sandbox.dataverse.operations import Context, children_of, utc_now
from sandbox.dataverse.schema import ENTITIES

EMAIL_RECIPIENT_NOT_SPECIFIED = "0x80040b04"
INVALID_OPERATION = "0x8004023b"

OPEN, COMPLETED = 0, 1
DRAFT, SENT, PENDING_SEND, FAILED = 1, 3, 6, 8
STATUS_LABELS = {
    1: "Draft",
    2: "Completed",
    3: "Sent",
    4: "Received",
    5: "Canceled",
    6: "Pending Send",
    7: "Sending",
    8: "Failed",
}
"""email.md StatusCode options."""
RECIPIENT_MASKS = (2, 3, 4)
"""To, Cc, Bcc (activityparty.md participationtypemask)."""
TOKEN_PREFIX = "CRM:"
"""The tracking token prefix when the organization row names none (the sandbox's tokens: the
prefix and a 7-digit number; Dynamics' own numbering is its business)."""
_PARAMETERS = {"IssueSend", "TrackingToken"}


def _parameters(payload: Any) -> tuple[bool, str | None]:
    if not isinstance(payload, dict):
        raise bad_request("The request body of SendEmail must be a JSON object.")
    unknown = sorted(set(payload) - _PARAMETERS - {k for k in payload if k.startswith("@")})
    if unknown:
        raise bad_request(
            f"The parameter '{unknown[0]}' in the request payload is not a valid parameter for "
            "the operation 'SendEmail'."
        )
    issue = payload.get("IssueSend")
    if not isinstance(issue, bool):
        raise bad_request(
            "The parameter 'IssueSend' of the operation 'SendEmail' must be true or false "
            "(Edm.Boolean, not nullable)."
        )
    token = payload.get("TrackingToken")
    if token is not None and (not isinstance(token, str) or len(token) > 50):
        raise bad_request(
            "The parameter 'TrackingToken' must be a string of at most 50 characters "
            "(the email's trackingtoken column)."
        )
    return issue, token or None


def _prefix(ctx: Context) -> str:
    """The organization's tracking token prefix (organization.trackingprefix), else "CRM:"."""
    if "organizations" not in ENTITIES:
        return TOKEN_PREFIX
    rows = ctx.store.table(ctx.org, "organizations").rows.values()
    return next((str(r.values["trackingprefix"]) for r in rows if r.values.get("trackingprefix")),
                TOKEN_PREFIX)  # fmt: skip


def _next_token(ctx: Context) -> str:
    """The organization's next token: its prefix and a 7-digit number one above the highest."""
    prefix = _prefix(ctx)
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    table = ctx.store.table(ctx.org, "emails")
    numbers = [
        int(match.group(1))
        for row in table.rows.values()
        if (match := pattern.match(str(row.values.get("trackingtoken") or "")))
    ]
    return f"{prefix}{max(numbers, default=1000) + 1:07d}"


def send_email(ctx: Context, row_id: str, payload: Any) -> dict[str, Any]:
    """Run SendEmail on the email `row_id`; the SendEmailResponse body."""
    issue, token = _parameters(payload)
    entity = ENTITIES["emails"]
    table = ctx.store.table(ctx.org, "emails")
    existing = table.get(row_id)
    if existing is None:
        raise not_found(entity.logical_name, row_id)
    state = existing.values.get("statecode")
    status = existing.values.get("statuscode")
    allowed = state == OPEN or (status == PENDING_SEND and not issue)
    if not allowed:
        label = STATUS_LABELS.get(int(status), str(status)) if status is not None else "unknown"
        needs = "Draft or Failed" + ("" if issue else ", or Pending Send to record it as sent")
        raise bad_request(
            f"Invalid Operation performed. The email is {label} and cannot be sent: "
            f"SendEmail with IssueSend {str(issue).lower()} needs an email in {needs}.",
            INVALID_OPERATION,
        )
    if issue:
        parties = children_of(ctx, entity, "email_activity_parties", row_id)
        if not any(p.values.get("participationtypemask") in RECIPIENT_MASKS for p in parties):
            raise bad_request(
                "The e-mail must have at least one recipient before it can be sent",
                EMAIL_RECIPIENT_NOT_SPECIFIED,
            )
    row = existing.copy()
    now = utc_now()
    row.values["statecode"] = COMPLETED
    row.values["directioncode"] = True
    if issue:
        row.values["statuscode"] = PENDING_SEND
        row.values["trackingtoken"] = (
            token or existing.values.get("trackingtoken") or _next_token(ctx)
        )
    else:
        row.values["statuscode"] = SENT
        row.values["senton"] = now
        if token:
            row.values["trackingtoken"] = token
    row.values["modifiedon"] = now
    if ctx.user_id:
        row.values["_modifiedby_value"] = ctx.user_id
    row.values["versionnumber"] = ctx.store.next_version()
    ctx.store.put(ctx.org, "emails", row)
    return {
        "@odata.context": f"{ctx.api_url}$metadata#Microsoft.Dynamics.CRM.SendEmailResponse",
        "Subject": row.values.get("subject") or "",
    }
