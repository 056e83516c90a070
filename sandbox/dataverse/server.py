"""HTTP plumbing: a stdlib ThreadingHTTPServer in a daemon thread that serves the Dataverse Web
API of every sandbox organization and the Global Discovery service.

Before a request reaches the API it goes through what sits in front of the real service: the
fault profile (429 / 503 / slow / dropped connection), the bearer-token check, organization
membership and the per-user service-protection budget. Every request is written to the log.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from sandbox.dataverse import errors, operations, security
from sandbox.dataverse.api import OrgApi, error_answer, json_answer
from sandbox.dataverse.batch import Answer, Operation
from sandbox.dataverse.demo import seed
from sandbox.dataverse.errors import ODataError
from sandbox.dataverse.identity_bridge import environment_id
from sandbox.dataverse.query import DeltaClock
from sandbox.dataverse.store import Store, Table
from sandbox.faults import FaultProfile
from sandbox.identity import ORGANIZATIONS, TENANT_ID, TokenRegistry, User, user_by_upn
from sandbox.requestlog import RequestLog
from sandbox.serving import NoDelayHandler

VERSION = "9.2.25104.00179"
_DISCOVERY = "/api/discovery/v2.0/"


class _Drop(Exception):
    """Close the connection without an answer (fault injection)."""

    def __init__(self, service: str, upn: str | None, target: str) -> None:
        super().__init__(service)
        self.service, self.upn, self.target = service, upn, target


class DataverseServer:
    """The sandbox Dataverse: start(), stop(), URLs, and direct store access for tests."""

    def __init__(
        self,
        tokens: TokenRegistry,
        log: RequestLog,
        faults: FaultProfile,
        port: int = 0,
        demo_scale: float = 1.0,
        host: str = "127.0.0.1",
        strict: bool = True,
    ) -> None:
        self.tokens = tokens
        self.log = log
        self.faults = faults
        self.host = host
        self.port = port
        self.demo_scale = demo_scale
        self.store = Store([org.unique_name for org in ORGANIZATIONS])
        self.delta = DeltaClock()
        self.api = OrgApi(self.store, self.delta)
        self.security = security.SecurityPolicy(strict=strict)
        """Roles, change-tracked tables and whether their refusals are answered (strict)."""
        security.attach(self.store, self.security)
        self.request_budget: int | None = None
        self.request_window: float = 300.0
        self.authorization_uri = f"https://login.microsoftonline.com/{TENANT_ID}/oauth2/authorize"
        self._requests: dict[str, collections.deque[float]] = {}
        self._budget_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        self.discovery_url = ""
        seed(self, demo_scale)

    # --- public API -------------------------------------------------------------------------

    def start(self) -> None:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        self.discovery_url = self.base_url + "/api/discovery/v2.0/Instances"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="sandbox-dataverse", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def org_url(self, unique_name: str) -> str:
        return f"{self.base_url}/{unique_name}/"

    def api_url(self, unique_name: str) -> str:
        return self.org_url(unique_name) + "api/data/v9.2/"

    def table(self, org: str, entity_set: str) -> Table:
        """The live table (`.rows`: id → Row with `.values`); hold `store.lock` while iterating."""
        return self.store.table(org, entity_set)

    def insert(
        self, org: str, entity_set: str, row: dict[str, Any], as_user: str | None = None
    ) -> str:
        """Seed a row as if `as_user` (a UPN) had POSTed `row`; returns its id."""
        user = user_by_upn(as_user) if as_user else None
        ctx = operations.Context(
            self.store, org, self.api_url(org), user.systemuser_id(org) if user else None
        )
        ctx.expansion = self.api.expansion  # series expand as far as a POST's do
        with self.store.transaction():
            created = operations.create(ctx, entity_set, row)
        return str(created.values[operations.entity_for(entity_set).key])

    @property
    def delta_token_lifetime(self) -> float:
        return self.delta.lifetime

    @delta_token_lifetime.setter
    def delta_token_lifetime(self, seconds: float) -> None:
        self.delta.lifetime = seconds

    @property
    def strict(self) -> bool:
        """Whether missing privileges and untracked tables are refused, as the service does."""
        return self.security.strict

    @strict.setter
    def strict(self, value: bool) -> None:
        self.security.strict = value

    @property
    def expired_token_status(self) -> int:
        """The HTTP status of the 0x80044352 answer to an expired delta token (400; the docs
        do not say which: tests set 500 to check that clients accept either)."""
        return self.delta.expired_status

    @expired_token_status.setter
    def expired_token_status(self, status: int) -> None:
        self.delta.expired_status = status

    def expire_delta_tokens(self) -> None:
        """Make every delta token issued so far expired (clients must do a full read)."""
        time.sleep(0.001)
        self.delta.expired_before = time.time()
        time.sleep(0.001)

    # --- request pipeline -------------------------------------------------------------------

    def _throttle(self, upn: str) -> tuple[ODataError | None, int | None]:
        """Count one request against the user's budget: (429 error or None, requests left)."""
        budget = self.request_budget
        if budget is None:
            return None, None
        now = time.monotonic()
        with self._budget_lock:
            seen = self._requests.setdefault(upn, collections.deque())
            while seen and seen[0] <= now - self.request_window:
                seen.popleft()
            if len(seen) >= budget:
                retry = max(1, math.ceil(seen[0] + self.request_window - now))
                return errors.throttled(budget, self.request_window, retry), 0
            seen.append(now)
            return None, budget - len(seen)

    def serve(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[Answer, str, str | None, str]:
        """One HTTP request → (answer, service, user upn, logged target). May raise _Drop."""
        path = unquote(urlsplit(target).path)
        service = "discovery" if path.startswith(_DISCOVERY) else "dataverse"
        segments = [s for s in path.split("/") if s]
        logged = self._log_target(service, path, segments)
        token = headers.get("authorization", "")
        user = (
            self.tokens.user_for(token[7:].strip()) if token.lower().startswith("bearer ") else None
        )
        upn = user.upn if user else None
        fault = self.faults.pick(f"{service}:{method} {path}")
        if fault is not None:
            if fault.kind == "drop":
                raise _Drop(service, upn, logged)
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind in ("429", "busy"):
                retry = max(1, math.ceil(fault.delay))
                error = errors.throttled(6000, self.request_window, retry)
                return error_answer(error), service, upn, logged
            elif fault.kind == "503":
                error = ODataError(503, "0x80040216", "The service is temporarily unavailable.")
                return error_answer(error), service, upn, logged
        if user is None:
            error = ODataError(
                401, errors.UNAUTHORIZED, "The bearer token is missing, invalid or expired."
            )
            error.headers["WWW-Authenticate"] = (
                f"Bearer authorization_uri={self.authorization_uri}, resource_id={self.base_url}/"
            )
            return error_answer(error), service, upn, logged
        if service == "discovery":
            return self._discovery(user, segments[3:]), service, upn, logged
        return (
            self._organization(user, method, target, headers, body, segments),
            service,
            upn,
            logged,
        )

    def _log_target(self, service: str, path: str, segments: list[str]) -> str:
        if service == "discovery":
            return segments[-1] if segments else ""
        if len(segments) >= 5 and segments[1:3] == ["api", "data"]:
            return segments[4].split("(")[0]
        return path

    def _organization(
        self,
        user: User,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        segments: list[str],
    ) -> Answer:
        org = next((o for o in ORGANIZATIONS if segments and o.unique_name == segments[0]), None)
        if org is None or segments[1:3] != ["api", "data"]:
            return error_answer(
                ODataError(404, errors.SYNTAX, "The organization or resource was not found.")
            )
        if org.unique_name not in user.organizations:
            return error_answer(
                ODataError(403, errors.NOT_MEMBER, "The user is not a member of the organization.")
            )
        throttled, remaining = self._throttle(user.upn)
        if throttled is not None:
            return error_answer(throttled)
        privilege = security.privilege_call(self.api.resource_of(target))
        if privilege is not None and method == "GET":
            answer = self._user_privileges(
                org.unique_name, self.api_url(org.unique_name), *privilege
            )
            if remaining is not None:
                answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(remaining)
            return answer
        op = Operation(method, target, headers, body)
        answer = self.api.handle(
            org, self.api_url(org.unique_name), user.systemuser_id(org.unique_name), op
        )
        if remaining is not None:
            answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(remaining)
        return answer

    def _user_privileges(self, org: str, api_url: str, user_id: str, name: str) -> Answer:
        """`systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivilegeByPrivilegeName(…)`."""
        with self.store.lock:
            exists = self.store.table(org, "systemusers").get(user_id) is not None
        if not exists:
            return error_answer(errors.not_found("systemuser", user_id))
        return json_answer(
            200,
            {
                "@odata.context": f"{api_url}$metadata#Microsoft.Dynamics.CRM."
                "RetrieveUserPrivilegeByPrivilegeNameResponse",
                "RolePrivileges": self.security.role_privileges(org, user_id, name),
            },
        )

    def _discovery(self, user: User, rest: list[str]) -> Answer:
        context = f"{self.base_url}/api/discovery/v2.0/$metadata#Instances"
        instances = [
            self._instance(org) for org in ORGANIZATIONS if org.unique_name in user.organizations
        ]
        resource = rest[0] if rest else ""
        if resource == "Instances":
            return json_answer(200, {"@odata.context": context, "value": instances})
        if resource.startswith("Instances(") and resource.endswith(")"):
            key = resource[len("Instances(") : -1]
            name = key.split("=", 1)[-1].strip("'") if "=" in key else key.strip("'")
            found = [i for i in instances if name in (i["UniqueName"], i["Id"])]
            if found:
                return json_answer(200, {"@odata.context": context, "value": found})
            return error_answer(
                ODataError(404, errors.NOT_FOUND, f"Instance '{name}' was not found.")
            )
        return error_answer(
            ODataError(404, errors.SYNTAX, f"Resource not found for the segment '{resource}'.")
        )

    def _instance(self, org: Any) -> dict[str, Any]:
        url = self.org_url(org.unique_name).rstrip("/")
        return {
            "Id": org.id,
            "UniqueName": org.unique_name,
            "UrlName": org.url_name,
            "FriendlyName": org.friendly_name,
            "State": 0,
            "Version": VERSION,
            "Url": url,
            "ApiUrl": url,
            "LastUpdated": "2026-11-01T08:00:00Z",
            "Region": "SBX",
            "TenantId": TENANT_ID,
            "EnvironmentId": environment_id(org.unique_name),
            "Purpose": "Sandbox",
            "TrialExpirationDate": None,
            "DatacenterId": None,
            "DatacenterName": None,
            "OrganizationType": 0,
            "IsUserSysAdmin": True,
            "SchemaType": "Standard",
        }


class _Handler(NoDelayHandler):
    owner: DataverseServer
    protocol_version = "HTTP/1.1"
    server_version = "SandboxDataverse/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _handle(self) -> None:
        started = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner = self.owner
        try:
            answer, service, upn, target = owner.serve(self.command, self.path, headers, body)
        except _Drop as drop:
            owner.log.record(
                drop.service, drop.upn, self.command, drop.target, 0, "dropped", started
            )
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        except Exception as exc:  # a bug must still answer, as the real service answers 500
            answer = json_answer(500, {"error": {"code": "0x80040216", "message": repr(exc)}})
            service, upn, target = "dataverse", None, self.path
        detail = answer.detail
        if answer.status == 429:
            detail = f"throttled retry_after={answer.headers.get('Retry-After')}"
        elif (
            not detail
            and answer.status >= 400
            and answer.headers.get("Content-Type", "").startswith("application/json")
        ):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                detail = json.loads(answer.body)["error"]["code"]
        # logged before the answer goes out: a client that has its answer finds it in the log
        owner.log.record(service, upn, self.command, target, answer.status, detail, started)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.body and self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle
