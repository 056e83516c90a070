"""Alembic environment: runs migrations on the engine handed over by `sync.store.db`."""

from __future__ import annotations

from alembic import context

from sync.store import models  # noqa: F401  (registers the tables on Base.metadata)
from sync.store.base import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
    )
    context.run_migrations()
