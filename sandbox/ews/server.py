"""The sandbox EWS endpoint: HTTPS, Basic/Bearer auth, SOAP envelopes, faults, throttling.

exchangelib talks to it unchanged. Every request is logged; the shared fault profile is applied
before handling; a per-user budget answers ErrorServerBusy with BackOffMilliseconds like Exchange.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import socket
import ssl
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from sandbox.ews import autodiscover
from sandbox.ews.ops import OPERATIONS
from sandbox.ews.store import Mailbox
from sandbox.ews.xml import (
    SOAP,
    Element,
    EwsError,
    SoapFault,
    envelope,
    fault,
    local,
    response_message,
    t,
    wrap_messages,
)
from sandbox.faults import FaultProfile
from sandbox.identity import USERS, TokenRegistry, User
from sandbox.requestlog import RequestLog
from sandbox.serving import NoDelayHandler
from sandbox.tls import make_tls_material

EWS_PATH = "/EWS/Exchange.asmx"
KNOWN_VERSIONS = {
    "Exchange2007", "Exchange2007_SP1", "Exchange2010", "Exchange2010_SP1", "Exchange2010_SP2",
    "Exchange2013", "Exchange2013_SP1", "Exchange2015", "Exchange2015_SP1", "Exchange2016",
    "V2015_10_05", "V2016_01_06", "V2016_04_13", "V2016_07_13", "V2016_10_10", "V2017_01_07",
    "V2017_04_14", "V2017_07_11",
}  # fmt: skip


def _request_parser() -> Any:
    """A parser per request (lxml parsers are not shared across threads); no entity expansion
    and no network, so a hostile body cannot read files or fetch URLs."""
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_connections: set[Any] = set()
        self.connections_lock = threading.Lock()

    def close_open_connections(self) -> None:
        """Stopping closes kept-alive connections too, so no client talks to a stopped server."""
        with self.connections_lock:
            for conn in list(self.open_connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.open_connections.clear()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: broken TLS handshakes and dropped clients are normal in tests."""


@dataclass
class Ctx:
    """What an operation handler gets: the server, the caller's mailbox and request details."""

    server: EwsServer
    mailbox: Mailbox
    user: User
    api_version: str


class EwsServer:
    """An Exchange Web Services endpoint good enough for exchangelib, on 127.0.0.1."""

    def __init__(
        self,
        tokens: TokenRegistry,
        log: RequestLog,
        faults: FaultProfile,
        data_dir: str,
        port: int = 0,
        http_port: int | None = None,
        demo: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.tokens, self.log, self.faults = tokens, log, faults
        self.host, self.port, self.http_port_wanted = host, port, http_port
        self.tls = make_tls_material(Path(data_dir) / "ews")
        self.ca_file = self.tls.ca_file
        self.busy_budget: int | None = None
        self.busy_window: float = 10.0
        self.busy_backoff_ms: int = 1000
        self._budget_lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._mailboxes: dict[str, Mailbox] = {}
        self.autodiscover_redirects: dict[str, str] = {}
        """Autodiscover answers redirectAddr for these addresses (lower case) to the value."""
        self.ews_blocked: set[str] = set()
        """Users (lower-case UPNs, or "*" for all) whose EWS requests get HTTP 403, as when EWS
        is turned off for the mailbox or the app is not on the tenant's EWS allow list."""
        self._http_429: list[int] = []
        self._internal_errors = 0
        self._errors_lock = threading.Lock()
        self.subscriptions: dict[str, Any] = {}
        self.streaming_minute = 60.0
        """Seconds one minute of a streaming connection's ConnectionTimeout lasts (tests
        shorten it to see a connection close and the client come back)."""
        self.streaming_heartbeat = 30.0
        """Seconds between ConnectionStatus OK envelopes while nothing happens."""
        self._stopping = threading.Event()
        self._pending = threading.local()
        for user in USERS:
            self._mailboxes[user.upn] = Mailbox(user.upn, user.display_name)
        if demo:
            from sandbox.ews.demo import seed_demo

            for mbx in self._mailboxes.values():
                seed_demo(self, mbx)
        self._servers: list[_Server] = []
        self.url = ""
        self.http_url: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        handler = _make_handler(self)
        https = _Server((self.host, self.port), handler)
        https.daemon_threads = True
        context = self.tls.server_context()
        https.socket = context.wrap_socket(
            https.socket, server_side=True, do_handshake_on_connect=False
        )
        self._servers.append(https)
        self.url = f"https://{self.host}:{https.server_address[1]}{EWS_PATH}"
        if self.http_port_wanted is not None:
            plain = _Server((self.host, self.http_port_wanted), handler)
            plain.daemon_threads = True
            self._servers.append(plain)
            self.http_url = f"http://{self.host}:{plain.server_address[1]}{EWS_PATH}"
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True, name="ews").start()

    def stop(self) -> None:
        self._stopping.set()  # held streaming connections end
        for server in self._servers:
            server.shutdown()
            server.server_close()
            server.close_open_connections()
        self._servers.clear()

    # -- test and side-door API ------------------------------------------------------------
    def mailbox(self, upn: str) -> Mailbox:
        try:
            return self._mailboxes[upn.lower()]
        except KeyError:
            raise KeyError(f"no sandbox mailbox {upn!r}") from None

    def reset_mailbox(self, upn: str) -> None:
        mbx = self.mailbox(upn)
        with mbx.lock:
            mbx.reset()

    def deliver_mime(self, to_upn: str, mime: bytes, folder: str = "inbox") -> str:
        """Put a MIME message into a mailbox folder as if it arrived; returns the item id."""
        from sandbox.ews.ops.items import deliver

        mbx = self.mailbox(to_upn)
        with mbx.lock:
            return deliver(mbx, mime, folder)

    @property
    def upns(self) -> set[str]:
        return set(self._mailboxes)

    def answer_429(self, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` EWS requests get HTTP 429 with `Retry-After: retry_after` (what a
        front end in Exchange Online's path may answer; the EWS reference lists only 503,
        500/ErrorServerBusy and 200/ErrorInternalServerError for throttling)."""
        with self._errors_lock:
            self._http_429 += [retry_after] * times

    def answer_internal_error(self, times: int = 1) -> None:
        """The next `times` SOAP requests get the throttling answer "HTTP 200 … with an
        ErrorInternalServerError error code" (EWS throttling in Exchange, table 4)."""
        with self._errors_lock:
            self._internal_errors += times

    def refused_with(self, upn: str) -> tuple[int, str] | None:
        """(status, Retry-After) when this request is refused before it is read, else None."""
        if "*" in self.ews_blocked or upn.lower() in self.ews_blocked:
            return 403, ""
        with self._errors_lock:
            if self._http_429:
                return 429, str(self._http_429.pop(0))
        return None

    def _take_internal_error(self) -> bool:
        with self._errors_lock:
            if self._internal_errors <= 0:
                return False
            self._internal_errors -= 1
            return True

    def queue_delivery(self, upn: str, mime: bytes, copy_from: Any) -> None:
        """Deliver after the current request releases its mailbox lock."""
        pending = getattr(self._pending, "items", None)
        if pending is None:
            pending = self._pending.items = []
        pending.append((upn, mime, copy_from))

    def _flush_deliveries(self) -> None:
        from sandbox.ews.ops.items import deliver

        pending = getattr(self._pending, "items", None) or []
        self._pending.items = []
        for upn, mime, copy_from in pending:
            mbx = self.mailbox(upn)
            with mbx.lock:
                deliver(mbx, mime, "inbox", copy_from=copy_from)

    # -- throttling ------------------------------------------------------------------------
    def _over_budget(self, upn: str) -> bool:
        if self.busy_budget is None:
            return False
        now = time.monotonic()
        with self._budget_lock:
            if self._blocked_until.get(upn, 0.0) > now:
                return True
            recent = self._recent.setdefault(upn, deque())
            while recent and recent[0] < now - self.busy_window:
                recent.popleft()
            if len(recent) >= self.busy_budget:
                recent.clear()
                self._blocked_until[upn] = now + self.busy_backoff_ms / 1000.0
                return True
            recent.append(now)
            return False

    # -- dispatch --------------------------------------------------------------------------
    def streaming_answer(self, user: User, body: bytes) -> Iterator[bytes] | None:
        """A valid GetStreamingEvents held open: the envelopes to send, one per batch of events
        (and a heartbeat while quiet), the last with ConnectionStatus Closed once the
        connection's ConnectionTimeout has passed. None: not such a request (or a subscription
        is refused): `handle_soap` answers it at once. Fault injection does not apply here."""
        from sandbox.ews.ops import misc

        try:
            root = etree.fromstring(body, _request_parser())
        except etree.XMLSyntaxError:
            return None
        op_elem, api_version = _split_envelope(root)
        if op_elem is None or local(op_elem) != "GetStreamingEvents":
            return None
        if api_version not in KNOWN_VERSIONS:
            return None
        mbx = self.mailbox(user.upn)
        ctx = Ctx(self, mbx, user, api_version)
        with mbx.lock:
            try:
                subscriptions = misc.streaming_subscriptions(ctx, op_elem)
            except EwsError:
                return None
        if not subscriptions:
            return None
        deadline = time.monotonic() + misc.connection_minutes(op_elem) * self.streaming_minute

        def envelopes() -> Iterator[bytes]:
            beat = time.monotonic()
            while not self._stopping.is_set():
                closing = time.monotonic() >= deadline
                with mbx.lock:
                    batch = misc.streaming_batch(ctx, subscriptions, "Closed" if closing else "OK")
                if batch is not None:
                    beat = time.monotonic()
                    yield envelope(batch)
                elif time.monotonic() - beat >= self.streaming_heartbeat:
                    beat = time.monotonic()
                    yield envelope(misc.heartbeat())
                if closing:
                    return
                self._stopping.wait(0.1)

        return envelopes()

    def handle_soap(self, user: User, body: bytes) -> tuple[int, bytes, str, str]:
        """(status, payload, operation, detail) for one SOAP request."""
        try:
            root = etree.fromstring(body, _request_parser())
        except etree.XMLSyntaxError as exc:
            line, col = exc.position if exc.position else (0, 0)
            err = SoapFault(
                "ErrorSchemaValidation",
                f"The request failed schema validation: {exc.msg}",
                {"LineNumber": str(line), "LinePosition": str(col), "Violation": str(exc.msg)},
            )
            return 500, fault(err), "?", "malformed XML"
        op_elem, api_version = _split_envelope(root)
        op = local(op_elem) if op_elem is not None else "?"
        try:
            if op_elem is None:
                raise SoapFault("ErrorSchemaValidation", "The request has no SOAP Body operation.")
            if api_version not in KNOWN_VERSIONS:
                raise SoapFault(
                    "ErrorInvalidServerVersion",
                    "The specified server version is invalid.",
                )
            acting_as = _impersonated(root)
            if acting_as is not None and acting_as != user.upn:
                raise SoapFault(
                    "ErrorImpersonateUserDenied",
                    "The account does not have permission to impersonate the requested user.",
                )
            hit = self.faults.pick(f"ews {EWS_PATH} {op}")
            if hit is not None and hit.kind in ("busy", "429"):
                raise SoapFault(
                    "ErrorServerBusy",
                    "The server cannot service this request right now. Try again later.",
                    {"BackOffMilliseconds": str(int(hit.delay * 1000))},
                )
            if hit is not None and hit.kind == "503":
                retry = max(1, math.ceil(hit.delay))
                return 503, b"Service Unavailable", op, f"fault 503 retry_after={retry}"
            if hit is not None and hit.kind == "drop":
                return 0, b"", op, "fault drop"
            if hit is not None and hit.kind == "slow":
                time.sleep(hit.delay)
            if self._over_budget(user.upn):
                raise SoapFault(
                    "ErrorServerBusy",
                    "The server cannot service this request right now. Try again later.",
                    {"BackOffMilliseconds": str(self.busy_backoff_ms)},
                )
            if self._take_internal_error():
                message = response_message(
                    f"{op}ResponseMessage",
                    EwsError(
                        "ErrorInternalServerError",
                        "An internal server error occurred. The operation failed.",
                    ),
                )
                return 200, envelope(wrap_messages(op, [message])), op, "ErrorInternalServerError"
            handler = OPERATIONS.get(op)
            if handler is None:
                raise SoapFault(
                    "ErrorSchemaValidation",
                    f"The request failed schema validation: the element {op!r} is invalid "
                    "(the sandbox has no such operation).",
                    {"Violation": f"The element '{op}' is invalid."},
                )
            mbx = self.mailbox(user.upn)
            self._pending.items = []
            with mbx.lock:
                response = handler(Ctx(self, mbx, user, api_version), op_elem)
            self._flush_deliveries()
            return 200, envelope(response), op, _first_code(response)
        except SoapFault as exc:
            return 500, fault(exc), op, exc.code
        except EwsError as exc:
            return 500, fault(SoapFault(exc.code, exc.text)), op, exc.code
        except Exception as exc:  # a sandbox bug: answer as Exchange would, keep serving
            traceback.print_exc()
            err = SoapFault(
                "ErrorInternalServerError", f"An internal server error occurred: {exc!r}"
            )
            return 500, fault(err), op, f"ErrorInternalServerError {type(exc).__name__}"


def _impersonated(root: Element) -> str | None:
    """The address an ExchangeImpersonation header asks for, if any."""
    header = root.find(f"{{{SOAP}}}Header")
    node = header.find(t("ExchangeImpersonation")) if header is not None else None
    if node is None:
        return None
    for tag in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName"):
        found = node.find(f".//{t(tag)}")
        if found is not None and found.text:
            return found.text.strip().lower()
    return ""


def _split_envelope(root: Element) -> tuple[Element | None, str]:
    version = "Exchange2016"
    header = root.find(f"{{{SOAP}}}Header")
    if header is not None:
        rsv = header.find(t("RequestServerVersion"))
        if rsv is not None:
            version = rsv.get("Version", version)
    body = root.find(f"{{{SOAP}}}Body")
    if body is None or not len(body):
        return None, version
    return body[0], version


def _first_code(response: Element) -> str:
    codes = {c.text for c in response.iter("{*}ResponseCode")}
    codes.discard("NoError")
    return ",".join(sorted(c for c in codes if c)) or "NoError"


def _make_handler(server: EwsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(NoDelayHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Microsoft-IIS/10.0"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: the request log is the record."""

        def setup(self) -> None:
            super().setup()
            owner = self.server
            if isinstance(owner, _Server):
                with owner.connections_lock:
                    owner.open_connections.add(self.connection)
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.settimeout(30)
                try:
                    self.connection.do_handshake()
                except (OSError, ssl.SSLError):
                    self.close_connection = True
                    raise
            # Idle keep-alive connections close after two minutes, like IIS.
            self.connection.settimeout(120)

        def finish(self) -> None:
            owner = self.server
            if isinstance(owner, _Server):
                with owner.connections_lock:
                    owner.open_connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def handle(self) -> None:
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                super().handle()

        def _user(self) -> User | None:
            auth = self.headers.get("Authorization", "")
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "basic":
                try:
                    name, _, password = base64.b64decode(value).decode("utf-8").partition(":")
                except (ValueError, UnicodeDecodeError):
                    return None
                return server.tokens.user_for_password(name, password)
            if scheme.lower() == "bearer":
                return server.tokens.user_for(value.strip())
            return None

        def _send(
            self,
            status: int,
            payload: bytes,
            ctype: str = "text/xml; charset=utf-8",
            retry_after: str = "1",
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="sandbox", Bearer')
            if status in (429, 503):
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(payload)

        def _send_chunked(self, parts: Iterator[bytes]) -> None:
            """A held answer, each part a chunk as soon as it is made (HTTP/1.1 chunked)."""
            self.send_response(200)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for part in parts:
                    self.wfile.write(b"%X\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client went away: the connection is over
                self.close_connection = True

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:  # noqa: N802
            self._body()
            path = urlsplit(self.path).path
            if path.lower() == autodiscover.PATH and not isinstance(self.connection, ssl.SSLSocket):
                # The HTTP redirect method ("Autodiscover for Exchange", phase 3): an
                # unauthenticated GET over plain HTTP is sent on to the HTTPS service.
                base = server.url.rsplit(EWS_PATH, 1)[0]
                server.log.record("ews", None, "GET", "autodiscover", 302, "redirect")
                self.send_response(302)
                self.send_header("Location", base + autodiscover.PATH)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path.lower() == EWS_PATH.lower():
                # Exchange answers a GET on the endpoint with the service description pointer.
                self._send(200, b"<wsdl>see /EWS/Services.wsdl</wsdl>", "text/xml")
                return
            self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:  # noqa: N802
            started = time.time()
            body = self._body()
            parts = urlsplit(self.path)
            user = self._user()
            if parts.path == "/admin/deliver":
                self._admin_deliver(user, parts.query, body, started)
                return
            if parts.path.lower() == autodiscover.PATH:
                self._autodiscover(user, body, started)
                return
            if parts.path.lower() != EWS_PATH.lower():
                self._send(404, b"not found", "text/plain")
                return
            if user is None:
                server.log.record("ews", None, "POST", "?", 401, "unauthorized", started)
                self._send(401, b"", "text/plain")
                return
            refused = server.refused_with(user.upn)
            if refused is not None:
                status, wait = refused
                text = {
                    403: b"EWS is not allowed for this mailbox or application.",
                    429: b"Too many requests.",
                }[status]
                server.log.record("ews", user.upn, "POST", "?", status, f"HTTP {status}", started)
                self._send(status, text, "text/plain", retry_after=wait or "1")
                return
            if b"GetStreamingEvents" in body:
                held = server.streaming_answer(user, body)
                if held is not None:
                    server.log.record(
                        "ews", user.upn, "POST", "GetStreamingEvents", 200, "", started
                    )
                    self._send_chunked(held)
                    return
            status, payload, op, detail = server.handle_soap(user, body)
            server.log.record("ews", user.upn, "POST", op, status, detail, started)
            if status == 0:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            ctype = "text/plain" if status == 503 else "text/xml; charset=utf-8"
            retry_after = detail.rpartition("retry_after=")[2] if status == 503 else "1"
            self._send(status, payload, ctype, retry_after)

        def _autodiscover(self, user: User | None, body: bytes, started: float) -> None:
            if user is None:
                server.log.record("ews", None, "POST", "autodiscover", 401, "", started)
                self._send(401, b"", "text/plain")
                return
            address = autodiscover.requested_address(body)
            if address is None:
                answer = autodiscover.error("600", "Invalid Request")
            elif address in server.autodiscover_redirects:
                answer = autodiscover.redirect_address(server.autodiscover_redirects[address])
            else:
                try:
                    mbx = server.mailbox(address)
                    answer = autodiscover.settings(mbx.display_name, server.url)
                except KeyError:
                    answer = autodiscover.error("500", "The e-mail address cannot be found.")
            server.log.record("ews", user.upn, "POST", "autodiscover", 200, address or "", started)
            self._send(200, answer)

        def _admin_deliver(
            self, user: User | None, query: str, body: bytes, started: float
        ) -> None:
            if user is None:
                self._send(401, b"", "text/plain")
                return
            to = (parse_qs(query).get("to") or [""])[0]
            folder = (parse_qs(query).get("folder") or ["inbox"])[0]
            try:
                item_id = server.deliver_mime(to, body, folder)
            except (KeyError, EwsError) as exc:
                self._send(404, json.dumps({"error": str(exc)}).encode(), "application/json")
                return
            server.log.record("ews", user.upn, "POST", "admin/deliver", 200, to, started)
            self._send(200, json.dumps({"item_id": item_id}).encode(), "application/json")

    return Handler
