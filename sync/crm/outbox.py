"""The user's CRM email waiting in Pending Send, and marking it Sent or Failed (Web API).

Dynamics puts an email in Pending Send (`statuscode` 6, email.md's StatusCode table) when the
user sends it and the sender's mailbox record delivers outgoing email through a client. This
client sends it, then records it as sent with the documented `SendEmail` action and
`IssueSend: false` ("whether to send the email, or to just record it as sent":
SendEmailRequest.IssueSend) — the action sets `senton`, which is read-only to a PATCH
(email.md, "Read-only columns"). The Message-Id the message went out with is written to
`messageid` first (valid for update: email.md, "Writable columns"), so replies correlate.

A refused send is taken out of Pending Send as Failed (`statecode` 0, `statuscode` 8: a state
change by PATCH, the documented SetState) with a note on the email saying why: the email form
shows notes, and there is no column for a failure reason.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from sync.crm.client import DataverseClient, query_string
from sync.mail.outgoing import OutgoingEmail
from sync.mailbox.mime import Attachment
from sync.setup.messages import N_
from sync.sides import Duplicate, Invalid

PENDING_SEND, SENT, FAILED = 6, 3, 8
"""email.md StatusCode: 6 Pending Send (state 1), 3 Sent (state 1), 8 Failed (state 0)."""
OPEN = 0
TO, CC, BCC = 2, 3, 4
"""activityparty.md participationtypemask of an email's recipients."""

EMAIL_COLUMNS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "contact": ("contacts", "contactid", ("emailaddress1", "emailaddress2", "emailaddress3")),
    "account": ("accounts", "accountid", ("emailaddress1", "emailaddress2", "emailaddress3")),
    "lead": ("leads", "leadid", ("emailaddress1", "emailaddress2", "emailaddress3")),
    "systemuser": ("systemusers", "systemuserid", ("internalemailaddress",)),
}
"""A party record's table → (entity set, key, the address columns in the order used)."""

_SELECT = ("activityid", "subject", "description", "trackingtoken", "inreplyto", "modifiedon")
_PARTIES = "email_activity_parties($select=participationtypemask,addressused,_partyid_value)"
_LOGICAL = "_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"
_NAME = "_partyid_value@OData.Community.Display.V1.FormattedValue"
NOTE_NAMESPACE = uuid.UUID("6f1d3a52-6a55-4c55-9d0e-2b1f7c0e9a41")
"""Failure notes get ids derived from the email and the reason, so a retried mark makes one."""
CHUNK = 40
"""Party records looked up per request (`or` of ids keeps the URL well under 2,000 chars)."""


class DataverseOutbox:
    """`sync.mail.outgoing.Outbox` over the Web API for the user `user_id` (systemuserid)."""

    def __init__(self, client: DataverseClient, user_id: str, page_size: int = 50) -> None:
        self.client = client
        self.user_id = user_id.lower()
        self.page_size = page_size

    # --- reading ---------------------------------------------------------------------------

    def pending(self) -> list[OutgoingEmail]:
        """The user's emails in Pending Send, oldest (last changed) first, recipients resolved
        to addresses: `addressused`, else the party record's address."""
        rows = [row for page in self._pages() for row in page]
        addresses = self._party_addresses(rows)
        return [self._email(row, addresses) for row in rows]

    def _pages(self) -> Iterator[list[dict[str, Any]]]:
        url: str | None = "emails" + query_string(
            select=_SELECT,
            filter=f"statuscode eq {PENDING_SEND} and _ownerid_value eq {self.user_id}",
            orderby="modifiedon asc,activityid asc",
            expand=_PARTIES,
        )
        headers = {"Prefer": f'odata.include-annotations="*",odata.maxpagesize={self.page_size}'}
        while url:
            data = self.client.request("GET", url, headers=headers).json()
            yield list(data.get("value", []))
            url = data.get("@odata.nextLink")

    def _party_addresses(self, rows: list[dict[str, Any]]) -> dict[str, str]:
        """partyid → address, for resolved parties whose `addressused` is empty."""
        wanted: dict[str, set[str]] = {}
        for row in rows:
            for party in row.get("email_activity_parties") or []:
                logical = party.get(_LOGICAL)
                if party.get("addressused") or not party.get("_partyid_value"):
                    continue
                if logical in EMAIL_COLUMNS:
                    wanted.setdefault(logical, set()).add(str(party["_partyid_value"]).lower())
        found: dict[str, str] = {}
        for logical, ids in wanted.items():
            entity_set, key, columns = EMAIL_COLUMNS[logical]
            ordered = sorted(ids)
            for start in range(0, len(ordered), CHUNK):
                chunk = ordered[start : start + CHUNK]
                condition = " or ".join(f"{key} eq {i}" for i in chunk)
                for page in self.client.iter_pages(
                    entity_set, select=[key, *columns], filter=condition
                ):
                    for record in page:
                        address = next((record[c] for c in columns if record.get(c)), None)
                        if address:
                            found[str(record[key]).lower()] = str(address)
        return found

    def _email(self, row: dict[str, Any], addresses: dict[str, str]) -> OutgoingEmail:
        lists: dict[int, list[str]] = {TO: [], CC: [], BCC: []}
        unresolved: list[str] = []
        for party in row.get("email_activity_parties") or []:
            mask = party.get("participationtypemask")
            if mask not in lists:
                continue  # the sender (1) and other roles do not receive it
            party_id = str(party.get("_partyid_value") or "").lower()
            address = party.get("addressused") or addresses.get(party_id)
            if address:
                if address not in lists[mask]:
                    lists[mask].append(str(address))
            else:
                unresolved.append(str(party.get(_NAME) or party_id or "?"))
        return OutgoingEmail(
            id=str(row["activityid"]).lower(),
            subject=str(row.get("subject") or ""),
            body_html=str(row.get("description") or ""),
            to=tuple(lists[TO]),
            cc=tuple(lists[CC]),
            bcc=tuple(lists[BCC]),
            tracking_token=row.get("trackingtoken") or None,
            in_reply_to=row.get("inreplyto") or None,
            unresolved=tuple(unresolved),
        )

    def attachments(self, email_id: str) -> list[Attachment]:
        """The email's files (activitymimeattachment `body` is base64), in attachment order."""
        out: list[Attachment] = []
        for page in self.client.iter_pages(
            "activitymimeattachments",
            select=["filename", "mimetype", "body", "attachmentnumber"],
            filter=f"_objectid_value eq {email_id}",
            orderby="attachmentnumber asc,activitymimeattachmentid asc",
        ):
            for row in page:
                content = base64.b64decode(row.get("body") or "")
                out.append(
                    Attachment(
                        name=str(row.get("filename") or "attachment"),
                        content=content,
                        content_type=str(row.get("mimetype") or "application/octet-stream"),
                    )
                )
        return out

    def status(self, email_id: str) -> int | None:
        """The email's `statuscode`."""
        row = self.client.get("emails", email_id, select=["statuscode"])
        value = row.get("statuscode")
        return int(value) if value is not None else None

    # --- writing ---------------------------------------------------------------------------

    def mark_sent(
        self, email_id: str, message_id: str, sent_at: str, tracking_token: str | None
    ) -> None:
        """`messageid` ← the Message-Id, then SendEmail with IssueSend false (Sent, `senton`
        set by the service: `sent_at` stays in the local journal). An email the service already
        shows as Sent (our earlier SendEmail applied, its answer lost) is left as it is."""
        self.client.update("emails", email_id, {"messageid": message_id}, if_match="*")
        payload: dict[str, Any] = {"IssueSend": False}
        if tracking_token:
            payload["TrackingToken"] = tracking_token
        try:
            self.client.request(
                "POST",
                f"emails({email_id})/Microsoft.Dynamics.CRM.SendEmail",
                json_body=payload,
            )
        except Invalid:
            if self.status(email_id) != SENT:
                raise

    def mark_failed(self, email_id: str, reason: str) -> None:
        """A note on the email with `reason`, then the email → Open/Failed."""
        note_id = str(uuid.uuid5(NOTE_NAMESPACE, f"{email_id.lower()}\n{reason}"))
        note = {
            "subject": str(N_("Mailbox Sync could not send this email")),
            "notetext": reason,
            "objectid_email@odata.bind": f"/emails({email_id})",
        }
        with contextlib.suppress(Duplicate):  # a retried mark: the note is there
            self.client.create("annotations", note, id=note_id)
        self.client.update(
            "emails", email_id, {"statecode": OPEN, "statuscode": FAILED}, if_match="*"
        )
