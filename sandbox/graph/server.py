"""GraphServer: the sandbox Microsoft Graph on 127.0.0.1 over HTTPS (`<url>/v1.0/...`)."""

from __future__ import annotations

from pathlib import Path

from sandbox.faults import FaultProfile
from sandbox.graph.app import GraphState, create_graph_app
from sandbox.graph.store import GraphMailbox
from sandbox.identity import TokenRegistry
from sandbox.requestlog import RequestLog
from sandbox.serving import Listener
from sandbox.tls import make_tls_material


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
        self._listener = Listener(
            self.app, "sandbox-graph", host, port, ssl_context=self.tls.server_context()
        )
        self.url = ""
        """`https://127.0.0.1:PORT/v1.0` once started (what a Graph client is given)."""

    def mailbox(self, upn: str) -> GraphMailbox:
        """A user's mailbox, for tests and seeding (hold its `lock` while changing it)."""
        return self.state.mailbox(upn)

    def start(self) -> None:
        if self._listener.running:
            return
        self._listener.start()
        self.state.base_url = self._listener.origin
        self.url = f"{self.state.base_url}/v1.0"

    def stop(self) -> None:
        self._listener.stop()
