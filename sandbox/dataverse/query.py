"""GET: $select, $filter, $orderby, $top, $count, $expand, paging and change tracking.

Paging links carry an opaque `$skiptoken` (base64 JSON). Without `$orderby` rows come in id order
and the token holds the last id, so rows added while a client pages never shift a page. Change
tracking pins the upper row version when it starts, so changes made during paging come in the
next delta instead of getting lost.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sandbox.dataverse import errors, security
from sandbox.dataverse.errors import ODataError, bad_request
from sandbox.dataverse.odata_filter import parse_filter
from sandbox.dataverse.operations import Context, entity_for, find_row
from sandbox.dataverse.schema import ENTITIES, LOGICAL_TO_SET, EntityDef
from sandbox.dataverse.store import Row

MAX_PAGE = 5000
_TOKEN_TIME = "%m/%d/%Y %H:%M:%S.%f"


@dataclass
class Prefer:
    """The `Prefer` header, parsed."""

    maxpagesize: int | None = None
    track_changes: bool = False
    representation: bool = False
    annotations: bool = False
    continue_on_error: bool = False
    applied: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, header: str | None) -> Prefer:
        prefer = cls()
        for raw in (header or "").split(","):
            item = raw.strip()
            name, _, value = item.partition("=")
            name = name.strip().lower()
            if name == "odata.maxpagesize":
                try:
                    prefer.maxpagesize = max(1, int(value.strip().strip('"')))
                except ValueError:
                    continue
            elif name == "odata.track-changes":
                prefer.track_changes = True
            elif name == "return" and value.strip() == "representation":
                prefer.representation = True
            elif name == "odata.include-annotations":
                prefer.annotations = True
                prefer.applied.append(item)
            elif name == "odata.continue-on-error":
                prefer.continue_on_error = True
        return prefer


@dataclass
class DeltaClock:
    """Issues and checks delta tokens: `<row version>!<issue time>!<server epoch>`."""

    lifetime: float = 7 * 24 * 3600.0
    expired_before: float = 0.0
    epoch: str = field(default_factory=lambda: format(int(time.time() * 1000) % 10**9, "x"))
    expired_status: int = 400
    """The HTTP status of the ExpiredVersionStamp answer (the docs name only the code)."""

    def issue(self, version: int) -> str:
        issued = datetime.fromtimestamp(time.time(), UTC).strftime(_TOKEN_TIME)
        return f"{version}!{issued}!{self.epoch}"

    def check(self, token: str, current_version: int) -> int:
        try:
            version_text, issued_text, epoch = token.split("!")
            version = int(version_text)
            issued = datetime.strptime(issued_text, _TOKEN_TIME).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise self._expired() from None
        if (
            epoch != self.epoch
            or version > current_version
            or issued <= self.expired_before
            or issued < time.time() - self.lifetime
        ):
            raise self._expired()
        return version

    def _expired(self) -> ODataError:
        """0x80044352 "Version stamp associated with the client has expired. Please perform a
        full sync." (ExpiredVersionStamp in the Web service error codes), with our status."""
        error = errors.expired_delta_token()
        error.status = self.expired_status
        return error


def _encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def _decode(token: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        raise bad_request("The $skiptoken value is not valid.") from None
    if not isinstance(state, dict):
        raise bad_request("The $skiptoken value is not valid.")
    return state


def parse_select(entity: EntityDef, text: str | None) -> list[str] | None:
    if not text:
        return None
    columns = [c.strip() for c in text.split(",") if c.strip()]
    for column in columns:
        if column not in entity.columns:
            raise errors.unknown_property(column, entity.logical_name)
    return columns


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses and quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


@dataclass
class Expand:
    name: str
    select: list[str] | None
    single: bool
    target_set: str
    lookup_column: str = ""


def parse_expand(entity: EntityDef, text: str | None) -> list[Expand]:
    out: list[Expand] = []
    for part in _split_top(text or "", ","):
        name, _, rest = part.partition("(")
        name = name.strip()
        options: dict[str, str] = {}
        if rest:
            if not rest.endswith(")"):
                raise bad_request(f"Syntax error in $expand: '{part}'.")
            for option in _split_top(rest[:-1], ";"):
                key, _, value = option.partition("=")
                options[key.strip()] = value.strip()
        unsupported = set(options) - {"$select"}
        if unsupported:
            raise bad_request(
                f"Query option '{sorted(unsupported)[0]}' is not supported in $expand."
            )
        if name in entity.nav_index:
            lookup, target_set = entity.nav_index[name]
            target_entity = ENTITIES.get(target_set)
            if target_entity is None:
                raise bad_request(f"Expanding '{name}' is not supported by the sandbox.")
            select = parse_select(target_entity, options.get("$select"))
            out.append(Expand(name, select, True, target_set, lookup.column))
        elif name in entity.collection_index:
            child_set = entity.collection_index[name].child_set
            select = parse_select(ENTITIES[child_set], options.get("$select"))
            out.append(Expand(name, select, False, child_set))
        else:
            raise errors.unknown_property(name, entity.logical_name)
    return out


def _annotate(ctx: Context, prefer: Prefer) -> Context | None:
    return ctx if prefer.annotations else None


_PRIMARY_NAME = {
    "contact": "fullname",
    "account": "name",
    "lead": "fullname",
    "opportunity": "name",
    "systemuser": "fullname",
    "mailbox": "name",
    "activitymimeattachment": "filename",
}


def _display_name(ctx: Context, logical: str, row_id: str) -> Any:
    """The primary name of a lookup's target (what FormattedValue shows for a lookup)."""
    entity_set = LOGICAL_TO_SET.get(logical)
    found = find_row(ctx, entity_set, row_id) if entity_set else None
    if found is None:
        return None
    return found[1].values.get(_PRIMARY_NAME.get(logical, "subject"))


def render(
    entity: EntityDef, row: Row, select: list[str] | None, annotate: Context | None = None
) -> dict[str, Any]:
    """One row as JSON: @odata.etag, the selected (or all) columns, always the key.

    With `annotate` (the request context, given when `Prefer: odata.include-annotations` asks),
    lookups also carry their target table, navigation property and display name."""
    out: dict[str, Any] = {"@odata.etag": f'W/"{row.version}"'}
    columns = select or list(entity.columns)
    for column in columns:
        value = row.values.get(column)
        out[column] = value
        if annotate and value is not None and column.startswith("_") and column.endswith("_value"):
            base = column[1:-6]
            target = row.targets.get(base)
            if target:
                out[f"{column}@OData.Community.Display.V1.FormattedValue"] = _display_name(
                    annotate, target, value
                )
                out[f"{column}@Microsoft.Dynamics.CRM.lookuplogicalname"] = target
                nav = _nav_for(entity, base, target)
                if nav:
                    out[f"{column}@Microsoft.Dynamics.CRM.associatednavigationproperty"] = nav
    out[entity.key] = row.values.get(entity.key)
    return out


def _nav_for(entity: EntityDef, column: str, target_logical: str) -> str | None:
    lookup = entity.lookup_index.get(column)
    if lookup is None:
        return None
    for nav, target_set in lookup.navs.items():
        if target_set in ENTITIES and ENTITIES[target_set].logical_name == target_logical:
            return nav
    return next(iter(lookup.navs), None)


def apply_expand(
    ctx: Context,
    entity: EntityDef,
    row: Row,
    body: dict[str, Any],
    expands: list[Expand],
    annotations: bool = False,
) -> None:
    for expand in expands:
        if expand.single:
            target_id = row.values.get(f"_{expand.lookup_column}_value")
            target_logical = row.targets.get(expand.lookup_column)
            target_entity = ENTITIES[expand.target_set]
            found = None
            if target_id and target_logical == target_entity.logical_name:
                found = find_row(ctx, expand.target_set, target_id)
            body[expand.name] = (
                render(target_entity, found[1], expand.select, ctx if annotations else None)
                if found
                else None
            )
        else:
            child_entity = ENTITIES[expand.target_set]
            children = list(
                _children_index(ctx, entity, expand.name).get(row.values[entity.key], ())
            )
            children.sort(key=lambda r: r.values[child_entity.key])
            body[expand.name] = [
                render(child_entity, c, expand.select, ctx if annotations else None)
                for c in children
            ]


def _children_index(ctx: Context, entity: EntityDef, name: str) -> dict[str, list[Row]]:
    """Children of every parent for one collection navigation, built once per request."""
    key = f"children:{entity.entity_set}:{name}"
    if key not in ctx.cache:
        collection = entity.collection_index[name]
        column = f"_{collection.child_lookup}_value"
        index: dict[str, list[Row]] = {}
        for child in ctx.store.table(ctx.org, collection.child_set).rows.values():
            parent = child.values.get(column)
            if parent:
                index.setdefault(parent, []).append(child)
        ctx.cache[key] = index
    return ctx.cache[key]


def _context_url(ctx: Context, entity_set: str, select: list[str] | None, suffix: str = "") -> str:
    shape = f"({','.join(select)})" if select else ""
    return f"{ctx.api_url}$metadata#{entity_set}{shape}{suffix}"


def _link(ctx: Context, entity_set: str, params: dict[str, str], **extra: str) -> str:
    keep = {k: v for k, v in params.items() if k not in ("$skiptoken", "$deltatoken")}
    keep.update(extra)
    query = "&".join(f"{k}={quote(v, safe=',()')}" for k, v in keep.items())
    return f"{ctx.api_url}{entity_set}?{query}"


def _sort_key(kind: str) -> Callable[[Any], tuple[int, Any]]:
    if kind in ("str", "memo", "guid"):
        return lambda v: (0, "") if v is None else (1, str(v).casefold())
    return lambda v: (0, 0) if v is None else (1, v)


def get_collection(
    ctx: Context, entity_set: str, params: dict[str, str], prefer: Prefer, delta: DeltaClock
) -> tuple[dict[str, Any], dict[str, str]]:
    """A collection GET: the JSON body and extra response headers."""
    entity = entity_for(entity_set)
    policy = security.policy_for(ctx.store)
    if policy is not None:
        policy.check_read(ctx.org, ctx.user_id, entity)
    select = parse_select(entity, params.get("$select"))
    page_size = min(prefer.maxpagesize or MAX_PAGE, MAX_PAGE)
    headers: dict[str, str] = {}
    applied = list(prefer.applied)
    if prefer.maxpagesize:
        applied.append(f"odata.maxpagesize={prefer.maxpagesize}")
    resuming_tracked = "$skiptoken" in params and "u" in _decode(params["$skiptoken"])
    if prefer.track_changes or "$deltatoken" in params or resuming_tracked:
        for option in ("$filter", "$orderby", "$expand", "$top"):
            if option in params:
                raise bad_request(
                    f'The "{option}" query parameter isn\'t supported when Change Tracking is '
                    "enabled."
                )
        if policy is not None:
            policy.check_track_changes(ctx.org, ctx.user_id, entity)
        applied.append("odata.track-changes")
        headers["Preference-Applied"] = ",".join(applied)
        if "$deltatoken" in params:
            return _delta_page(ctx, entity, params, select, page_size, prefer, delta), headers
        return _tracked_full_page(ctx, entity, params, select, page_size, prefer, delta), headers
    if applied:
        headers["Preference-Applied"] = ",".join(applied)
    return _query_page(ctx, entity, params, select, page_size, prefer), headers


def _query_page(
    ctx: Context,
    entity: EntityDef,
    params: dict[str, str],
    select: list[str] | None,
    page_size: int,
    prefer: Prefer,
) -> dict[str, Any]:
    predicate = parse_filter(params["$filter"], entity) if "$filter" in params else None
    expands = parse_expand(entity, params.get("$expand"))
    order: list[tuple[str, bool]] = []
    for item in _split_top(params.get("$orderby", ""), ","):
        words = item.split()
        if words[0] not in entity.columns:
            raise errors.unknown_property(words[0], entity.logical_name)
        if len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise bad_request(f"Syntax error in $orderby: '{item}'.")
        order.append((words[0], len(words) == 2 and words[1] == "desc"))
    top = None
    if "$top" in params:
        try:
            top = int(params["$top"])
        except ValueError:
            raise bad_request(f"Invalid value '{params['$top']}' for $top query option.") from None
        if top < 0:
            raise bad_request(f"Invalid value '{top}' for $top query option.")
    count = params.get("$count", "").lower() == "true"
    state = _decode(params["$skiptoken"]) if "$skiptoken" in params else {}

    table = ctx.store.table(ctx.org, entity.entity_set)
    policy = security.policy_for(ctx.store)
    visible = policy.row_filter(ctx.org, ctx.user_id, entity) if policy is not None else None
    rows = [
        r
        for r in table.rows.values()
        if (predicate is None or predicate(r.values)) and (visible is None or visible(r.values))
    ]
    total = len(rows)
    rows.sort(key=lambda r: r.values[entity.key])
    for column, descending in reversed(order):
        key = _sort_key(entity.columns[column])
        rows.sort(key=lambda r, c=column, k=key: k(r.values.get(c)), reverse=descending)  # type: ignore[misc]
    if top is not None:
        rows = rows[:top]
        page_size = max(page_size, min(top, MAX_PAGE))
    if order or top is not None:
        offset = int(state.get("o", 0))
        page = rows[offset : offset + page_size]
        more = offset + page_size < len(rows)
        next_state = {"o": offset + page_size}
    else:
        last = state.get("k")
        if last is not None:
            rows = [r for r in rows if r.values[entity.key] > last]
        page = rows[:page_size]
        more = len(rows) > page_size
        next_state = {"k": page[-1].values[entity.key]} if page else {}
    body: dict[str, Any] = {"@odata.context": _context_url(ctx, entity.entity_set, select)}
    if count:
        body["@odata.count"] = min(total, MAX_PAGE)
        if total > MAX_PAGE:
            body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = True
    values = []
    for row in page:
        rendered = render(entity, row, select, _annotate(ctx, prefer))
        apply_expand(ctx, entity, row, rendered, expands, prefer.annotations)
        values.append(rendered)
    body["value"] = values
    if more:
        body["@odata.nextLink"] = _link(
            ctx, entity.entity_set, params, **{"$skiptoken": _encode(next_state)}
        )
    return body


def _tracked_full_page(
    ctx: Context,
    entity: EntityDef,
    params: dict[str, str],
    select: list[str] | None,
    page_size: int,
    prefer: Prefer,
    delta: DeltaClock,
) -> dict[str, Any]:
    state = _decode(params["$skiptoken"]) if "$skiptoken" in params else {}
    upto = int(state.get("u", ctx.store.version))
    last = state.get("k")
    table = ctx.store.table(ctx.org, entity.entity_set)
    rows = sorted(
        (r for r in table.rows.values() if last is None or r.values[entity.key] > last),
        key=lambda r: r.values[entity.key],
    )
    page = rows[:page_size]
    body: dict[str, Any] = {
        "@odata.context": _context_url(ctx, entity.entity_set, select),
        "value": [render(entity, r, select, _annotate(ctx, prefer)) for r in page],
    }
    if len(rows) > page_size:
        token = _encode({"k": page[-1].values[entity.key], "u": upto})
        body["@odata.nextLink"] = _link(ctx, entity.entity_set, params, **{"$skiptoken": token})
    else:
        body["@odata.deltaLink"] = _link(
            ctx, entity.entity_set, params, **{"$deltatoken": delta.issue(upto)}
        )
    return body


def _delta_page(
    ctx: Context,
    entity: EntityDef,
    params: dict[str, str],
    select: list[str] | None,
    page_size: int,
    prefer: Prefer,
    delta: DeltaClock,
) -> dict[str, Any]:
    since = delta.check(params["$deltatoken"], ctx.store.version)
    state = _decode(params["$skiptoken"]) if "$skiptoken" in params else {}
    upto = int(state.get("u", ctx.store.version))
    after = (int(state.get("p", 0)), int(state.get("v", 0)), str(state.get("i", "")))
    table = ctx.store.table(ctx.org, entity.entity_set)
    changes: list[tuple[int, int, str, Row | None]] = [
        (0, r.version, r.values[entity.key], r)
        for r in table.rows.values()
        if since < r.version <= upto
    ]
    seen: set[str] = set()
    for version, row_id in table.deletes:
        if since < version <= upto and row_id not in table.rows and row_id not in seen:
            seen.add(row_id)
            changes.append((1, version, row_id, None))
    changes.sort(key=lambda c: (c[0], c[1], c[2]))
    if "$skiptoken" in params:
        changes = [c for c in changes if (c[0], c[1], c[2]) > after]
    page = changes[:page_size]
    values: list[dict[str, Any]] = []
    for _, _, row_id, row in page:
        if row is not None:
            values.append(render(entity, row, select, _annotate(ctx, prefer)))
        else:
            values.append(
                {
                    "@odata.context": f"{ctx.api_url}$metadata#{entity.entity_set}/$deletedEntity",
                    "id": row_id,
                    "reason": "deleted",
                }
            )
    body: dict[str, Any] = {
        "@odata.context": _context_url(ctx, entity.entity_set, select, "/$delta"),
        "value": values,
    }
    if len(changes) > page_size:
        phase, version, row_id, _ = page[-1]
        token = _encode({"p": phase, "v": version, "i": row_id, "u": upto})
        body["@odata.nextLink"] = _link(
            ctx,
            entity.entity_set,
            params,
            **{"$deltatoken": params["$deltatoken"], "$skiptoken": token},
        )
    else:
        body["@odata.deltaLink"] = _link(
            ctx, entity.entity_set, params, **{"$deltatoken": delta.issue(upto)}
        )
    return body


def get_single(
    ctx: Context, entity_set: str, row_id: str, params: dict[str, str], prefer: Prefer
) -> tuple[Row, dict[str, Any], bool]:
    """A single-row GET: (row, body, has_expand)."""
    entity = entity_for(entity_set)
    policy = security.policy_for(ctx.store)
    if policy is not None:
        policy.check_read(ctx.org, ctx.user_id, entity)
    select = parse_select(entity, params.get("$select"))
    expands = parse_expand(entity, params.get("$expand"))
    row = ctx.store.table(ctx.org, entity_set).get(row_id)
    if row is None:
        raise errors.not_found(entity.logical_name, row_id)
    body = {"@odata.context": _context_url(ctx, entity_set, select, "/$entity")}
    body.update(render(entity, row, select, _annotate(ctx, prefer)))
    apply_expand(ctx, entity, row, body, expands, prefer.annotations)
    return row, body, bool(expands)


def representation(
    ctx: Context, entity_set: str, row: Row, params: dict[str, str], prefer: Prefer
) -> dict[str, Any]:
    """The body of a write answered with `Prefer: return=representation`."""
    entity = entity_for(entity_set)
    select = parse_select(entity, params.get("$select"))
    body = {"@odata.context": _context_url(ctx, entity_set, select, "/$entity")}
    body.update(render(entity, row, select, _annotate(ctx, prefer)))
    return body


def count(ctx: Context, entity_set: str) -> int:
    entity = entity_for(entity_set)
    policy = security.policy_for(ctx.store)
    visible = None
    if policy is not None:
        policy.check_read(ctx.org, ctx.user_id, entity)
        visible = policy.row_filter(ctx.org, ctx.user_id, entity)
    rows = ctx.store.table(ctx.org, entity_set).rows.values()
    return min(sum(1 for r in rows if visible is None or visible(r.values)), MAX_PAGE)


__all__ = ["DeltaClock", "ODataError", "Prefer", "get_collection", "get_single"]
