"""Getters for what the app factory put on the app (database, service, scheduler)."""

from __future__ import annotations

from flask import current_app

from sync.scheduler import SyncScheduler
from sync.service import SyncService
from sync.store.db import Database


def database() -> Database:
    db: Database = current_app.extensions["mailbox_sync.database"]
    return db


def service() -> SyncService:
    svc: SyncService = current_app.extensions["mailbox_sync.service"]
    return svc


def scheduler() -> SyncScheduler | None:
    sched: SyncScheduler | None = current_app.extensions.get("mailbox_sync.scheduler")
    return sched
