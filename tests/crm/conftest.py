"""A sandbox Dataverse server for the CRM tests (one per module) and clients on it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry
from sandbox.requestlog import RequestLog
from sync.crm.client import DataverseClient, RetryPolicy

ALICE = "alice@contoso.example"


@dataclass
class Sandbox:
    server: Any
    """The sandbox DataverseServer (typed loosely: its module belongs to another helper)."""
    tokens: TokenRegistry
    log: RequestLog
    faults: FaultProfile
    waits: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        """Record a wait and really wait it (the server's Retry-After must pass)."""
        self.waits.append(seconds)
        time.sleep(seconds)

    def client(
        self, org: str = "contoso", upn: str = ALICE, token: str | None = None, **kw: object
    ) -> DataverseClient:
        bearer = token or self.tokens.static_token(upn)
        kw.setdefault("retry", RetryPolicy(backoff=0.05, max_retries=2))
        return DataverseClient(
            self.server.api_url(org),
            lambda: bearer,
            sleep=self.sleep,
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    from sandbox.dataverse import DataverseServer

    tokens, log, faults = TokenRegistry(), RequestLog(), FaultProfile()
    server = DataverseServer(tokens, log, faults, port=0, demo_scale=0.1)
    server.start()
    try:
        yield Sandbox(server, tokens, log, faults)
    finally:
        faults.clear()
        server.stop()


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[DataverseClient]:
    sandbox.faults.clear()
    with sandbox.client() as c:
        yield c


ClientFactory = Callable[..., DataverseClient]
