"""DataverseSide: the CRM side of a sync (the `CrmSide` protocol of `sync.sides`) over the Web API.

Changes come from change tracking (the delta link is the token, saved only from the last page);
reads and idempotency lookups by id go in one `$batch` of GETs; writes go in `$batch` with one
change set per operation, so one failing write never rolls back another, and every operation
gets its own result, in order. Creates carry the GUID the engine chose: a create retried after a
crash meets "duplicate key", and is answered with the record the first attempt made.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sync.crm.batch import BatchOp, BatchResult
from sync.crm.client import DataverseClient, query_string
from sync.crm.entities import KIND_SPECS, EntitySpec
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
    Unavailable,
    UpdateOp,
    Upsert,
    WriteOp,
    Written,
)

_REPRESENTATION = {"Prefer": "return=representation"}


def clean_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row without OData control annotations (`@odata.etag`, `@odata.context`); other
    annotations (lookup logical names, formatted values) are data the kinds may use."""
    return {k: v for k, v in row.items() if not k.startswith("@odata.")}


FORMATTED_VALUES = "OData.Community.Display.V1.FormattedValue"


class DataverseSide:
    """The CRM side for one organization and one user."""

    name = "crm"

    def __init__(
        self,
        client: DataverseClient,
        kind_specs: Mapping[str, EntitySpec] | None = None,
        owner_id: str | None = None,
        page_size: int | None = None,
    ) -> None:
        self.client = client
        if client.annotations is None:
            # the kinds read display names of lookups (a contact's company) from formatted values
            client.annotations = FORMATTED_VALUES
        self.kind_specs = dict(KIND_SPECS if kind_specs is None else kind_specs)
        self.owner_id = owner_id
        """The user's systemuserid: records we create are bound to this owner."""
        self.page_size = page_size

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
            fields=clean_row(row),
            key=key,
        )

    # --- reading -------------------------------------------------------------------------------

    def read_changes(
        self, kind: str, token: str | None, known: KnownVersions | None = None
    ) -> Iterator[Page]:
        """Pages of changes by change tracking; `token` is a delta link (None: read all).
        Parties are not in these rows (no `$expand` with change tracking): `read` has them."""
        spec = self.spec(kind)
        for page in self.client.track_changes(
            spec.entity_set, delta_link=token, select=spec.select, page_size=self.page_size
        ):
            changes: list[Upsert | Deleted] = [self._upsert(spec, row) for row in page.rows]
            changes += [Deleted(id) for id in page.deleted]
            yield Page(changes, token=page.delta_link if page.last else None, last=page.last)

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

    # --- writing -------------------------------------------------------------------------------

    def _operation(self, spec: EntitySpec, op: WriteOp) -> BatchOp:
        if isinstance(op, CreateOp):
            body = dict(op.fields)
            body[spec.key] = op.key.lower()
            if self.owner_id and not any(k.startswith("ownerid@") for k in body):
                body["ownerid@odata.bind"] = f"/systemusers({self.owner_id})"
            return BatchOp("POST", spec.entity_set, body, _REPRESENTATION)
        if isinstance(op, UpdateOp):
            headers = {**_REPRESENTATION, "If-Match": op.version or "*"}
            return BatchOp("PATCH", f"{spec.entity_set}({op.id})", dict(op.fields), headers)
        headers = {"If-Match": op.version} if op.version else {}
        return BatchOp("DELETE", f"{spec.entity_set}({op.id})", None, headers)

    def _result(self, op: WriteOp, result: BatchResult) -> Result:
        if isinstance(op, DeleteOp):
            if result.ok or isinstance(result.error, NotFound):
                return Written(op.id, None)
            return result.error or Unavailable("no answer")
        if not result.ok:
            return result.error or Unavailable("no answer")
        id = op.key.lower() if isinstance(op, CreateOp) else op.id
        body = result.body if isinstance(result.body, Mapping) else {}
        return Written(id, result.etag, clean_row(body))

    def write(self, kind: str, ops: Sequence[WriteOp]) -> list[Result]:
        """One result per op, in order. A duplicate create (our key exists: an earlier attempt
        made it) and an already deleted record count as done."""
        if not ops:
            return []
        spec = self.spec(kind)
        try:
            answers = self.client.batch(
                [[self._operation(spec, op)] for op in ops], continue_on_error=True
            )
        except (Unavailable, Throttled) as exc:
            # Nothing is known to have happened: each op is parked and retried later.
            return [exc for _ in ops]
        results: list[Result] = [self._result(op, r) for op, r in zip(ops, answers, strict=True)]
        # Duplicate creates, and writes whose answer lacked the new version: read them back.
        again = [
            i
            for i, (op, res) in enumerate(zip(ops, results, strict=True))
            if (isinstance(op, CreateOp) and isinstance(res, Duplicate))
            or (isinstance(res, Written) and res.version is None and not isinstance(op, DeleteOp))
        ]
        if again:
            ids = [results_id(ops[i]) for i in again]
            try:
                current = self._read_by_ids(spec, ids)
            except SideError:
                current = {}
            for i in again:
                row = current.get(results_id(ops[i]))
                if row is not None:
                    results[i] = Written(row.id, row.version, row.fields)
        return results


def results_id(op: WriteOp) -> str:
    """The record id an op is about (a create's id is its key)."""
    return (op.key if isinstance(op, CreateOp) else op.id).lower()
