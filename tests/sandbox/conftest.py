"""Fixtures of the sandbox EWS tests: one server per test module, and Alice's account on it.

A module gets the demo mailboxes by setting `DEMO = True`; otherwise the mailboxes start empty.
Modules that need another server (the Dataverse tests) define their own `server` fixture."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.ews.testing import account, register_crmid, running_server
from tests.sandbox.ews_helpers import ALICE


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    with running_server(demo=getattr(request.module, "DEMO", False)) as srv:
        yield srv


@pytest.fixture(scope="module")
def alice(server: Any) -> Any:
    """Alice's exchangelib account, with the `crmid` key property registered as the adapter has."""
    register_crmid()
    return account(server, ALICE)
