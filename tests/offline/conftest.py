"""Fixtures of the offline tests: one sandbox Dataverse per module (stoppable, to prove no CRM
call is made while offline), a fresh local database per test with an organization and offline
filters, and an `OfflineService` connected to the sandbox as Alice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry
from sandbox.requestlog import RequestLog
from sync.crm.client import DataverseClient, RetryPolicy
from sync.offline.service import OfflineConnection, OfflineService
from sync.store.db import Database, open_database
from sync.store.models import Organization, SyncFilter

ALICE = "alice@contoso.example"
ORG = "contoso"


@dataclass
class Sandbox:
    server: Any
    tokens: TokenRegistry

    @property
    def api(self) -> str:
        return str(self.server.api_url(ORG))

    def http(self) -> httpx.Client:
        """A plain client as Alice on another device: the 'server-side' changes."""
        token = self.tokens.static_token(ALICE)
        return httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def client(self) -> DataverseClient:
        token = self.tokens.static_token(ALICE)
        return DataverseClient(
            self.api, lambda: token, retry=RetryPolicy(backoff=0.01, max_retries=0)
        )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    from sandbox.dataverse import DataverseServer

    tokens = TokenRegistry()
    server = DataverseServer(tokens, RequestLog(), FaultProfile(), port=0, demo_scale=0.1)
    server.start()
    try:
        yield Sandbox(server, tokens)
    finally:
        server.stop()


@pytest.fixture
def running(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox, started again if a test stopped it."""
    if sandbox.server._httpd is None:
        sandbox.server.start()
    yield sandbox
    if sandbox.server._httpd is None:
        sandbox.server.start()


def seed(db: Database) -> None:
    """The synchronizing organization and the built-in "my active contacts" offline filter."""
    with db.session() as session:
        session.add(
            Organization(
                id="org-contoso",
                unique_name=ORG,
                friendly_name="Contoso",
                url="http://127.0.0.1/contoso/",
                api_url="http://127.0.0.1/contoso/api/data/v9.2/",
                role="synchronizing",
            )
        )
        session.add(
            SyncFilter(
                kind="offline:contacts",
                name="offline-my-contacts",
                builtin=True,
                enabled=True,
                conditions=[
                    {"field": "_ownerid_value", "op": "eq", "value": "me"},
                    {"field": "statecode", "op": "eq", "value": 0},
                ],
            )
        )


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = open_database(tmp_path)
    seed(db)
    yield db
    db.dispose()


@pytest.fixture
def me(running: Sandbox) -> str:
    with running.client() as client:
        return str(client.who_am_i()["UserId"]).lower()


def connected(database: Database, sandbox: Sandbox, me: str) -> OfflineService:
    def connect() -> OfflineConnection:
        client = sandbox.client()
        return OfflineConnection("org-contoso", me, client, "UTC", client.close)

    return OfflineService(database, connect)


@pytest.fixture
def service(database: Database, running: Sandbox, me: str) -> OfflineService:
    return connected(database, running, me)
