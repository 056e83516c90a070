"""DataverseSide: the CRM side of a sync (the `CrmSide` protocol of `sync.sides`) over the Web API.

Changes come from change tracking where the service allows it (the delta link is the token,
saved only from the last page), else, per table, from the `modifiedon` reader of
`sync.crm.watermark` (change tracking needs organization-level read and tracking enabled on the
table: DESIGN.md §3). The token says which reader made it (`ct:` / `wm:`); a token of the other
reader means a full read. Reads and idempotency lookups by id go in one `$batch` of GETs;
writes go in `$batch` with one change set per operation, so one failing write never rolls back
another, and every operation gets its own result, in order. Creates carry the GUID the engine
chose: a create retried after a crash meets "duplicate key", and is answered with the record the
first attempt made.

Dates go in and out as each column stores them (sync/crm/metadata.py: table definitions and the
user's time zone, kept in the local database for a day when a `metadata_store` is given, and
dropped when a write is refused for a column); a series' days are its own zone's (`OWN_ZONE`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from sync.crm import watermark
from sync.crm.batch import BatchOp, BatchResult
from sync.crm.capabilities import probe_change_tracking
from sync.crm.client import ChangeTrackingRefused, DataverseClient, query_string
from sync.crm.entities import KIND_SPECS, MESSAGES, EntitySpec
from sync.crm.metadata import (
    Column,
    Metadata,
    MetadataStore,
    Table,
    column_refusal,
    from_service,
    to_service,
)
from sync.sides import (
    CreateOp,
    Deleted,
    DeleteOp,
    Duplicate,
    KnownVersions,
    NotFound,
    Page,
    Result,
    SideError,
    Throttled,
    TokenExpired,
    Unavailable,
    UpdateOp,
    Upsert,
    WriteOp,
    Written,
)

log = logging.getLogger(__name__)

_REPRESENTATION = {"Prefer": "return=representation"}
CHANGES, MODIFIEDON, AUTO = "changes", "modifiedon", "auto"
"""The readers: change tracking, the `modifiedon` watermark, or change tracking where allowed."""
CT_PREFIX = "ct:"


def clean_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row without OData control annotations (`@odata.etag`, `@odata.context`); other
    annotations (lookup logical names, formatted values) are data the kinds may use."""
    return {k: v for k, v in row.items() if not k.startswith("@odata.")}


FORMATTED_VALUES = "OData.Community.Display.V1.FormattedValue"
OWN_ZONE: Mapping[str, str] = {"recurringappointmentmasters": "utcconversiontimezonecode"}
"""Entity sets whose days are the record's own zone's, by the column naming it: a series'
pattern dates are days where the series is expanded (its utcconversiontimezonecode), not where
the signed-in user lives (sync/kinds/appointments.py)."""


def _link_selects(link: str, select: Sequence[str] | None) -> bool:
    """Whether a delta link's rows carry every column of `select` (a link without `$select`
    carries them all)."""
    chosen = parse_qs(urlsplit(link).query).get("$select")
    if not chosen:
        return True
    return select is not None and set(select) <= set(chosen[0].split(","))


class DataverseSide:
    """The CRM side for one organization and one user."""

    name = "crm"

    def __init__(
        self,
        client: DataverseClient,
        kind_specs: Mapping[str, EntitySpec] | None = None,
        owner_id: str | None = None,
        page_size: int | None = None,
        reader: str = AUTO,
        sweep_every: int = watermark.DEFAULT_SWEEP_EVERY,
        metadata_store: MetadataStore | None = None,
    ) -> None:
        if reader not in (AUTO, CHANGES, MODIFIEDON):
            raise ValueError(f"unknown CRM change reader {reader!r}")
        self.client = client
        if client.annotations is None:
            # the kinds read display names of lookups (a contact's company) from formatted values
            client.annotations = FORMATTED_VALUES
        self.kind_specs = dict(KIND_SPECS if kind_specs is None else kind_specs)
        self.owner_id = owner_id
        """The user's systemuserid: records we create are bound to this owner."""
        self.page_size = page_size
        self._metadata: Metadata | None = None
        """The organization's table definitions and the user's time zone, read when needed."""
        self.metadata_store = metadata_store
        """Where definitions are kept between processes (the local database), if anywhere."""
        self.reader = reader
        self.sweep_every = max(1, sweep_every)
        """The `modifiedon` reader lists the ids to find deletions every this many reads."""
        self.readers: dict[str, str] = {}
        """kind → the reader its last read used (for status and tests)."""
        self.refusals: dict[str, ChangeTrackingRefused] = {}
        """kind → why change tracking was refused (the fallback's reason)."""

    def select_columns(self, kind: str, columns: Sequence[str]) -> None:
        """Read `kind` with `$select` of these columns from now on (a kind whose reads by id
        expand related rows keeps reading as its spec says)."""
        spec = self.spec(kind)
        if spec.expand is None:
            wanted = tuple(dict.fromkeys([spec.key, *columns]))
            self.kind_specs[kind] = replace(spec, select=wanted)

    def spec(self, kind: str) -> EntitySpec:
        try:
            return self.kind_specs[kind]
        except KeyError:
            raise ValueError(f"the CRM side has no entity set for kind {kind!r}") from None

    def _upsert(self, spec: EntitySpec, row: Mapping[str, Any], key: str | None = None) -> Upsert:
        etag = row.get("@odata.etag")
        return Upsert(
            id=str(row[spec.key]).lower(),
            version=str(etag) if etag else None,
            fields=self._as_read(spec, row),
            key=key,
        )

    # --- reading -------------------------------------------------------------------------------

    def read_changes(
        self, kind: str, token: str | None, known: KnownVersions | None = None
    ) -> Iterator[Page]:
        """Pages of changes; `token` None reads everything. Parties are not in these rows (no
        `$expand` with change tracking): `read` has them. Raises TokenExpired for an expired
        delta link and for a token of the reader not in use (switching readers reads all)."""
        spec = self.spec(kind)
        if token is None:
            yield from self._read_all(kind, spec)
        elif token.startswith(watermark.PREFIX):
            yield from self._read_since_watermark(kind, spec, token)
        else:
            # a delta link; saved without the prefix before the prefix existed
            yield from self._read_delta(kind, spec, token.removeprefix(CT_PREFIX))

    def _tracked(self, kind: str, spec: EntitySpec, link: str | None) -> Iterator[Page]:
        for page in self.client.track_changes(
            spec.entity_set, delta_link=link, select=spec.select, page_size=self.page_size
        ):
            changes: list[Upsert | Deleted] = [self._upsert(spec, row) for row in page.rows]
            changes += [Deleted(id) for id in page.deleted]
            token = CT_PREFIX + page.delta_link if page.last and page.delta_link else None
            yield Page(changes, token=token, last=page.last)
        self.readers[kind] = CHANGES

    def _watermark(self, spec: EntitySpec) -> watermark.WatermarkReader:
        return watermark.WatermarkReader(
            self.client, spec.entity_set, spec.key, spec.select, self.page_size, self.sweep_every
        )

    def _read_all(self, kind: str, spec: EntitySpec) -> Iterator[Page]:
        if self.reader != MODIFIEDON:
            try:
                yield from self._tracked(kind, spec, None)
                return
            except ChangeTrackingRefused as refused:
                if self.reader == CHANGES:
                    raise
                self.refusals[kind] = refused
                log.info(
                    "change tracking of %s refused (%s): reading by modifiedon instead",
                    spec.entity_set,
                    refused.reason,
                )
        self.readers[kind] = MODIFIEDON
        yield from self._watermark(spec).full(lambda row: self._as_read(spec, row))

    def _read_delta(self, kind: str, spec: EntitySpec, link: str) -> Iterator[Page]:
        if self.reader == MODIFIEDON or not link.startswith(("https://", "http://")):
            raise TokenExpired("the saved token is not of the modifiedon reader", "reader-changed")
        if not _link_selects(link, spec.select):
            # a delta link answers with the columns of the read that made it: one made before
            # a column was mapped would bring rows without it (read as cleared)
            raise TokenExpired("the saved delta link reads other columns", "reader-changed")
        try:
            yield from self._tracked(kind, spec, link)
        except ChangeTrackingRefused as refused:
            # the role or the table changed since: read everything again, by modifiedon
            self.refusals[kind] = refused
            raise TokenExpired(
                f"change tracking of {spec.entity_set} is refused now: {refused.message}",
                "reader-changed",
            ) from refused

    def _read_since_watermark(self, kind: str, spec: EntitySpec, token: str) -> Iterator[Page]:
        if self.reader == CHANGES:
            raise TokenExpired("the saved token is of the modifiedon reader", "reader-changed")
        state = watermark.WatermarkState.decode(token)
        reader = self._watermark(spec)
        if self.reader == AUTO and state.reads + 1 >= reader.sweep_every:
            # Once a sweep cycle, ask whether change tracking is allowed now (one small
            # request): if so, switch to it, which starts with a full read.
            refused = probe_change_tracking(self.client, spec.entity_set, spec.key)
            if refused is None:
                self.refusals.pop(kind, None)
                raise TokenExpired(
                    f"change tracking of {spec.entity_set} is allowed now", "reader-changed"
                )
            self.refusals[kind] = refused
        self.readers[kind] = MODIFIEDON
        yield from reader.changes(state, lambda row: self._as_read(spec, row))

    def _read_by_ids(self, spec: EntitySpec, ids: Sequence[str]) -> dict[str, Upsert]:
        unique = list(dict.fromkeys(i.lower() for i in ids))
        if not unique:
            return {}
        options = query_string(select=spec.select, expand=spec.expand)
        if len(unique) == 1:
            try:
                row = self.client.get(spec.entity_set, unique[0], spec.select, spec.expand)
            except NotFound:
                return {}
            return {unique[0]: self._upsert(spec, row)}
        prefer = self.client.read_preferences()
        ops = [BatchOp("GET", f"{spec.entity_set}({i}){options}", None, prefer) for i in unique]
        found: dict[str, Upsert] = {}
        for id, result in zip(unique, self.client.batch(ops, continue_on_error=True), strict=True):
            if result.ok and isinstance(result.body, Mapping):
                found[id] = self._upsert(spec, result.body)
            elif not isinstance(result.error, NotFound):
                raise result.error or Unavailable(f"no answer for {spec.entity_set}({id})")
        return found

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        """The records in full (parties expanded); missing ones are absent."""
        return self._read_by_ids(self.spec(kind), ids)

    def find_by_key(self, kind: str, keys: Sequence[str]) -> dict[str, Upsert]:
        """On the CRM side the idempotency key *is* the record's GUID."""
        spec = self.spec(kind)
        return {
            key: Upsert(u.id, u.version, u.fields, key=key)
            for key, u in self._read_by_ids(spec, keys).items()
        }

    # --- table definitions ---------------------------------------------------------------------

    @property
    def metadata(self) -> Metadata:
        if self._metadata is None:
            self._metadata = Metadata(self.client, self.metadata_store)
        return self._metadata

    def _table(self, spec: EntitySpec) -> Table | None:
        """The definitions of the spec's table (None for tables used as they are)."""
        if spec.logical_name is None:
            return None
        return self.metadata.table(spec.logical_name)

    def _zone(
        self, spec: EntitySpec | None = None, row: Mapping[str, Any] | None = None
    ) -> ZoneInfo:
        """The zone `row`'s days are in: its own for a series (`OWN_ZONE`) when it names one
        the side can tell, else the signed-in user's (usersettings, read once per
        organization)."""
        column = OWN_ZONE.get(spec.entity_set) if spec is not None else None
        code = (row or {}).get(column) if column else None
        if code not in (None, ""):
            try:
                own = self.metadata.zone_of_code(int(code))
            except (TypeError, ValueError):
                own = None
            if own is not None:
                return own
        return self.metadata.time_zone(self.owner_id)

    def _day_columns(self, spec: EntitySpec, table: Table) -> list[Column]:
        names = set(spec.day_columns) | {c.name for c in table.columns.values() if c.shows_a_day}
        return [table.columns[n] for n in sorted(names) if n in table.columns]

    def _as_read(self, spec: EntitySpec, row: Mapping[str, Any]) -> dict[str, Any]:
        """A row as the kinds read it: `clean_row`, and UserLocal columns the kinds treat as days
        written in the user's time zone (`metadata.from_service`)."""
        clean = clean_row(row)
        table = self._table(spec)
        if table is None:
            return clean
        days = [c for c in self._day_columns(spec, table) if clean.get(c.name)]
        if days:
            zone = self._zone(spec, clean)
            for column in days:
                clean[column.name] = from_service(clean[column.name], column, zone)
        return clean

    def _as_written(
        self, spec: EntitySpec, fields: Mapping[str, Any], creating: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The body of a create or update as the table takes it, and what a create must set
        with an update right after it: dates in the form each column stores
        (`metadata.to_service`); columns not valid for a create but valid for an update (an
        appointment's state: statecode "IsValidForCreate False", appointment.md) moved to that
        update, the status reason with them; columns valid for neither left out (a series'
        `firstdayofweek` is not valid for update)."""
        body = dict(fields)
        table = self._table(spec)
        if table is None:
            return body, {}
        later: dict[str, Any] = {}
        zone: ZoneInfo | None = None
        for name in list(body):
            column = table.columns.get(name)
            if column is None:
                continue  # lookups, parties, annotations: the service judges them
            if column.behaviour is not None and isinstance(body[name], str):
                zone = zone or self._zone(spec, fields)
                body[name] = to_service(body[name], column, zone)
            allowed = column.valid_for_create if creating else column.valid_for_update
            if allowed:
                continue
            value = body.pop(name)
            if creating and column.valid_for_update:
                later[name] = value
            else:
                log.debug("%s.%s is not valid for this write: left out", spec.entity_set, name)
        if "statecode" in later and "statuscode" in body:
            later["statuscode"] = body.pop("statuscode")
        return body, later

    # --- writing -------------------------------------------------------------------------------

    def _operations(self, spec: EntitySpec, op: WriteOp) -> list[BatchOp]:
        """One op as the requests of its change set (a create may need a second: its state)."""
        if isinstance(op, CreateOp) and _is_message(op):
            [(name, parameters)] = op.fields.items()
            return [BatchOp("POST", MESSAGES[name], dict(parameters))]
        if isinstance(op, CreateOp):
            body, later = self._as_written(spec, op.fields, creating=True)
            body[spec.key] = op.key.lower()
            if self.owner_id and not any(k.startswith("ownerid@") for k in body):
                body["ownerid@odata.bind"] = f"/systemusers({self.owner_id})"
            if not later:
                return [BatchOp("POST", spec.entity_set, body, _REPRESENTATION)]
            # `$1` is the row the POST made (Content-ID references in a change set).
            return [
                BatchOp("POST", spec.entity_set, body),
                BatchOp("PATCH", "$1", later, _REPRESENTATION),
            ]
        if isinstance(op, UpdateOp):
            body, _ = self._as_written(spec, op.fields, creating=False)
            headers = {**_REPRESENTATION, "If-Match": op.version or "*"}
            return [BatchOp("PATCH", f"{spec.entity_set}({op.id})", body, headers)]
        headers = {"If-Match": op.version} if op.version else {}
        return [BatchOp("DELETE", f"{spec.entity_set}({op.id})", None, headers)]

    def _result(self, spec: EntitySpec, op: WriteOp, answers: Sequence[BatchResult]) -> Result:
        """The op's result from the answers of its change set (the last one carries the row)."""
        failed = next((a for a in answers if not a.ok), None)
        if isinstance(op, DeleteOp):
            if failed is None or isinstance(failed.error, NotFound):
                return Written(op.id, None)
            return failed.error or Unavailable("no answer")
        if failed is not None:
            return failed.error or Unavailable("no answer")
        result = answers[-1]
        body = result.body if isinstance(result.body, Mapping) else {}
        if isinstance(op, CreateOp) and _is_message(op):
            return Written(str(body.get("id") or op.key).lower(), None)
        id = op.key.lower() if isinstance(op, CreateOp) else op.id
        return Written(id, result.etag, self._as_read(spec, body))

    def write(self, kind: str, ops: Sequence[WriteOp]) -> list[Result]:
        """One result per op, in order. A duplicate create (our key exists: an earlier attempt
        made it) and an already deleted record count as done."""
        if not ops:
            return []
        spec = self.spec(kind)
        try:
            sets = [self._operations(spec, op) for op in ops]
            answers = self.client.batch(sets, continue_on_error=True)
        except (Unavailable, Throttled) as exc:
            # Nothing is known to have happened: each op is parked and retried later.
            return [exc for _ in ops]
        results: list[Result] = []
        position = 0
        for op, requests in zip(ops, sets, strict=True):
            results.append(self._result(spec, op, answers[position : position + len(requests)]))
            position += len(requests)
        if spec.logical_name is not None and any(column_refusal(r) for r in results):
            # The definitions said the write was fine and the service did not: read them again.
            log.info("a write to %s was refused for a column: definitions dropped", spec.entity_set)
            self.metadata.invalidate()
        # Duplicate creates, and writes whose answer lacked the new version: read them back.
        again = [
            i
            for i, (op, res) in enumerate(zip(ops, results, strict=True))
            if not _is_message(op)
            and (
                (isinstance(op, CreateOp) and isinstance(res, Duplicate))
                or (
                    isinstance(res, Written)
                    and res.version is None
                    and not isinstance(op, DeleteOp)
                )
            )
        ]
        if again:
            ids = [results_id(ops[i]) for i in again]
            try:
                current = self._read_by_ids(spec, ids)
            except SideError as error:
                # The writes stand; their new versions come with the next read of the records.
                log.warning(
                    "could not read back %d %s written: %s", len(ids), spec.entity_set, error
                )
                current = {}
            for i in again:
                row = current.get(results_id(ops[i]))
                if row is not None:
                    results[i] = Written(row.id, row.version, row.fields)
        return results


def _is_message(op: WriteOp) -> bool:
    return isinstance(op, CreateOp) and len(op.fields) == 1 and next(iter(op.fields)) in MESSAGES


def results_id(op: WriteOp) -> str:
    """The record id an op is about (a create's id is its key)."""
    return (op.key if isinstance(op, CreateOp) else op.id).lower()
