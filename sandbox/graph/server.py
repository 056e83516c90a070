"""GraphServer: the sandbox Microsoft Graph on 127.0.0.1 over HTTPS (`<url>/v1.0/...`)."""

from __future__ import annotations

import threading
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.faults import FaultProfile
from sandbox.graph.app import GraphState, create_graph_app
from sandbox.graph.store import GraphMailbox
from sandbox.identity import TokenRegistry
from sandbox.requestlog import RequestLog
from sandbox.tls import make_tls_material


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the RequestLog records every request instead."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class GraphServer:
    """A Microsoft Graph v1.0 subset for the sandbox users (see sandbox/graph/README.md).

    Tokens come from the shared TokenRegistry; a token issued by the sandbox identity provider
    carries its scopes, and a call outside them is answered 403 ErrorAccessDenied.
    """

    def __init__(
        self,
        tokens: TokenRegistry,
        log: RequestLog,
        faults: FaultProfile,
        data_dir: str,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.tls = make_tls_material(Path(data_dir) / "graph")
        self.ca_file = self.tls.ca_file
        self.state = GraphState(tokens, log, faults)
        self.app = create_graph_app(self.state)
        self._host, self._port = host, port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        """`https://127.0.0.1:PORT/v1.0` once started (what a Graph client is given)."""

    def mailbox(self, upn: str) -> GraphMailbox:
        """A user's mailbox, for tests and seeding (hold its `lock` while changing it)."""
        return self.state.mailbox(upn)

    def start(self) -> None:
        if self._server is not None:
            return
        server = make_server(
            self._host,
            self._port,
            self.app,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=self.tls.server_context(),
        )
        port = server.socket.getsockname()[1]
        self.state.base_url = f"https://{self._host}:{port}"
        self.url = f"{self.state.base_url}/v1.0"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="sandbox-graph", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        server.server_close()
