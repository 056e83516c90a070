"""The sandbox Microsoft Graph (v1.0) as a Flask app: the routes, auth, faults and delta paging.

Shapes follow the Graph v1.0 reference (sandbox/graph/README.md lists what is covered and the
known differences). Every request is logged as service "graph"; the shared fault profile is
applied before handling (429 and 503 with Retry-After, slow answers).
"""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from flask import Flask, Response, g, jsonify, request

from sandbox.faults import FaultProfile
from sandbox.graph import calendar
from sandbox.graph.schema import GraphError, check_properties, error_body
from sandbox.graph.store import GraphMailbox, decode_token, encode_token, new_id, now_iso
from sandbox.identity import USERS, TokenRegistry, User
from sandbox.requestlog import RequestLog

MAX_BATCH = 20
"""json-batching.md: "JSON batch requests are currently limited to 20 individual requests"."""
DEFAULT_PAGE = 100
OCCURRENCE_MARK = calendar.OCCURRENCE_MARK
EXT_FILTER = re.compile(
    r"singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+'([^']*)'\s+and\s+"
    r"\1/value\s+eq\s+'((?:[^']|'')*)'\s*\)",
    re.IGNORECASE,
)
EXT_EXPAND = re.compile(
    r"singleValueExtendedProperties\(\s*\$filter\s*=\s*(id\s+eq\s+'[^']*'(?:\s+or\s+id\s+eq\s+'[^']*')*)\s*\)",
    re.IGNORECASE,
)

SCOPES = {
    "mail": ({"mail.readwrite"}, {"mail.read", "mail.readwrite"}),
    "send": ({"mail.send"}, {"mail.send"}),
    "contacts": ({"contacts.readwrite"}, {"contacts.read", "contacts.readwrite"}),
    "calendars": ({"calendars.readwrite"}, {"calendars.read", "calendars.readwrite"}),
    "tasks": ({"tasks.readwrite"}, {"tasks.read", "tasks.readwrite"}),
    "settings": (
        {"mailboxsettings.readwrite"},
        {"mailboxsettings.read", "mailboxsettings.readwrite"},
    ),
}
"""Area → (scopes that allow a write, scopes that allow a read)."""


class GraphState:
    """What the app shares with the server object and the tests."""

    def __init__(self, tokens: TokenRegistry, log: RequestLog, faults: FaultProfile) -> None:
        self.tokens, self.log, self.faults = tokens, log, faults
        self.mailboxes = {u.upn: GraphMailbox(u.upn, u.display_name) for u in USERS}
        self.base_url = ""

    def mailbox(self, upn: str) -> GraphMailbox:
        return self.mailboxes[upn.lower()]


def _fail(status: int, code: str, message: str) -> Response:
    response = jsonify(error_body(code, message))
    response.status_code = status
    return response


def create_graph_app(state: GraphState) -> Flask:  # noqa: C901 - one closure per route
    app = Flask("sandbox.graph")

    # --- auth, faults, logging -------------------------------------------------------------

    def user() -> User:
        found: User = g.user
        return found

    def mbx() -> GraphMailbox:
        return state.mailbox(user().upn)

    def need(area: str, write: bool) -> None:
        scopes = state.tokens.scopes_for(g.token)
        if scopes is None:
            return
        allowed = SCOPES[area][0 if write else 1]
        if not scopes & allowed:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")  # fmt: skip

    @app.before_request
    def _before() -> Response | None:
        g.started = time.time()
        g.user = None
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _fail(401, "InvalidAuthenticationToken", "Access token is empty.")
        g.token = token.strip()
        g.user = state.tokens.user_for(g.token)
        if g.user is None:
            return _fail(401, "InvalidAuthenticationToken", "Access token validation failure.")
        fault = state.faults.pick("graph " + request.path)
        if fault is not None:
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind in ("429", "busy"):
                response = _fail(
                    429,
                    "TooManyRequests",
                    "The request has been throttled. Please retry after the number of seconds "
                    "in the Retry-After header.",
                )
                response.headers["Retry-After"] = str(max(1, round(fault.delay)))
                return response
            else:  # 503; a dropped connection is answered as a 503 without Retry-After
                response = _fail(503, "ServiceUnavailable", "The service is unavailable.")
                if fault.kind == "503":
                    response.headers["Retry-After"] = str(max(1, round(fault.delay)))
                return response
        return None

    @app.after_request
    def _after(response: Response) -> Response:
        upn = g.user.upn if getattr(g, "user", None) else None
        response.headers["request-id"] = str(uuid.uuid4())
        state.log.record(
            "graph",
            upn,
            request.method,
            request.path,
            response.status_code,
            request.query_string.decode()[:200],
            getattr(g, "started", None),
        )
        return response

    @app.errorhandler(GraphError)
    def _graph_error(error: GraphError) -> Response:
        return _fail(error.status, error.code, error.message)

    @app.errorhandler(404)
    def _not_found(_error: Any) -> Response:
        return _fail(
            400,
            "BadRequest",
            f"Resource not found for the segment '{request.path.split('/')[-1]}'.",
        )

    @app.errorhandler(405)
    def _method(_error: Any) -> Response:
        return _fail(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")  # fmt: skip

    # --- shaping ---------------------------------------------------------------------------

    def etag(item: dict[str, Any]) -> str:
        return f'W/"{item.get("changeKey", "")}"'

    def ext_wanted() -> set[str] | None:
        """The extended property ids `$expand` asks for (lower case); {"*"} for all."""
        expand = request.args.get("$expand", "")
        match = EXT_EXPAND.search(expand)
        if match:
            return {m.lower() for m in re.findall(r"id\s+eq\s+'([^']*)'", match.group(1))}
        return {"*"} if "singlevalueextendedproperties" in expand.lower() else None

    def out_zone() -> ZoneInfo | None:
        prefer = request.headers.get("Prefer", "")
        match = re.search(r'outlook\.timezone\s*=\s*"([^"]+)"', prefer)
        if not match:
            return None
        try:
            return calendar.zone(match.group(1))  # IANA or Windows names
        except GraphError:
            return None

    def shape(item: dict[str, Any], odata_type: str) -> dict[str, Any]:
        out = {k: v for k, v in item.items() if not k.startswith("_") and k != "extensions"}
        out["@odata.etag"] = etag(item)
        out["@odata.type"] = f"#microsoft.graph.{odata_type}"
        if odata_type == "todoTask":
            out.pop("changeKey", None)
        props = out.pop("singleValueExtendedProperties", None) or []
        wanted = ext_wanted()
        if wanted is not None:
            out["singleValueExtendedProperties"] = [
                p for p in props if "*" in wanted or p["id"].lower() in wanted
            ]
        if "extensions" in request.args.get("$expand", "") and "extensions" in item:
            out["extensions"] = item["extensions"]
        zone = out_zone()
        if odata_type == "event":
            for key in ("start", "end"):
                if key in out and zone is not None:
                    moment = datetime.fromisoformat(out[key]["dateTime"]).replace(tzinfo=UTC)
                    local = moment.astimezone(zone).replace(tzinfo=None)
                    out[key] = {"dateTime": local.isoformat() + ".0000000", "timeZone": zone.key}
        select = request.args.get("$select")
        if select:
            keep = {s.strip() for s in select.split(",")} | {"id", "@odata.etag", "@odata.type"}
            keep |= {"singleValueExtendedProperties", "extensions"}
            out = {k: v for k, v in out.items() if k in keep}
        return out

    def page_size() -> int:
        match = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", request.headers.get("Prefer", ""))
        return max(1, int(match.group(1))) if match else DEFAULT_PAGE

    def body_json() -> Any:
        data = request.get_json(silent=True)
        if data is None and request.data:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
        return data if data is not None else {}

    # --- generic collection handling --------------------------------------------------------

    def listing(scope: str, odata_type: str) -> Response:
        items = list(mbx().collection(scope).items.values())
        flt = request.args.get("$filter")
        if flt:
            items = [i for i in items if matches(i, flt)]
        order = request.args.get("$orderby", "").split()
        if order:
            items.sort(  # ties (the same second) in the order the items were made
                key=lambda i: (str(i.get(order[0]) or ""), i.get("_made", 0)),
                reverse=order[-1:] == ["desc"],
            )
        top = int(request.args.get("$top", DEFAULT_PAGE))
        skip = int(request.args.get("$skip", 0))
        chosen = items[skip : skip + top]
        body: dict[str, Any] = {"value": [shape(i, odata_type) for i in chosen]}
        if skip + top < len(items):  # the other query options go on (gcal: $expand, $filter)
            rest = "".join(f"&{quote(k)}={quote(v)}" for k, v in request.args.items() if k not in ("$top", "$skip"))  # fmt: skip
            body["@odata.nextLink"] = (
                f"{state.base_url}{request.path}?$top={top}&$skip={skip + top}{rest}"
            )
        return jsonify(body)

    def matches(item: dict[str, Any], flt: str) -> bool:
        found = EXT_FILTER.findall(flt)
        if not found:
            raise GraphError(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")  # fmt: skip
        props = {
            prop_key(p["id"]): str(p["value"]).lower()
            for p in item.get("singleValueExtendedProperties") or []
        }
        # singlevaluelegacyextendedproperty-get.md: the Name in the id is case-sensitive, the
        # value is compared case-insensitively.
        return any(
            props.get(prop_key(pid)) == value.replace("''", "'").lower() for _, pid, value in found
        )

    def merge_ext(item: dict[str, Any], props: Any) -> None:
        if not isinstance(props, list):
            raise GraphError(400, "RequestBodyRead", "singleValueExtendedProperties must be a collection.")  # fmt: skip
        current = {p["id"].lower(): p for p in item.get("singleValueExtendedProperties") or []}
        for prop in props:
            if not isinstance(prop, dict) or set(prop) != {"id", "value"}:
                raise GraphError(400, "RequestBodyRead", "An extended property needs id and value.")  # fmt: skip
            if not re.match(
                r"^(String|SystemTime) (\{[0-9a-fA-F-]{36}\} Name \S+|0x[0-9a-fA-F]{4})$",
                prop["id"],
            ):
                raise GraphError(400, "ErrorInvalidProperty", f"The property id '{prop['id']}' is not valid.")  # fmt: skip
            current[prop["id"].lower()] = {"id": prop["id"], "value": str(prop["value"])}
        item["singleValueExtendedProperties"] = list(current.values())

    def apply(item: dict[str, Any], body: dict[str, Any]) -> None:
        for name, value in body.items():
            if name.startswith("@odata."):
                continue
            if name == "singleValueExtendedProperties":
                merge_ext(item, value)
            elif name == "extensions":
                item["extensions"] = [
                    {**e, "id": e.get("extensionName", "")} for e in value if isinstance(e, dict)
                ]
            elif value is None:
                item.pop(name, None)
            else:
                item[name] = value

    def create_in(scope: str, odata_type: str, body: Any, extra: dict[str, Any]) -> Response:
        check_properties(odata_type, body, creating=True)
        item: dict[str, Any] = {"id": new_id(odata_type), **extra}
        apply(item, body)
        fix(odata_type, item)
        with mbx().lock:
            mbx().put(scope, item)
        response = jsonify(shape(item, odata_type))
        response.status_code = 201
        return response

    def update_in(scope_prefix: str, odata_type: str, item_id: str) -> Response:
        box = mbx()
        with box.lock:
            found = box.find(item_id, scope_prefix)
            if found is None:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
            scope, item = found
            wanted = request.headers.get("If-Match")
            if wanted and wanted != "*" and wanted != etag(item):
                raise GraphError(412, "ErrorIrresolvableConflict", "The change key passed in the request does not match the current change key for the item.")  # fmt: skip
            body = body_json()
            check_properties(odata_type, body, creating=False)
            updated = dict(item)
            apply(updated, body)
            fix(odata_type, updated)
            box.put(scope, updated)
        return jsonify(shape(updated, odata_type))

    def delete_in(scope_prefix: str, item_id: str) -> Response:
        box = mbx()
        with box.lock:
            found = box.find(item_id, scope_prefix)
            if found is None:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
            wanted = request.headers.get("If-Match")
            if wanted and wanted != "*" and wanted != etag(found[1]):
                raise GraphError(412, "ErrorIrresolvableConflict", "The change key passed in the request does not match the current change key for the item.")  # fmt: skip
            box.remove(found[0], item_id)
        return Response(status=204)

    def get_in(scope_prefix: str, odata_type: str, item_id: str) -> Response:
        with mbx().lock:
            found = mbx().find(item_id, scope_prefix)
        if found is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
        return jsonify(shape(found[1], odata_type))

    def fix(odata_type: str, item: dict[str, Any]) -> None:
        """Derived properties Graph computes itself."""
        if odata_type == "contact":
            names = [item.get(k) for k in ("givenName", "middleName", "surname")]
            item.setdefault("displayName", " ".join(n for n in names if n))
        elif odata_type == "todoTask":
            item.setdefault("status", "notStarted")
            item.setdefault("importance", "normal")
            if item["status"] == "completed" and "completedDateTime" not in item:
                item["completedDateTime"] = {"dateTime": now_iso()[:10] + "T00:00:00.0000000", "timeZone": "UTC"}  # fmt: skip
            if item["status"] != "completed":
                item.pop("completedDateTime", None)
        elif odata_type == "event":
            given = item.get("start") or {}
            if given != item.get("_stored_start"):  # a start just sent: its zone is kept
                item["originalStartTimeZone"] = given.get("timeZone") or "UTC"
                item["originalEndTimeZone"] = (item.get("end") or {}).get("timeZone") or "UTC"
            for key in ("start", "end"):
                if key in item:
                    item[key] = to_utc(item[key])
            item["_stored_start"] = item.get("start")
            calendar.check_recurrence(item.get("recurrence"))
            item.setdefault("type", "seriesMaster" if item.get("recurrence") else "singleInstance")
            item.setdefault("showAs", "busy")  # what Outlook gives a new event
            item.setdefault("isReminderOn", True)
            item.setdefault("reminderMinutesBeforeStart", 15)
            item.setdefault("isCancelled", False)
            item.setdefault("isOrganizer", True)
            item.setdefault("iCalUId", secrets.token_hex(16))
            item.setdefault("organizer", {"emailAddress": {"name": user().display_name, "address": user().upn}})  # fmt: skip

    # --- delta ------------------------------------------------------------------------------

    def delta(scope: str, odata_type: str, keep: Callable[[dict[str, Any]], bool] | None = None) -> Response:  # fmt: skip
        box = mbx()
        params: dict[str, str] | None = {"since": "0", "upto": "", "after": "0"}
        token = request.args.get("$deltatoken") or request.args.get("$skiptoken")
        if token:
            params = decode_token(token)
            if params is None or params.get("epoch") != box.epoch or params.get("scope") != scope:
                raise GraphError(410, "SyncStateNotFound", "The sync state generation is not found. Please restart sync.")  # fmt: skip
        assert params is not None
        with box.lock:
            since = int(params["since"])
            upto = int(params.get("upto") or box.seq)
            after = int(params.get("after") or since)
            coll = box.collection(scope)
            entries: list[tuple[int, dict[str, Any] | str]] = [
                (i["_seq"], i) for i in coll.items.values() if after < i["_seq"] <= upto
            ]
            if since > 0:
                entries += [(s, i) for i, s in coll.tombstones.items() if after < s <= upto]
            entries.sort(key=lambda e: e[0])
            chosen = entries[: page_size()]
        value: list[dict[str, Any]] = []
        for _, entry in chosen:
            if isinstance(entry, str):
                value.append({"id": entry, "@removed": {"reason": "deleted"}})
            elif keep is None or keep(entry):
                value.append(shape(entry, odata_type))
        body: dict[str, Any] = {"value": value}
        base = f"{state.base_url}{request.path}"
        if len(entries) > len(chosen):
            nxt = encode_token(scope=scope, since=since, upto=upto, after=chosen[-1][0], epoch=box.epoch)  # fmt: skip
            body["@odata.nextLink"] = f"{base}?$skiptoken={nxt}"
        else:
            done = encode_token(scope=scope, since=upto, epoch=box.epoch)
            body["@odata.deltaLink"] = f"{base}?$deltatoken={done}"
        return jsonify(body)

    # --- me and settings --------------------------------------------------------------------

    @app.get("/v1.0/me")
    def me() -> Response:
        u = user()
        return jsonify({
            "@odata.context": f"{state.base_url}/v1.0/$metadata#users/$entity",
            "id": u.object_id, "displayName": u.display_name, "givenName": u.first_name,
            "surname": u.last_name, "mail": u.upn, "userPrincipalName": u.upn,
            "businessPhones": [], "jobTitle": None, "mobilePhone": None,
            "officeLocation": None, "preferredLanguage": "en-US",
        })  # fmt: skip

    @app.get("/v1.0/me/mailboxSettings")
    def mailbox_settings() -> Response:
        need("settings", write=False)
        return jsonify({
            "archiveFolder": mbx().well_known["deleteditems"], "timeZone": "UTC",
            "language": {"locale": "en-US", "displayName": "English (United States)"},
            "dateFormat": "M/d/yyyy", "timeFormat": "h:mm tt", "userPurpose": "user",
            "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
            "automaticRepliesSetting": {"status": "disabled", "externalAudience": "none"},
            "workingHours": {"daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                             "startTime": "08:00:00.0000000", "endTime": "17:00:00.0000000",
                             "timeZone": {"name": "UTC"}},
        })  # fmt: skip

    # --- mail folders and messages ------------------------------------------------------------

    def folder_or_404(ref: str) -> str:
        folder_id = mbx().folder_id(ref)
        if folder_id is None:
            raise GraphError(404, "ErrorInvalidIdMalformed", "Id is malformed.")
        return folder_id

    def folder_json(folder_id: str) -> dict[str, Any]:
        folder = dict(mbx().folders[folder_id])
        props = folder.pop("singleValueExtendedProperties", None) or []
        wanted = ext_wanted()
        if wanted is not None:
            folder["singleValueExtendedProperties"] = [
                p for p in props if "*" in wanted or p["id"].lower() in wanted
            ]
        items = mbx().collection(f"folder:{folder_id}").items.values()
        folder["totalItemCount"] = len(items)
        folder["unreadItemCount"] = sum(1 for i in items if not i.get("isRead"))
        return folder

    @app.get("/v1.0/me/mailFolders")
    def folders() -> Response:
        need("mail", write=False)
        hidden = request.args.get("includeHiddenFolders") == "true"
        value = [
            folder_json(f["id"])
            for f in mbx().folders.values()
            if f["parentFolderId"] == "msgfolderroot" and (hidden or not f["isHidden"])
        ]
        return jsonify({"value": value})

    @app.get("/v1.0/me/mailFolders/<ref>")
    def folder(ref: str) -> Response:
        need("mail", write=False)
        return jsonify(folder_json(folder_or_404(ref)))

    @app.get("/v1.0/me/mailFolders/<ref>/childFolders")
    def child_folders(ref: str) -> Response:
        need("mail", write=False)
        parent = folder_or_404(ref)
        hidden = request.args.get("includeHiddenFolders") == "true"
        value = [
            folder_json(f["id"])
            for f in mbx().folders.values()
            if f["parentFolderId"] == parent and (hidden or not f["isHidden"])
        ]
        return jsonify({"value": value})

    @app.patch("/v1.0/me/mailFolders/<ref>")
    def update_folder(ref: str) -> Response:
        """mailfolder-update.md: displayName; and extended properties (extended-properties)."""
        need("mail", write=True)
        body = body_json()
        for name in body:
            if name not in ("displayName", "singleValueExtendedProperties"):
                raise GraphError(400, "RequestBodyRead", f"The property '{name}' cannot be updated on type 'microsoft.graph.mailFolder'.")  # fmt: skip
        with mbx().lock:
            folder = mbx().folders[folder_or_404(ref)]
            if "displayName" in body:
                folder["displayName"] = body["displayName"]
            if "singleValueExtendedProperties" in body:
                merge_ext(folder, body["singleValueExtendedProperties"])
        return jsonify(folder_json(folder["id"]))

    @app.post("/v1.0/me/mailFolders")
    @app.post("/v1.0/me/mailFolders/<ref>/childFolders")
    def create_folder(ref: str | None = None) -> Response:
        need("mail", write=True)
        body = body_json()
        name = body.get("displayName")
        if not name:
            raise GraphError(400, "ErrorInvalidRequest", "The displayName is required.")
        parent = folder_or_404(ref) if ref else None
        with mbx().lock:
            if any(
                f["displayName"].lower() == name.lower()
                and f["parentFolderId"] == (parent or "msgfolderroot")
                for f in mbx().folders.values()
            ):
                raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")  # fmt: skip
            created = mbx().add_folder(name, parent, hidden=bool(body.get("isHidden")))
        response = jsonify(folder_json(created["id"]))
        response.status_code = 201
        return response

    def message_extra(folder_id: str, draft: bool) -> dict[str, Any]:
        moment = now_iso()
        return {
            "parentFolderId": folder_id, "isDraft": draft, "isRead": draft,
            "conversationId": new_id("conv"), "hasAttachments": False,
            "conversationIndex": base64.b64encode(secrets.token_bytes(22)).decode(),
            "receivedDateTime": moment, "sentDateTime": None if draft else moment,
            "internetMessageId": f"<{uuid.uuid4().hex}@{user().upn.split('@')[1]}>",
            "from": {"emailAddress": {"name": user().display_name, "address": user().upn}},
        }  # fmt: skip

    @app.get("/v1.0/me/mailFolders/<ref>/messages")
    def folder_messages(ref: str) -> Response:
        need("mail", write=False)
        return listing(f"folder:{folder_or_404(ref)}", "message")

    @app.get("/v1.0/me/messages")
    def all_messages() -> Response:
        need("mail", write=False)
        items = [
            i
            for scope, c in mbx().collections.items()
            if scope.startswith("folder:")
            for i in c.items.values()
        ]
        flt = request.args.get("$filter")
        if flt:
            items = [i for i in items if matches(i, flt)]
        return jsonify({"value": [shape(i, "message") for i in items]})

    @app.get("/v1.0/me/mailFolders/<ref>/messages/delta")
    def messages_delta(ref: str) -> Response:
        need("mail", write=False)
        return delta(f"folder:{folder_or_404(ref)}", "message")

    @app.post("/v1.0/me/messages")
    @app.post("/v1.0/me/mailFolders/<ref>/messages")
    def create_message(ref: str = "drafts") -> Response:
        need("mail", write=True)
        folder_id = folder_or_404(ref)
        draft = folder_id == mbx().well_known["drafts"]
        body = body_json()
        extra = message_extra(folder_id, draft)
        for name in ("internetMessageId",):
            if name in body:
                extra.pop(name)
        return create_in(f"folder:{folder_id}", "message", body, extra)

    @app.get("/v1.0/me/messages/<item_id>")
    @app.get("/v1.0/me/mailFolders/<ref>/messages/<item_id>")
    def get_message(item_id: str, ref: str = "") -> Response:
        need("mail", write=False)
        return get_in("folder:", "message", item_id)

    @app.patch("/v1.0/me/messages/<item_id>")
    def update_message(item_id: str) -> Response:
        need("mail", write=True)
        return update_in("folder:", "message", item_id)

    @app.delete("/v1.0/me/messages/<item_id>")
    def delete_message(item_id: str) -> Response:
        need("mail", write=True)
        return delete_in("folder:", item_id)

    @app.post("/v1.0/me/messages/<item_id>/move")
    def move_message(item_id: str) -> Response:
        need("mail", write=True)
        target = folder_or_404(str(body_json().get("destinationId", "")))
        box = mbx()
        with box.lock:
            found = box.find(item_id, "folder:")
            if found is None:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
            box.remove(found[0], item_id)
            moved = {**found[1], "id": new_id("message"), "parentFolderId": target}
            box.put(f"folder:{target}", moved)
        response = jsonify(shape(moved, "message"))
        response.status_code = 201
        return response

    @app.post("/v1.0/me/messages/<item_id>/attachments")
    def add_attachment(item_id: str) -> Response:
        need("mail", write=True)
        body = body_json()
        if body.get("@odata.type") != "#microsoft.graph.fileAttachment":
            raise GraphError(400, "ErrorInvalidRequest", "Only fileAttachment is supported by the sandbox.")  # fmt: skip
        if not body.get("name") or "contentBytes" not in body:
            raise GraphError(400, "ErrorInvalidRequest", "name and contentBytes are required.")
        try:
            size = len(base64.b64decode(str(body["contentBytes"]), validate=True))
        except ValueError:
            raise GraphError(400, "ErrorInvalidRequest", "contentBytes is not valid base64.") from None  # fmt: skip
        box = mbx()
        with box.lock:
            found = box.find(item_id, "folder:")
            if found is None:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
            attachment = {
                "@odata.type": "#microsoft.graph.fileAttachment", "id": new_id("att"),
                "name": body["name"], "contentType": body.get("contentType", "application/octet-stream"),  # fmt: skip
                "contentBytes": body["contentBytes"], "isInline": bool(body.get("isInline")),
                "size": size, "lastModifiedDateTime": now_iso(),
            }  # fmt: skip
            box.attachments.setdefault(item_id, []).append(attachment)
            found[1]["hasAttachments"] = True
            box.touch(found[1])
        response = jsonify(attachment)
        response.status_code = 201
        return response

    @app.get("/v1.0/me/messages/<item_id>/attachments")
    def list_attachments(item_id: str) -> Response:
        need("mail", write=False)
        if mbx().find(item_id, "folder:") is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
        return jsonify({"value": mbx().attachments.get(item_id, [])})

    def deliver(message: dict[str, Any], attached: list[dict[str, Any]]) -> None:
        """Put a copy in the Inbox of each recipient who is a sandbox user."""
        for field_name in ("toRecipients", "ccRecipients", "bccRecipients"):
            for recipient in message.get(field_name) or []:
                address = str(recipient.get("emailAddress", {}).get("address", "")).lower()
                if address in state.mailboxes:
                    box = state.mailboxes[address]
                    with box.lock:
                        inbox = box.well_known["inbox"]
                        fresh = {k: v for k, v in message.items() if not k.startswith("_")}
                        copy = {**fresh, "id": new_id("message"), "parentFolderId": inbox,
                                "isDraft": False, "isRead": False, "receivedDateTime": now_iso()}  # fmt: skip
                        copy.pop("singleValueExtendedProperties", None)
                        box.put(f"folder:{inbox}", copy)
                        if attached:
                            box.attachments[copy["id"]] = [dict(a) for a in attached]

    def send(message: dict[str, Any], save: bool, attached: list[dict[str, Any]]) -> None:
        box = mbx()
        if not any(message.get(f) for f in ("toRecipients", "ccRecipients", "bccRecipients")):
            raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient is not valid., Recipient is missing.")  # fmt: skip
        message.update(isDraft=False, sentDateTime=now_iso())
        if save:
            with box.lock:
                sent = box.well_known["sentitems"]
                fresh = {k: v for k, v in message.items() if not k.startswith("_")}
                copy = {**fresh, "id": new_id("message"), "parentFolderId": sent}
                box.put(f"folder:{sent}", copy)
                if attached:
                    box.attachments[copy["id"]] = [dict(a) for a in attached]
        deliver(message, attached)

    @app.post("/v1.0/me/sendMail")
    def send_mail() -> Response:
        need("send", write=True)
        body = body_json()
        message = body.get("message")
        if not isinstance(message, dict):
            raise GraphError(400, "ErrorInvalidRequest", "The message is required.")
        check_properties("message", message, creating=True)
        item = {**message_extra(mbx().well_known["sentitems"], False)}
        apply(item, message)
        send(item, body.get("saveToSentItems", True) is not False, [])
        return Response(status=202)

    @app.post("/v1.0/me/messages/<item_id>/send")
    def send_draft(item_id: str) -> Response:
        need("send", write=True)
        box = mbx()
        with box.lock:
            found = box.find(item_id, "folder:")
            if found is None or not found[1].get("isDraft"):
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
            attached = box.attachments.get(item_id, [])
            box.remove(found[0], item_id)
        send(dict(found[1]), True, attached)
        return Response(status=202)

    # --- contacts -------------------------------------------------------------------------------

    @app.get("/v1.0/me/contactFolders")
    def contact_folders() -> Response:
        need("contacts", write=False)
        return jsonify({"value": [{"id": "contacts", "displayName": "Contacts", "parentFolderId": "root"}]})  # fmt: skip

    @app.get("/v1.0/me/contacts")
    def contacts() -> Response:
        need("contacts", write=False)
        return listing("contacts", "contact")

    @app.get("/v1.0/me/contacts/delta")
    @app.get("/v1.0/me/contactFolders/<ref>/contacts/delta")
    def contacts_delta(ref: str = "contacts") -> Response:
        need("contacts", write=False)
        return delta("contacts", "contact")

    @app.post("/v1.0/me/contacts")
    def create_contact() -> Response:
        need("contacts", write=True)
        return create_in("contacts", "contact", body_json(), {"parentFolderId": "contacts"})

    @app.get("/v1.0/me/contacts/<item_id>")
    def get_contact(item_id: str) -> Response:
        need("contacts", write=False)
        return get_in("contacts", "contact", item_id)

    @app.patch("/v1.0/me/contacts/<item_id>")
    def update_contact(item_id: str) -> Response:
        need("contacts", write=True)
        return update_in("contacts", "contact", item_id)

    @app.delete("/v1.0/me/contacts/<item_id>")
    def delete_contact(item_id: str) -> Response:
        need("contacts", write=True)
        return delete_in("contacts", item_id)

    # --- events and the calendar view (gcal: sandbox/graph/calendar.py) ----------------------

    def meeting_message(kind: str, item: dict[str, Any], recipients: list[str] | None = None) -> None:  # fmt: skip
        """A meeting request, update or cancellation the organizer's change sends (kept in
        `meeting_messages` for the tests): Graph sends them itself (event-delete.md: deleting
        a meeting on the organizer's calendar sends a cancellation to its attendees)."""
        attendees = [a.get("emailAddress", {}).get("address") for a in item.get("attendees") or []]  # fmt: skip
        sent_to = [a for a in (recipients if recipients is not None else attendees) if a]
        organizer = (item.get("organizer") or {}).get("emailAddress", {}).get("address", "")
        if sent_to and str(organizer).lower() == user().upn.lower():
            mbx().meeting_messages.append({"kind": kind, "event": item["id"], "to": sent_to, "subject": item.get("subject")})  # fmt: skip

    def master_of(item_id: str) -> tuple[dict[str, Any], str]:
        parts = calendar.split_id(item_id)
        found = mbx().find(parts[0], "events") if parts else None
        if parts is None or found is None or found[1].get("type") != "seriesMaster":
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
        return found[1], parts[1]

    def occurrence(item_id: str) -> dict[str, Any]:
        master, stamp = master_of(item_id)
        found = calendar.find_instance(master, stamp)
        if found is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
        return found

    def instance_etag(item: dict[str, Any]) -> str:
        return f'W/"{item.get("changeKey", "")}"'

    @app.get("/v1.0/me/events")
    def events() -> Response:
        need("calendars", write=False)
        return listing("events", "event")

    @app.post("/v1.0/me/events")
    def create_event() -> Response:
        need("calendars", write=True)
        body = body_json()
        if isinstance(body, dict) and not (body.get("start") and body.get("end")):
            raise GraphError(400, "ErrorInvalidRequest", "Your request can't be completed. The start and end are required.")  # fmt: skip
        response = create_in("events", "event", body, {})
        made = response.get_json()
        with mbx().lock:
            stored = mbx().collection("events").items.get(made["id"])
            if stored is not None:
                if stored.get("type") == "seriesMaster":
                    mbx().series_ids.add(stored["id"])
                meeting_message("request", stored)
        return response

    @app.get("/v1.0/me/events/<item_id>")
    def get_event(item_id: str) -> Response:
        need("calendars", write=False)
        if calendar.split_id(item_id):
            with mbx().lock:
                found = occurrence(item_id)
            return jsonify(shape(found, "event"))
        return get_in("events", "event", item_id)

    @app.get("/v1.0/me/events/<item_id>/instances")
    def event_instances(item_id: str) -> Response:
        """event-list-instances.md: the occurrences and exceptions of a series in the window
        (startDateTime and endDateTime are required)."""
        need("calendars", write=False)
        start, end = window()
        with mbx().lock:
            found = mbx().find(item_id, "events")
            if found is None:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
            master = found[1]
            chosen = []
            if master.get("type") == "seriesMaster":
                chosen = [i for i in calendar.instances(master, end) if calendar.overlaps(i, start, end)]  # fmt: skip
        return jsonify({"value": [shape(i, "event") for i in chosen]})

    @app.patch("/v1.0/me/events/<item_id>")
    def update_event(item_id: str) -> Response:
        need("calendars", write=True)
        if calendar.split_id(item_id):  # an occurrence: it becomes an exception of its series
            box = mbx()
            with box.lock:
                master, stamp = master_of(item_id)
                wanted = request.headers.get("If-Match")
                current = calendar.find_instance(master, stamp)
                if current is None:
                    raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
                if wanted and wanted != "*" and wanted != instance_etag(current):
                    raise GraphError(412, "ErrorIrresolvableConflict", "The change key passed in the request does not match the current change key for the item.")  # fmt: skip
                updated = calendar.make_exception(master, stamp, body_json())
                box.put("events", updated)
                found = calendar.find_instance(updated, stamp)
                assert found is not None
                meeting_message("update", found)
            return jsonify(shape(found, "event"))
        body = body_json()
        if isinstance(body, dict) and "recurrence" in body:
            calendar.check_recurrence(body["recurrence"])
        response = update_in("events", "event", item_id)
        with mbx().lock:
            stored = mbx().collection("events").items.get(item_id)
            if stored is not None:
                if isinstance(body, dict) and "recurrence" in body:
                    stored.pop("_exceptions", None)  # a new pattern drops the exceptions
                    stored.pop("_cancelled", None)
                    stored["type"] = "seriesMaster" if stored.get("recurrence") else "singleInstance"  # fmt: skip
                    if stored["type"] == "seriesMaster":
                        mbx().series_ids.add(item_id)
                meeting_message("update", stored)
        return response

    @app.delete("/v1.0/me/events/<item_id>")
    def delete_event(item_id: str) -> Response:
        need("calendars", write=True)
        box = mbx()
        if calendar.split_id(item_id):  # an occurrence: cancelled in its series
            with box.lock:
                master, stamp = master_of(item_id)
                current = occurrence(item_id)
                wanted = request.headers.get("If-Match")
                if wanted and wanted != "*" and wanted != instance_etag(current):
                    raise GraphError(412, "ErrorIrresolvableConflict", "The change key passed in the request does not match the current change key for the item.")  # fmt: skip
                cancelled = sorted({*(master.get("_cancelled") or []), stamp})
                exceptions = {k: v for k, v in (master.get("_exceptions") or {}).items() if k != stamp}  # fmt: skip
                box.put("events", {**master, "_cancelled": cancelled, "_exceptions": exceptions})
                meeting_message("cancellation", current)
            return Response(status=204)
        with box.lock:
            found = box.find(item_id, "events")
            gone = dict(found[1]) if found is not None else None
            answer = delete_in("events", item_id)
            if gone is not None:
                seq = box.collection("events").tombstones.get(item_id, box.seq)
                if gone.get("type") == "seriesMaster":  # its instances leave the view
                    for inst in calendar.instances(gone):
                        box.collection("events").tombstones[inst["id"]] = seq
                meeting_message("cancellation", gone)
        return answer

    def window() -> tuple[datetime, datetime]:
        try:
            start = parse_moment(request.args["startDateTime"])
            end = parse_moment(request.args["endDateTime"])
        except (KeyError, ValueError):
            raise GraphError(400, "ErrorInvalidParameter", "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.") from None  # fmt: skip
        return start, end

    @app.get("/v1.0/me/calendarView")
    def calendar_view() -> Response:
        need("calendars", write=False)
        start, end = window()
        with mbx().lock:
            chosen = calendar.view(list(mbx().collection("events").items.values()), start, end)
        return jsonify({"value": [shape(i, "event") for i in chosen]})

    @app.get("/v1.0/me/calendarView/delta")
    def calendar_delta() -> Response:
        """event-delta.md: the instances of the view (single events, occurrences, exceptions;
        never a series master) that changed since the token; deleted ones, cancelled
        occurrences and changed events outside the window under `@removed`. The window is
        part of the token; `$select`, `$expand`, `$filter`, `$orderby` are refused."""
        need("calendars", write=False)
        box = mbx()
        for name in ("$select", "$expand", "$filter", "$orderby", "$search"):
            if name in request.args:
                raise GraphError(400, "ErrorInvalidUrlQuery", f"The query parameter '{name}' is not supported with delta on a calendar view.")  # fmt: skip
        token = request.args.get("$deltatoken") or request.args.get("$skiptoken")
        if token:
            params = decode_token(token)
            if params is None or params.get("epoch") != box.epoch or params.get("scope") != "calendarView":  # fmt: skip
                raise GraphError(410, "SyncStateNotFound", "The sync state generation is not found. Please restart sync.")  # fmt: skip
            start, end = parse_moment(params["start"]), parse_moment(params["end"])
        else:
            start, end = window()
            params = {"since": "0", "upto": "", "offset": "0"}
        with box.lock:
            since = int(params["since"])
            upto = int(params.get("upto") or box.seq)
            offset = int(params.get("offset") or 0)
            coll = box.collection("events")
            entries: list[tuple[int, str, dict[str, Any] | str]] = []
            for item in coll.items.values():
                if not since < item["_seq"] <= upto:
                    continue
                if item.get("type") == "seriesMaster":
                    shown = [i for i in calendar.instances(item, end) if calendar.overlaps(i, start, end)]  # fmt: skip
                    entries += [(item["_seq"], i["id"], i) for i in shown]
                    if since > 0:
                        entries += [(item["_seq"], f"{item['id']}{calendar.OCCURRENCE_MARK}{s}", f"{item['id']}{calendar.OCCURRENCE_MARK}{s}") for s in item.get("_cancelled") or []]  # fmt: skip
                elif calendar.overlaps(item, start, end):
                    entries.append((item["_seq"], item["id"], item))
                elif since > 0:
                    entries.append((item["_seq"], item["id"], item["id"]))
            if since > 0:
                entries += [(s, i, i) for i, s in coll.tombstones.items() if since < s <= upto and i not in box.series_ids]  # fmt: skip
            entries.sort(key=lambda e: (e[0], e[1]))
            chosen = entries[offset : offset + page_size()]
            value: list[dict[str, Any]] = []
            for _, _, entry in chosen:
                if isinstance(entry, str):
                    value.append({"id": entry, "@removed": {"reason": "deleted"}})
                else:
                    value.append(shape(entry, "event"))
        body: dict[str, Any] = {"value": value}
        base = f"{state.base_url}{request.path}"
        window_args = {"start": start.isoformat(), "end": end.isoformat(), "epoch": box.epoch}
        if offset + len(chosen) < len(entries):
            nxt = encode_token(scope="calendarView", since=since, upto=upto, offset=offset + len(chosen), **window_args)  # fmt: skip
            body["@odata.nextLink"] = f"{base}?$skiptoken={nxt}"
        else:
            done = encode_token(scope="calendarView", since=upto, **window_args)
            body["@odata.deltaLink"] = f"{base}?$deltatoken={done}"
        return jsonify(body)

    # --- To Do ----------------------------------------------------------------------------------

    def todo_scope(list_id: str) -> str:
        if list_id not in mbx().todo_lists:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
        return f"todo:{list_id}"

    @app.get("/v1.0/me/todo/lists")
    def todo_lists() -> Response:
        need("tasks", write=False)
        return jsonify({"value": list(mbx().todo_lists.values())})

    @app.post("/v1.0/me/todo/lists")
    def create_todo_list() -> Response:
        need("tasks", write=True)
        name = body_json().get("displayName")
        if not name:
            raise GraphError(400, "invalidRequest", "displayName is required.")
        with mbx().lock:
            created = mbx().add_todo_list(name)
        response = jsonify(created)
        response.status_code = 201
        return response

    @app.get("/v1.0/me/todo/lists/<list_id>/tasks")
    def todo_tasks(list_id: str) -> Response:
        need("tasks", write=False)
        return listing(todo_scope(list_id), "todoTask")

    @app.get("/v1.0/me/todo/lists/<list_id>/tasks/delta")
    def todo_delta(list_id: str) -> Response:
        need("tasks", write=False)
        return delta(todo_scope(list_id), "todoTask")

    @app.post("/v1.0/me/todo/lists/<list_id>/tasks")
    def create_task(list_id: str) -> Response:
        need("tasks", write=True)
        return create_in(todo_scope(list_id), "todoTask", body_json(), {})

    @app.get("/v1.0/me/todo/lists/<list_id>/tasks/<item_id>")
    def get_task(list_id: str, item_id: str) -> Response:
        need("tasks", write=False)
        return get_in(todo_scope(list_id), "todoTask", item_id)

    @app.patch("/v1.0/me/todo/lists/<list_id>/tasks/<item_id>")
    def update_task(list_id: str, item_id: str) -> Response:
        need("tasks", write=True)
        return update_in(todo_scope(list_id), "todoTask", item_id)

    @app.delete("/v1.0/me/todo/lists/<list_id>/tasks/<item_id>")
    def delete_task(list_id: str, item_id: str) -> Response:
        need("tasks", write=True)
        return delete_in(todo_scope(list_id), item_id)

    def task_or_404(list_id: str, item_id: str) -> dict[str, Any]:
        found = mbx().collection(todo_scope(list_id)).items.get(item_id)
        if found is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip
        return found

    @app.post("/v1.0/me/todo/lists/<list_id>/tasks/<item_id>/extensions")
    def create_extension(list_id: str, item_id: str) -> Response:
        """opentypeextension-post-opentypeextension.md. The task's own version is not changed
        (an extension is a separate resource), so its delta does not report it either."""
        need("tasks", write=True)
        body = body_json()
        name = body.get("extensionName")
        if body.get("@odata.type", "").lstrip("#") != "microsoft.graph.openTypeExtension" or not name:  # fmt: skip
            raise GraphError(400, "RequestBodyRead", "An open extension needs @odata.type microsoft.graph.openTypeExtension and extensionName.")  # fmt: skip
        with mbx().lock:
            task = task_or_404(list_id, item_id)
            extensions = task.setdefault("extensions", [])
            if any(e["extensionName"] == name for e in extensions):
                raise GraphError(409, "NameAlreadyExists", "An extension already exists with given id.")  # fmt: skip
            ext = {**body, "id": name}
            extensions.append(ext)
        response = jsonify(ext)
        response.status_code = 201
        return response

    @app.patch("/v1.0/me/todo/lists/<list_id>/tasks/<item_id>/extensions/<name>")
    def update_extension(list_id: str, item_id: str, name: str) -> Response:
        need("tasks", write=True)
        body = body_json()
        with mbx().lock:
            task = task_or_404(list_id, item_id)
            for ext in task.get("extensions") or []:
                if ext["extensionName"] == name:
                    ext.update({k: v for k, v in body.items() if k not in ("id", "extensionName")})  # fmt: skip
                    return Response(status=204)
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")  # fmt: skip

    # --- $batch ---------------------------------------------------------------------------------

    @app.post("/v1.0/$batch")
    def batch() -> Response:
        body = body_json()
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise GraphError(400, "BadRequest", "Invalid batch payload format.")
        if len(requests) > MAX_BATCH:
            raise GraphError(400, "BadRequest", f"Number of requests in a batch request exceeds the limit of {MAX_BATCH}.")  # fmt: skip
        ids = [r.get("id") for r in requests]
        if len(set(ids)) != len(ids) or any(not i for i in ids):
            raise GraphError(400, "BadRequest", "Batch request ids must be unique and present.")
        client = app.test_client()
        responses = []
        for sub in requests:
            url = str(sub.get("url", ""))
            if not url.startswith("/"):
                url = "/" + url
            headers = {
                "Authorization": request.headers.get("Authorization", ""),
                **{k: str(v) for k, v in (sub.get("headers") or {}).items()},
            }
            answer = client.open(
                "/v1.0" + url,
                method=str(sub.get("method", "GET")).upper(),
                headers=headers,
                json=sub.get("body") if "body" in sub else None,
            )
            entry: dict[str, Any] = {"id": sub["id"], "status": answer.status_code,
                                     "headers": {k: v for k, v in answer.headers.items()
                                                 if k.lower() in ("retry-after", "content-type", "location")}}  # fmt: skip
            if answer.data:
                entry["body"] = answer.get_json(silent=True)
            responses.append(entry)
        return jsonify({"responses": responses})

    return app


def prop_key(prop_id: str) -> str:
    """An extended property id compared as Graph does: the Name part exactly, the rest in any
    case (`String {GUID} Name crmid`, `String 0x3A24`)."""
    head, sep, name = prop_id.partition(" Name ")
    return head.lower() + sep + name


def parse_moment(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


to_utc = calendar.to_utc
