"""Fixtures of the end-to-end tests: a sandbox Dataverse + EWS pair per module, alice's agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.store.db import Database
from tests.e2e.harness import SandboxPair, start_pair


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPair]:
    """An empty sandbox Dataverse (users only) and an empty EWS, on free ports, per module."""
    with start_pair(tmp_path_factory.mktemp("e2e")) as running:
        yield running


@pytest.fixture
def fresh_pair(tmp_path: Path) -> Iterator[SandboxPair]:
    """A pair of its own for one test (servers start in a fraction of a second)."""
    with start_pair(tmp_path) as running:
        yield running


@pytest.fixture
def alice_token(pair: SandboxPair) -> str:
    """Alice's static bearer token, accepted by both servers of the pair."""
    return pair.token


@pytest.fixture
def database(pair: SandboxPair) -> Database:
    """An empty local database (SQLite, migrated) in the module's temporary directory."""
    return pair.new_database()
