"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest

from sync.engine import MemoryLinkStore
from sync.memory import MemoryCrm, MemoryMailbox
from tests.engine.engine_world import ME, World


@pytest.fixture
def world() -> World:
    return World(MemoryCrm(me=ME), MemoryMailbox(), MemoryLinkStore())
