"""DataverseEmails: the CRM's emails as email tracking sees them (`sync.mail.ports.EmailDirectory`).

Every method is one request, or a few: lookups of many Message-Ids or addresses are `$filter`s
joined with `or`, at most 50 conditions and 2,000 URL characters each, and when one lookup needs
several such queries they travel in one `$batch`. What email.md allows decides what we write:
`conversationindex`, `inreplyto` and `senton` are read-only (the service sets them), so a tracked
email carries its time in `actualend` and its thread in `baseconversationindexhash` (writable,
"Hash of base of conversation index"); a state is set by an update inside the create's change
set (a Completed/Received 4 or Completed/Sent 3 email, email.md StatusCode). Parties are written
inline on create and replaced with `PUT emails(<id>)/email_activity_parties` afterwards: the
activityparty table's only message is RetrieveMultiple (activityparty.md), and that PUT is "the
special scenario possible only with activityparty" (associate-disassociate-entities-using-web-
api.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from sync.crm.batch import MAX_BATCH_OPERATIONS, BatchOp
from sync.crm.client import DataverseClient, query_string
from sync.crm.entities import KIND_SPECS, primary_key_for
from sync.crm.parties import LOOKUP_ORDER
from sync.mail.facade import RecordRef
from sync.mail.ports import AttachmentData, CrmEmail, NewAttachment, NewEmail, Party
from sync.sides import (
    AuthError,
    Duplicate,
    Invalid,
    NotFound,
    SideError,
    Throttled,
    TokenExpired,
    Unavailable,
)

log = logging.getLogger(__name__)

MESSAGE_ID_LENGTH = 320
"""email.md: MessageId, MaxLength 320. A longer Message-Id (RFC 5322 sets no limit) would be
refused on every try: its first 320 characters are written, and looked up, instead."""


def stored_message_id(message_id: str) -> str:
    """A Message-Id as the email table holds it (`MESSAGE_ID_LENGTH`)."""
    return message_id[:MESSAGE_ID_LENGTH]


MAX_URL = 2000
"""Longest GET URL we send (the sandbox and proxies on the way take more; 2,000 is safe)."""
MAX_CONDITIONS = 50
"""Conditions per `$filter` (Message-Ids, addresses)."""
DEFAULT_MAX_UPLOAD = 5_242_880
"""organization.maxuploadfilesize's default, 5 MB (attachment-annotation-files.md)."""
SENT, RECEIVED, COMPLETED = 3, 4, 1
"""email.md: StatusCode 3 Sent and 4 Received, both of StateCode 1 Completed."""
TOO_BIG = "0x80044a02"
"""unManagedidsattachmentinvalidfilesize "Attachment file size is too big."."""
BLOCKED = "0x80043e09"
"""AttachmentBlocked: a blocked file type (or too large)."""
READ_ONLY_PARTY_MASKS = frozenset({8, 9})
"""Regarding and Owner parties: the service keeps them; a client never writes them."""
ATTACHMENTS_PER_BATCH = MAX_BATCH_OPERATIONS
"""Files per `$batch` (each one operation: the batch limit)."""
BATCH_BYTES = 8 * 1024 * 1024
"""Base64 characters per attachments `$batch` (a bigger file travels alone): bounded requests
and memory whatever the files' sizes."""

_NAMESPACE = uuid.UUID("6f1d8c1e-6d0b-4b8e-9a57-3a0d5e2f7c41")
_ANNOTATIONS = 'odata.include-annotations="*"'
_LOOKUP_TABLE = "@Microsoft.Dynamics.CRM.lookuplogicalname"
_FORMATTED = "@OData.Community.Display.V1.FormattedValue"
_SPEC = KIND_SPECS["emails"]

LOGICAL_NAMES: dict[str, str] = {
    "contacts": "contact",
    "accounts": "account",
    "leads": "lead",
    "systemusers": "systemuser",
    "opportunities": "opportunity",
    "incidents": "incident",
    "queues": "queue",
}
"""Entity set → logical name, for `partyid_<x>@odata.bind` and `regardingobjectid_<x>_email`."""
ENTITY_SETS = {logical: entity_set for entity_set, logical in LOGICAL_NAMES.items()}
PRIMARY_NAMES: dict[str, str] = {
    "contacts": "fullname",
    "leads": "fullname",
    "systemusers": "fullname",
    "accounts": "name",
    "opportunities": "name",
    "incidents": "title",
    "queues": "name",
}
"""Each table's primary name column (its PrimaryNameAttribute), searched by Set Regarding."""


class AttachmentRefused(Invalid):
    """The organization refused an attachment: `code` is TOO_BIG (over maxuploadfilesize) or
    BLOCKED (a blocked file type). The message is still tracked; the attachment is not."""


def email_id_for(message_id: str) -> str:
    """A CRM email id derived from an Internet Message-Id: the same on every computer and for
    every user, so the service's primary key refuses a second email for one message (412)
    even where a user's read privilege hides the first one from the Message-Id lookup."""
    return str(uuid.uuid5(_NAMESPACE, message_id.strip().lower()))


def attachment_id_for(email_id: str, index: int, name: str) -> str:
    """A stable activitymimeattachment id for the `index`-th attachment of an email."""
    return str(uuid.uuid5(_NAMESPACE, f"{email_id.lower()}/{index}/{name}"))


def conversation_hash(index: str | None) -> int | None:
    """A 32-bit hash of a conversation index's 22-byte header block (the thread; replies add
    5-byte blocks), for `baseconversationindexhash`. The service's own hash is not documented,
    so only emails whose hash we wrote are found by it."""
    header = _conversation_header(index)
    if header is None:
        return None
    return int.from_bytes(hashlib.sha256(header).digest()[:4], "big", signed=True)


def _conversation_header(index: str | None) -> bytes | None:
    if not index:
        return None
    text = index.strip()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw[:22] if len(raw) >= 22 else None


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _logical(entity_set: str) -> str:
    return LOGICAL_NAMES.get(entity_set, entity_set.removesuffix("s"))


def _ref(row: Mapping[str, Any], column: str) -> RecordRef | None:
    """A lookup column as a RecordRef, from the annotations that name its table."""
    value = row.get(column)
    if not value:
        return None
    logical = row.get(column + _LOOKUP_TABLE)
    if not logical:
        return None
    entity_set = ENTITY_SETS.get(str(logical), f"{logical}s")
    return RecordRef(entity_set, str(value).lower(), str(row.get(column + _FORMATTED) or ""))


def _party(row: Mapping[str, Any]) -> Party:
    return Party(
        mask=int(row.get("participationtypemask") or 0),
        address=str(row.get("addressused") or ""),
        record=_ref(row, "_partyid_value"),
    )


def _email(row: Mapping[str, Any]) -> CrmEmail:
    return CrmEmail(
        id=str(row["activityid"]).lower(),
        subject=str(row.get("subject") or ""),
        message_id=row.get("messageid") or None,
        outgoing=bool(row.get("directioncode")),
        regarding=_ref(row, "_regardingobjectid_value"),
        tracking_token=row.get("trackingtoken") or None,
        conversation_index=row.get("conversationindex") or None,
        parties=tuple(_party(p) for p in row.get("email_activity_parties") or ()),
        status=row.get("statuscode"),
    )


def _party_body(party: Party) -> dict[str, Any]:
    """One `email_activity_parties` entry: the record bound, the address kept as used."""
    body: dict[str, Any] = {"participationtypemask": party.mask}
    if party.record is not None:
        body[f"partyid_{_logical(party.record.entity_set)}@odata.bind"] = party.record.bind
    if party.address:
        body["addressused"] = party.address
    return body


def _status_of(email: NewEmail) -> int:
    return SENT if email.outgoing else RECEIVED


def _made(
    email: NewEmail, parties: Sequence[Party], status: int | None, regarding: RecordRef | None
) -> CrmEmail:
    """The CrmEmail a create wrote (or, without status, one whose id exists already)."""
    return CrmEmail(
        id=email.id.lower(),
        subject=email.subject,
        message_id=email.message_id,
        outgoing=email.outgoing,
        regarding=regarding,
        tracking_token=email.tracking_token if status is not None else None,
        conversation_index=email.conversation_index if status is not None else None,
        parties=tuple(parties),
        status=status,
    )


def _attachment_op(attachment: NewAttachment) -> BatchOp:
    """The POST of one activitymimeattachment with our id (a retry meets "duplicate key")."""
    data = attachment.data
    if data.content is None:
        raise ValueError(f"attachment {data.name!r} has no content to upload")
    body = {
        "activitymimeattachmentid": attachment.id.lower(),
        "objectid_email@odata.bind": f"/emails({attachment.email_id.lower()})",
        "objecttypecode": "email",
        "filename": data.name,
        "subject": data.name,
        "mimetype": data.content_type or "application/octet-stream",
        "body": base64.b64encode(data.content).decode("ascii"),
    }
    return BatchOp("POST", "activitymimeattachments", body)


def _same_party(a: Party, b: Party) -> bool:
    if a.mask != b.mask:
        return False
    if a.record is not None and b.record is not None:
        return a.record.id.lower() == b.record.id.lower()
    if a.record is None and b.record is None:
        return a.address.strip().lower() == b.address.strip().lower()
    return False


class DataverseEmails:
    """The CRM's emails for one user (`user_id`: their systemuserid, the owner of what we
    create) in one organization."""

    def __init__(self, client: DataverseClient, user_id: str) -> None:
        self.client = client
        self.user_id = user_id.lower()
        self._attachment_limit: int | None = None

    # --- plumbing ------------------------------------------------------------------------------

    def _prefer(self) -> dict[str, str]:
        return {"Prefer": f"{_ANNOTATIONS},odata.maxpagesize={self.client.page_size}"}

    def _fits(self, path: str) -> bool:
        return len(self.client.api_url) + len(path) <= MAX_URL

    def _paths(self, conditions: Sequence[str], build: Callable[[str], str]) -> Iterator[str]:
        """Query paths for `conditions` joined with `or`: ≤ MAX_CONDITIONS each, each URL ≤
        MAX_URL (a condition too long for any URL alone is left out, with a log line)."""
        chunk: list[str] = []
        for condition in conditions:
            trial = [*chunk, condition]
            if len(trial) <= MAX_CONDITIONS and self._fits(build(" or ".join(trial))):
                chunk = trial
                continue
            if chunk:
                yield build(" or ".join(chunk))
            if self._fits(build(condition)):
                chunk = [condition]
            else:
                log.warning("a lookup value is too long for a URL: left out (%.60s…)", condition)
                chunk = []
        if chunk:
            yield build(" or ".join(chunk))

    def _follow(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = [dict(r) for r in data.get("value", [])]
        link = data.get("@odata.nextLink")
        while link:
            page = self.client.request("GET", link, headers=self._prefer()).json()
            rows += [dict(r) for r in page.get("value", [])]
            link = page.get("@odata.nextLink")
        return rows

    def _get_many(
        self, paths: Sequence[str], missing_ok: bool = False
    ) -> list[list[dict[str, Any]] | None]:
        """The rows of each query path: one GET, or one `$batch` of GETs for several. A query
        of a table the organization does not have is None when `missing_ok`."""
        if not paths:
            return []
        if len(paths) == 1:
            try:
                data = self.client.request("GET", paths[0], headers=self._prefer()).json()
            except NotFound:
                if missing_ok:
                    return [None]
                raise
            return [self._follow(data)]
        ops = [BatchOp("GET", path, None, self._prefer()) for path in paths]
        out: list[list[dict[str, Any]] | None] = []
        for result in self.client.batch(ops, continue_on_error=True):
            if result.ok and isinstance(result.body, Mapping):
                out.append(self._follow(result.body))
            elif missing_ok and isinstance(result.error, NotFound):
                out.append(None)
            else:
                raise result.error or Unavailable("no answer to a query in the batch")
        return out

    def _emails_where(
        self, conditions: Sequence[str], top: int | None = None
    ) -> list[dict[str, Any]]:
        """Email rows matching any of `conditions`, oldest first, with their parties."""

        def build(where: str) -> str:
            return "emails" + query_string(
                select=_SPEC.select,
                filter=where,
                expand=_SPEC.expand,
                orderby="createdon asc",
                top=top,
            )

        rows: list[dict[str, Any]] = []
        for found in self._get_many(list(self._paths(conditions, build))):
            rows += found or []
        return rows

    def _get_email(self, email_id: str) -> CrmEmail | None:
        path = f"emails({email_id})" + query_string(select=_SPEC.select, expand=_SPEC.expand)
        try:
            return _email(self.client.request("GET", path, headers=self._prefer()).json())
        except NotFound:
            return None

    # --- reading -------------------------------------------------------------------------------

    def emails_by_message_id(self, message_ids: Sequence[str]) -> dict[str, CrmEmail]:
        """The CRM emails carrying these Message-Ids (the oldest when several do), keyed by the
        Message-Ids as given. Message-Ids compare without regard to case, as the service's
        string comparisons do."""
        wanted = list(dict.fromkeys(m.strip() for m in message_ids if m and m.strip()))
        if not wanted:
            return {}
        stored = {m: stored_message_id(m) for m in wanted}
        conditions = [f"messageid eq {_quoted(s)}" for s in stored.values()]
        found: dict[str, CrmEmail] = {}
        for row in self._emails_where(conditions):
            key = str(row.get("messageid") or "").strip().lower()
            if key and key not in found:
                found[key] = _email(row)
        return {m: found[s.lower()] for m, s in stored.items() if s.lower() in found}

    def email_by_token(self, token: str) -> CrmEmail | None:
        """The (oldest) CRM email with this tracking token."""
        if not token.strip():
            return None
        rows = self._emails_where([f"trackingtoken eq {_quoted(token.strip())}"], top=1)
        return _email(rows[0]) if rows else None

    def email_by_conversation(self, conversation_index: str) -> CrmEmail | None:
        """The first CRM email of the conversation: ours by `baseconversationindexhash`, the
        service's by `conversationindex` starting with the same header block (base64: the
        first 21 bytes are a stable 28-character prefix)."""
        header = _conversation_header(conversation_index)
        if header is None:
            return None
        prefix = base64.b64encode(header[:21]).decode("ascii")
        where = (
            f"baseconversationindexhash eq {conversation_hash(conversation_index)} or "
            f"startswith(conversationindex,{_quoted(prefix)})"
        )
        rows = self._emails_where([where], top=1)
        return _email(rows[0]) if rows else None

    def resolve(self, addresses: Sequence[str], tables: Collection[str]) -> dict[str, RecordRef]:
        """Lower-cased address → the record of `tables` carrying it, in Dynamics' order (a
        contact before a user before a lead before an account): one query per table (more
        only past 50 addresses or 2,000 URL characters), all in one request."""
        wanted = list(dict.fromkeys(a.strip().lower() for a in addresses if a and "@" in a))
        if not wanted:
            return {}
        order = [entry for entry in LOOKUP_ORDER if entry[0] in set(tables)]
        paths: list[tuple[str, str, tuple[str, ...]]] = []
        for entity_set, key, columns, _ in order:
            name = PRIMARY_NAMES.get(entity_set, "fullname")
            select = [key, name, *columns]

            def build(where: str, entity_set: str = entity_set, select: list[str] = select) -> str:
                return entity_set + query_string(select=select, filter=where)

            conditions = [f"{c} eq {_quoted(a)}" for a in wanted for c in columns]
            paths += [(entity_set, p, columns) for p in self._paths(conditions, build)]
        answers = self._get_many([p for _, p, _ in paths], missing_ok=True)
        by_table: dict[str, dict[str, RecordRef]] = {}
        for (entity_set, _, columns), rows in zip(paths, answers, strict=True):
            key = primary_key_for(entity_set)
            name = PRIMARY_NAMES.get(entity_set, "fullname")
            for row in rows or []:
                ref = RecordRef(entity_set, str(row[key]).lower(), str(row.get(name) or ""))
                for column in columns:
                    address = str(row.get(column) or "").strip().lower()
                    if address:
                        by_table.setdefault(entity_set, {}).setdefault(address, ref)
        resolved: dict[str, RecordRef] = {}
        for entity_set, *_ in order:
            for address, ref in by_table.get(entity_set, {}).items():
                if address in wanted:
                    resolved.setdefault(address, ref)
        return resolved

    def search_records(self, text: str, tables: Sequence[str], limit: int) -> list[RecordRef]:
        """Records of `tables` whose primary name contains `text`, by name, at most `limit`;
        one request for all tables. A table the organization does not have (no Sales: no
        opportunities) is left out."""
        words = text.strip()
        if not words or limit <= 0:
            return []
        known = [t for t in dict.fromkeys(tables) if t in PRIMARY_NAMES]
        paths = [
            t
            + query_string(
                select=[primary_key_for(t), PRIMARY_NAMES[t]],
                filter=f"contains({PRIMARY_NAMES[t]},{_quoted(words)})",
                orderby=PRIMARY_NAMES[t],
                top=limit,
            )
            for t in known
        ]
        found: list[RecordRef] = []
        for table, rows in zip(known, self._get_many(paths, missing_ok=True), strict=True):
            key, name = primary_key_for(table), PRIMARY_NAMES[table]
            found += [
                RecordRef(table, str(r[key]).lower(), str(r.get(name) or "")) for r in rows or []
            ]
        found.sort(key=lambda r: (r.name.casefold(), r.entity_set, r.id))
        return found[:limit]

    def attachment_limit(self) -> int:
        """The largest attachment (raw bytes) the organization takes: maxuploadfilesize
        "applies to the size of the file in Base64 encoding" (attachment-annotation-files.md),
        so 3/4 of it. Read once (default 5 MB when it cannot be read)."""
        if self._attachment_limit is None:
            limit = DEFAULT_MAX_UPLOAD
            try:
                rows = self.client.request(
                    "GET", "organizations" + query_string(select=["maxuploadfilesize"], top=1)
                ).json()
                value = (rows.get("value") or [{}])[0].get("maxuploadfilesize")
                if isinstance(value, int) and value > 0:
                    limit = value
            except (AuthError, NotFound, Invalid) as error:
                log.info("maxuploadfilesize not readable (%s): using 5 MB", error.message)
            self._attachment_limit = limit // 4 * 3
        return self._attachment_limit

    # --- writing -------------------------------------------------------------------------------

    def _email_body(self, email: NewEmail) -> tuple[dict[str, Any], list[Party]]:
        """The create's body (parties inline, Regarding bound) and the parties it carries."""
        body: dict[str, Any] = {
            "activityid": email.id.lower(),
            "subject": email.subject,
            "description": email.body_html,
            "directioncode": email.outgoing,
            "messageid": stored_message_id(email.message_id) if email.message_id else None,
            "ownerid@odata.bind": f"/systemusers({self.user_id})",
        }
        moment = (email.sent_on or email.received_on) if email.outgoing else email.received_on
        moment = moment or email.sent_on
        if moment:
            body["actualend"] = moment
        if email.tracking_token:
            body["trackingtoken"] = email.tracking_token
        digest = conversation_hash(email.conversation_index)
        if digest is not None:
            body["baseconversationindexhash"] = digest
        senders = [p.address for p in email.parties if p.mask == 1 and p.address]
        if senders:
            body["sender"] = senders[0][:250]
        recipients = ";".join(p.address for p in email.parties if p.mask == 2 and p.address)
        if recipients:
            body["torecipients"] = recipients[:500]
        if email.regarding is not None:
            nav = f"regardingobjectid_{_logical(email.regarding.entity_set)}_email"
            body[f"{nav}@odata.bind"] = email.regarding.bind
        parties: list[Party] = []
        for party in email.parties:
            if not any(_same_party(party, p) for p in parties):
                parties.append(party)
        body["email_activity_parties"] = [_party_body(p) for p in parties]
        return body, parties

    def create_email(self, email: NewEmail) -> CrmEmail:
        """Create one email (see `create_emails`); its error is raised."""
        [answer] = self.create_emails([email])
        if isinstance(answer, SideError):
            raise answer
        return answer

    def create_emails(self, emails: Sequence[NewEmail]) -> list[CrmEmail | SideError]:
        """Create the emails in one `$batch` (more only past 1,000 operations), each its own
        change set — the create (parties inline, Regarding bound) and the update to Completed
        Sent or Received — with `Prefer: odata.continue-on-error`, so a refused email fails
        alone (its change set answers with its one error) and the others are made.

        One answer per email, in order: the email, or the error that refused it. An email whose
        id exists (a retry, or another user's computer made it) answers the existing one, read
        back in one query. An error of the whole request (throttled, away, sign-in refused)
        stands for every email it left unanswered."""
        if not emails:
            return []
        bodies = [self._email_body(email) for email in emails]
        change_sets = [
            [
                BatchOp("POST", "emails", body),
                BatchOp("PATCH", "$1", {"statecode": COMPLETED, "statuscode": _status_of(email)}),
            ]
            for email, (body, _) in zip(emails, bodies, strict=True)
        ]
        try:
            results = self.client.batch(change_sets, continue_on_error=True)
        except (AuthError, Throttled, TokenExpired, Unavailable) as whole:
            return [whole for _ in emails]
        answers: list[CrmEmail | SideError] = []
        existing: list[int] = []
        for index, (email, (_, parties)) in enumerate(zip(emails, bodies, strict=True)):
            pair = results[2 * index : 2 * index + 2]
            failed = next((r for r in pair if not r.ok), None)
            if failed is None:
                answers.append(_made(email, parties, _status_of(email), email.regarding))
                continue
            error = failed.error or Unavailable("no answer to the email's create")
            if isinstance(error, Duplicate):
                existing.append(index)
            answers.append(error)
        if existing:
            found = self._emails_by_id([emails[i].id for i in existing])
            for index in existing:
                email, (_, parties) = emails[index], bodies[index]
                # not found: not ours to read (Basic read), the duplicate key proves it exists
                answers[index] = found.get(email.id.lower()) or _made(email, parties, None, None)
        return answers

    def _emails_by_id(self, ids: Sequence[str]) -> dict[str, CrmEmail]:
        """The emails with these ids that the user may read, by id (one request)."""
        conditions = [f"activityid eq {i.lower()}" for i in dict.fromkeys(ids)]
        found: dict[str, CrmEmail] = {}
        try:
            rows = self._emails_where(conditions)
        except AuthError:
            return found
        for row in rows:
            email = _email(row)
            found.setdefault(email.id, email)
        return found

    def add_parties(self, email_id: str, parties: Sequence[Party]) -> None:
        """Add the parties the email lacks (a second user tracking the same message): read
        its parties, then PUT them all plus the new ones; read again to make sure a concurrent
        writer did not replace ours, and try again if it did (three times at most)."""
        email_id = email_id.lower()
        for _ in range(3):
            current = self._get_email(email_id)
            if current is None:
                raise NotFound(f"email {email_id} does not exist", "0x80040217")
            missing = [p for p in parties if not any(_same_party(p, c) for c in current.parties)]
            if not missing:
                return
            kept = [p for p in current.parties if p.mask not in READ_ONLY_PARTY_MASKS]
            value = [_party_body(p) for p in [*kept, *missing]]
            self.client.request(
                "PUT", f"emails({email_id})/email_activity_parties", json_body={"value": value}
            )
        raise Unavailable(f"the parties of email {email_id} keep changing under us")

    def add_attachment(self, email_id: str, attachment_id: str, data: AttachmentData) -> None:
        """Attach one file (see `add_attachments`); its error is raised."""
        [answer] = self.add_attachments([NewAttachment(email_id, attachment_id, data)])
        if answer is not None:
            raise answer

    def add_attachments(self, attachments: Sequence[NewAttachment]) -> list[SideError | None]:
        """POST the activitymimeattachments with our ids in `$batch` requests (at most
        ATTACHMENTS_PER_BATCH files or BATCH_BYTES of base64 each, continue-on-error), so one
        refused file fails alone. One answer per file, in order: None when it is there
        (made now, or "duplicate key": a retry), AttachmentRefused when the organization
        refused it (over maxuploadfilesize, a blocked type), else the error. An error of a
        whole request stands for every file it left unanswered."""
        answers: list[SideError | None] = []
        chunk: list[BatchOp] = []
        size = 0
        for attachment in attachments:
            op = _attachment_op(attachment)
            length = len(op.body["body"]) if op.body else 0
            if chunk and (len(chunk) >= ATTACHMENTS_PER_BATCH or size + length > BATCH_BYTES):
                answers += self._attachment_batch(chunk)
                chunk, size = [], 0
            chunk.append(op)
            size += length
        if chunk:
            answers += self._attachment_batch(chunk)
        return answers

    def _attachment_batch(self, ops: list[BatchOp]) -> list[SideError | None]:
        try:
            results = self.client.batch(ops, continue_on_error=True)
        except (AuthError, Throttled, TokenExpired, Unavailable) as whole:
            return [whole for _ in ops]
        answers: list[SideError | None] = []
        for result in results:
            error = None if result.ok else result.error or Unavailable("no answer")
            if isinstance(error, Duplicate):
                error = None
            elif isinstance(error, Invalid) and (error.code or "").lower() in (TOO_BIG, BLOCKED):
                error = AttachmentRefused(error.message, error.code)
            answers.append(error)
        return answers

    def set_regarding(self, email_id: str, regarding: RecordRef | None) -> None:
        """Bind Regarding (PATCH with `If-Match: *`, so a missing email is NotFound, never an
        upsert); None clears it: the current target's navigation property set to null (the
        documented way to disassociate on update), which needs the current target first."""
        email_id = email_id.lower()
        if regarding is not None:
            nav = f"regardingobjectid_{_logical(regarding.entity_set)}_email"
            self.client.update("emails", email_id, {f"{nav}@odata.bind": regarding.bind}, "*")
            return
        path = f"emails({email_id})" + query_string(select=["_regardingobjectid_value"])
        row = self.client.request("GET", path, headers=self._prefer()).json()
        current = _ref(row, "_regardingobjectid_value")
        if current is None:
            return
        nav = f"regardingobjectid_{_logical(current.entity_set)}_email"
        self.client.update("emails", email_id, {f"{nav}@odata.bind": None}, "*")
