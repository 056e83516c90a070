"""A sandbox identity provider over real HTTPS for the sign-in tests (module-scoped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry
from sandbox.idp import IdentityServer
from sandbox.requestlog import RequestLog
from tests.auth.helpers import Idp


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    tokens, log, faults = TokenRegistry(), RequestLog(), FaultProfile()
    server = IdentityServer(tokens, log, faults, tls_dir=str(tmp_path_factory.mktemp("idp-tls")))
    server.start()
    yield Idp(server, tokens, log, faults)
    server.stop()


@pytest.fixture
def browser(idp: Idp) -> Iterator[requests.Session]:
    """A requests session that trusts only the sandbox CA, like a browser that was told to."""
    session = requests.Session()
    session.verify = idp.server.ca_file
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace `verify`
    yield session
    session.close()
    idp.faults.clear()
    idp.server.access_token_lifetime = 3600.0


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "token_cache.bin"
