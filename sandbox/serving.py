"""One WSGI app on a loopback port, served by a daemon thread: what each sandbox server runs.

werkzeug's threaded server, with no access log on stderr (the RequestLog records every request
instead); `stop()` shuts it down and closes the socket, so a test's servers end by themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

NO_DELAY = True
"""Every sandbox handler sets TCP_NODELAY: an answer goes out in more than one write, and with
Nagle's algorithm the last one waited for the client's delayed ACK, 44 ms a request instead of
0.8 (bench/RESULTS.md)."""


class NoDelayHandler(BaseHTTPRequestHandler):
    """The base of the sandbox's plain HTTP handlers (Dataverse, EWS): `NO_DELAY`."""

    disable_nagle_algorithm = NO_DELAY


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr; `NO_DELAY`."""

    disable_nagle_algorithm = NO_DELAY

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Listener:
    """`app` served on `host:port` (0: a free port) in a thread named `name`."""

    def __init__(
        self,
        app: Callable[..., Any],
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: Any = None,
    ) -> None:
        self.app, self.name, self.host, self.port = app, name, host, port
        self._asked_port = port
        self.ssl_context = ssl_context
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def origin(self) -> str:
        """`https://127.0.0.1:PORT` (or http, without TLS); IPv6 hosts in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            return
        server = make_server(
            self.host,
            self._asked_port,
            self.app,
            threaded=True,
            request_handler=QuietHandler,
            ssl_context=self.ssl_context,
        )
        self.port = server.socket.getsockname()[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        server.server_close()
