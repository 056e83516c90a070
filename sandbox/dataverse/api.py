"""Routing and verbs of the organization Web API (`/<org>/api/data/v9.2/...`) for one
authenticated user: collections, single rows, `$count`, `WhoAmI`, `$batch`.

Takes and returns plain data (`Operation` → `Answer`) so `$batch` parts go through exactly the
same code as top-level requests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sandbox.dataverse import batch, email_actions, errors, operations, query, series
from sandbox.dataverse.batch import Answer, Operation
from sandbox.dataverse.errors import ODataError, bad_request
from sandbox.dataverse.identity_bridge import business_unit_id
from sandbox.dataverse.metadata import entity_definitions, entity_metadata
from sandbox.dataverse.operations import Context, Expansion, check_guid, entity_for
from sandbox.dataverse.query import DeltaClock, Prefer
from sandbox.dataverse.schema import ENTITIES, EntityDef
from sandbox.dataverse.store import Row, Store
from sandbox.identity import Organization

_API = re.compile(r"/api/data/v9\.\d/?")
_SINGLE = re.compile(r"^(?P<set>[A-Za-z_]\w*)\((?P<key>[^)]*)\)$")
_RELATED = re.compile(r"^(?P<set>[A-Za-z_]\w*)\((?P<key>[^)]*)\)/(?P<nav>[A-Za-z_]\w*)$")
JSON_TYPE = "application/json; odata.metadata=minimal"


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    merged = {"Content-Type": JSON_TYPE, "OData-Version": "4.0"}
    merged.update(headers or {})
    return Answer(status, merged, json.dumps(body, ensure_ascii=False).encode("utf-8"))


def error_answer(error: ODataError) -> Answer:
    return json_answer(error.status, error.body(), error.headers)


_BOUND_ACTION = re.compile(
    r"^(?P<set>[A-Za-z_]\w*)(?:\((?P<key>[^)]*)\))?/Microsoft\.Dynamics\.CRM\.(?P<action>\w+)$"
)
_UNBOUND_ACTIONS = ("DeleteOpenInstances",)
"""DeleteOpenInstances "is not bound to any entity types" (its Web API action reference)."""
_METADATA = re.compile(
    r"^EntityDefinitions\(LogicalName='(?P<name>[^']*)'\)"
    r"(?P<attributes>/Attributes(?:/Microsoft\.Dynamics\.CRM\.(?P<cast>\w+))?)?$"
)


@dataclass
class OrgApi:
    """The Web API of every organization, bound to the shared store."""

    store: Store
    delta: DeltaClock
    expansion: Expansion = field(default_factory=Expansion)
    """How far series are expanded into instances (tests may narrow it)."""

    def resource_of(self, url: str) -> str:
        """The part after `/api/data/v9.x/` (or the relative URL itself), without the query."""
        path = unquote(urlsplit(url).path)
        match = _API.search(path)
        return path[match.end() :] if match else path.lstrip("/")

    def handle(
        self,
        org: Organization,
        api_url: str,
        user_id: str,
        op: Operation,
        content_ids: dict[str, str] | None = None,
    ) -> Answer:
        """Answer one request; never raises (errors become OData error answers)."""
        ctx = Context(
            self.store, org.unique_name, api_url, user_id, content_ids or {}, {}, self.expansion
        )
        try:
            with self.store.lock:
                return self._route(org, ctx, op)
        except ODataError as error:
            return error_answer(error)

    def _route(self, org: Organization, ctx: Context, op: Operation) -> Answer:
        url = op.url
        if url.startswith("$"):
            name, _, rest = url[1:].partition("/")
            if name not in ctx.content_ids:
                raise bad_request(
                    f"Content-ID Reference: '${name}' does not exist in the batch context."
                )
            url = ctx.content_ids[name] + (f"/{rest}" if rest else "")
        split = urlsplit(url)
        resource = self.resource_of(split.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        prefer = Prefer.parse(op.headers.get("prefer"))
        if resource in ("WhoAmI", "WhoAmI()"):
            return self._whoami(org, ctx)
        if resource == "$batch":
            if op.method != "POST":
                raise ODataError(405, errors.SYNTAX, "The $batch endpoint accepts POST only.")
            items = batch.parse(op.body, op.headers.get("content-type"))
            answer, _ = batch.execute(
                items,
                self.store,
                lambda inner, ids: self.handle(org, ctx.api_url, ctx.user_id or "", inner, ids),
                prefer.continue_on_error,
            )
            return answer
        metadata = _METADATA.match(resource)
        if metadata or resource == "EntityDefinitions":
            if op.method != "GET":
                raise ODataError(405, errors.SYNTAX, "Table definitions are read with GET here.")
            # -- table definitions (h4): the collection, ChangeTrackingEnabled per table ------
            if metadata is None:
                body = entity_definitions(ctx.api_url, ctx.store, ctx.org, params, ctx.user_id)
                return json_answer(200, body)
            return json_answer(
                200,
                entity_metadata(
                    ctx.api_url,
                    metadata.group("name"),
                    bool(metadata.group("attributes")),
                    metadata.group("cast"),
                    params.get("$select"),
                    ctx.store,
                    ctx.org,
                    params.get("$expand"),  # [offline2] OptionSet; labels in the caller's language
                    ctx.user_id,
                ),
            )
            # -- end (h4) ----------------------------------------------------------------------
        action = _BOUND_ACTION.match(resource)
        if action or resource in _UNBOUND_ACTIONS:
            if op.method != "POST":
                raise ODataError(405, errors.SYNTAX, "Actions are invoked with POST.")
            return self._action(ctx, resource, action, op)
        if resource == "":
            return json_answer(
                200,
                {
                    "@odata.context": f"{ctx.api_url}$metadata",
                    "value": [
                        {"name": name, "kind": "EntitySet", "url": name} for name in ENTITIES
                    ],
                },
            )
        if resource.endswith("/$count"):
            return Answer(
                200,
                {"Content-Type": "text/plain", "OData-Version": "4.0"},
                str(query.count(ctx, resource[: -len("/$count")])).encode(),
            )
        single = _SINGLE.match(resource)
        if single:
            return self._single(ctx, single.group("set"), single.group("key"), op, params, prefer)
        related = _RELATED.match(resource)
        # -- email tracking (h1b): PUT replaces an activity's parties ----------------------
        if related and op.method == "PUT":
            row_id = check_guid(related.group("key").split("=")[-1].strip())
            payload = self._json_body(op)
            with self.store.transaction():
                operations.replace_parties(
                    ctx, related.group("set"), row_id, related.group("nav"), payload
                )
            return Answer(204, {"OData-Version": "4.0"})
        # -- end (h1b) ---------------------------------------------------------------------
        if related and op.method == "GET":
            return self._related(
                ctx,
                related.group("set"),
                related.group("key"),
                related.group("nav"),
                params,
                prefer,
            )
        if "/" in resource or "(" in resource:
            raise ODataError(
                404, errors.SYNTAX, f"Resource not found for the segment '{resource}'."
            )
        return self._collection(ctx, resource, op, params, prefer)

    def _action(
        self, ctx: Context, resource: str, bound: re.Match[str] | None, op: Operation
    ) -> Answer:
        """The series messages: CreateException (bound to the recurringappointmentmaster
        collection), AddRecurrence (bound to an appointment), DeleteOpenInstances (unbound);
        SendEmail (bound to an email)."""
        name = bound.group("action") if bound else resource
        payload = self._json_body(op)
        with self.store.transaction():
            if name == "CreateException" and bound and bound.group("set") == (
                "recurringappointmentmasters"
            ) and bound.group("key") is None:  # fmt: skip
                result = series.create_exception(ctx, payload)
                context = "Microsoft.Dynamics.CRM.CreateExceptionResponse"
                return json_answer(
                    200, {"@odata.context": f"{ctx.api_url}$metadata#{context}", **result}
                )
            if name == "AddRecurrence" and bound and bound.group("set") == "appointments":
                row_id = check_guid((bound.group("key") or "").split("=")[-1].strip())
                master = series.add_recurrence(ctx, row_id, payload)
                body = query.render(ENTITIES["recurringappointmentmasters"], master, None)
                body["@odata.context"] = (
                    f"{ctx.api_url}$metadata#recurringappointmentmasters/$entity"
                )
                return json_answer(200, body)
            if name == "DeleteOpenInstances" and bound is None:
                series.delete_open_instances(ctx, payload)
                return Answer(204, {"OData-Version": "4.0"})
            # -- outgoing email (h2): SendEmail, bound to an email (email_actions.py) ------
            if name == "SendEmail" and bound and bound.group("set") == "emails":
                row_id = check_guid((bound.group("key") or "").split("=")[-1].strip())
                return json_answer(200, email_actions.send_email(ctx, row_id, payload))
            # -- end (h2) --------------------------------------------------------------------
        raise ODataError(404, errors.SYNTAX, f"Resource not found for the segment '{resource}'.")

    def _related(
        self,
        ctx: Context,
        entity_set: str,
        key: str,
        nav: str,
        params: dict[str, str],
        prefer: Prefer,
    ) -> Answer:
        """GET of a collection-valued navigation, e.g. `emails(<id>)/email_activity_parties`."""
        entity = entity_for(entity_set)
        row_id = check_guid(key.split("=")[-1].strip())
        if self.store.table(ctx.org, entity_set).get(row_id) is None:
            raise errors.not_found(entity.logical_name, row_id)
        if nav not in entity.collection_index:
            raise errors.unknown_property(nav, entity.logical_name)
        child_set = entity.collection_index[nav].child_set
        child = ENTITIES[child_set]
        select = query.parse_select(child, params.get("$select"))
        rows = sorted(
            operations.children_of(ctx, entity, nav, row_id), key=lambda r: r.values[child.key]
        )
        shape = f"({','.join(select)})" if select else ""
        body = {
            "@odata.context": f"{ctx.api_url}$metadata#{child_set}{shape}",
            "value": [
                query.render(child, r, select, ctx if prefer.annotations else None) for r in rows
            ],
        }
        return json_answer(200, body)

    def _whoami(self, org: Organization, ctx: Context) -> Answer:
        return json_answer(
            200,
            {
                "@odata.context": f"{ctx.api_url}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": business_unit_id(org.unique_name),
                "UserId": ctx.user_id,
                "OrganizationId": org.id,
            },
        )

    def _entity_headers(self, ctx: Context, entity_set: str, row: Row) -> dict[str, str]:
        key = ENTITIES[entity_set].key
        return {
            "OData-EntityId": f"{ctx.api_url}{entity_set}({row.values[key]})",
            "ETag": f'W/"{row.version}"',
        }

    def _json_body(self, op: Operation) -> Any:
        try:
            return json.loads(op.body.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}.") from None

    def _collection(
        self, ctx: Context, entity_set: str, op: Operation, params: dict[str, str], prefer: Prefer
    ) -> Answer:
        entity_for(entity_set)
        if op.method == "GET":
            body, headers = query.get_collection(ctx, entity_set, params, prefer, self.delta)
            return json_answer(200, body, headers)
        if op.method == "POST":
            _check_creatable(entity_for(entity_set), "POST")
            payload = self._json_body(op)
            with self.store.transaction():
                row = operations.create(ctx, entity_set, payload)
            return self._written(ctx, entity_set, row, params, prefer, created=True)
        raise ODataError(405, errors.SYNTAX, f"The HTTP method '{op.method}' is not allowed here.")

    def _written(
        self,
        ctx: Context,
        entity_set: str,
        row: Row,
        params: dict[str, str],
        prefer: Prefer,
        created: bool,
    ) -> Answer:
        headers = self._entity_headers(ctx, entity_set, row)
        if prefer.representation:
            headers["Preference-Applied"] = "return=representation"
            body = query.representation(ctx, entity_set, row, params, prefer)
            return json_answer(201 if created else 200, body, headers)
        headers["OData-Version"] = "4.0"
        return Answer(204, headers)

    def _single(
        self,
        ctx: Context,
        entity_set: str,
        key: str,
        op: Operation,
        params: dict[str, str],
        prefer: Prefer,
    ) -> Answer:
        entity = entity_for(entity_set)
        row_id = check_guid(key.split("=")[-1].strip())
        table = self.store.table(ctx.org, entity_set)
        existing = table.get(row_id)
        if_match = op.headers.get("if-match")
        if_none_match = op.headers.get("if-none-match")
        if op.method == "GET":
            row, body, expanded = query.get_single(ctx, entity_set, row_id, params, prefer)
            etag = f'W/"{row.version}"'
            if if_none_match and not expanded and _etag_matches(if_none_match, etag):
                return Answer(304, {"OData-Version": "4.0", "ETag": etag})
            return json_answer(200, body, {"ETag": etag})
        if op.method == "PATCH":
            payload = self._json_body(op)
            if if_match:
                if existing is None:
                    raise errors.not_found(entity.logical_name, row_id)
                if not _etag_matches(if_match, f'W/"{existing.version}"'):
                    raise errors.version_mismatch()
            if if_none_match and if_none_match.strip() == "*" and existing is not None:
                raise errors.duplicate_key()
            with self.store.transaction():
                if existing is None:
                    _check_creatable(entity, "PATCH")
                    row = operations.create(ctx, entity_set, payload, row_id=row_id)
                else:
                    row = operations.update(ctx, entity_set, row_id, payload)
            return self._written(ctx, entity_set, row, params, prefer, created=False)
        if op.method == "DELETE":
            _check_creatable(entity, "DELETE")
            if existing is None:
                raise errors.not_found(entity.logical_name, row_id)
            if if_match and not _etag_matches(if_match, f'W/"{existing.version}"'):
                raise errors.version_mismatch()
            with self.store.transaction():
                operations.delete(ctx, entity_set, row_id)
            return Answer(204, {"OData-Version": "4.0"})
        raise ODataError(405, errors.SYNTAX, f"The HTTP method '{op.method}' is not allowed here.")


def _check_creatable(entity: EntityDef, method: str) -> None:
    """Tables whose reference lists no Create (and no Delete) message refuse them."""
    if entity.rules is not None and not entity.rules.creatable:
        raise ODataError(
            405,
            errors.SYNTAX,
            f"The '{method}' request is not supported for the '{entity.logical_name}' entity.",
        )


def _etag_matches(header: str, etag: str) -> bool:
    wanted = [value.strip() for value in header.split(",")]
    return "*" in wanted or etag in wanted or etag.removeprefix("W/") in wanted
