"""Fixtures of the Graph tests: a sandbox Graph (HTTPS, 127.0.0.1, free port) per module,
stopped by itself; clients and sides for alice; a Graph + Dataverse pair for engine runs."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.dataverse import DataverseServer
from sandbox.faults import FaultProfile
from sandbox.graph import GraphServer
from sandbox.identity import TokenRegistry
from sandbox.requestlog import RequestLog
from sync.crm.client import RetryPolicy
from sync.graph.client import GraphClient
from sync.graph.side import GraphSide

ALICE = "alice@contoso.example"


class GraphWorld:
    """A running sandbox Graph (and, when asked, a sandbox Dataverse) sharing tokens and log."""

    def __init__(self, work: Path, with_dataverse: bool = False) -> None:
        self.tokens, self.log, self.faults = TokenRegistry(), RequestLog(), FaultProfile()
        self.graph = GraphServer(self.tokens, self.log, self.faults, str(work))
        self.dataverse = (
            DataverseServer(self.tokens, self.log, self.faults, port=0, demo_scale=0)
            if with_dataverse
            else None
        )
        self.waits: list[float] = []

    def start(self) -> None:
        self.graph.start()
        if self.dataverse is not None:
            self.dataverse.start()

    def stop(self) -> None:
        self.faults.clear()
        self.graph.stop()
        if self.dataverse is not None:
            self.dataverse.stop()

    def token(self, upn: str = ALICE) -> str:
        return self.tokens.static_token(upn)

    def http(self, token: str | None = None) -> httpx.Client:
        """A plain httpx client with a bearer token, for the shape tests."""
        return httpx.Client(
            base_url=self.graph.url + "/",
            verify=ssl.create_default_context(cafile=self.graph.ca_file),
            headers={"Authorization": f"Bearer {token or self.token()}"},
        )

    def client(self, upn: str = ALICE) -> GraphClient:
        token = self.token(upn)
        return GraphClient(
            self.graph.url,
            lambda: token,
            verify=self.graph.ca_file,
            retry=RetryPolicy(backoff=0.01, max_backoff=0.05),
            sleep=self.waits.append,
        )

    def side(self, upn: str = ALICE) -> GraphSide:
        return GraphSide(self.client(upn))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphWorld]:
    running = GraphWorld(tmp_path_factory.mktemp("graph"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def http(world: GraphWorld) -> Iterator[httpx.Client]:
    with world.http() as client:
        yield client
