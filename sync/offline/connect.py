"""The offline service of the app and the command line: CRM access from the stored profile.

Kept apart from the messaging connector (sync/connect.py): offline works on a computer that is
not the synchronizing one too (DESIGN.md §1.1 step 4), and needs only the organization and the
signed-in user, never the mailbox.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sync.crm.client import DataverseClient
from sync.offline.service import OfflineConnection, OfflineService, OfflineUnavailable
from sync.store.db import Database

SandboxInfo = Callable[[], Mapping[str, Any] | None]


def profile_connect(
    database: Database, data_dir: Path | str, sandbox_info: SandboxInfo
) -> Callable[[], OfflineConnection]:
    def connect() -> OfflineConnection:
        from sync.auth import dataverse_scope, provider_from_config
        from sync.setup.profile import Profile

        profile = Profile(database, data_dir)
        org = profile.synchronizing_org() or next(
            (o for o in (profile.connected_orgs() or [])), None
        )
        auth = profile.get("auth")
        if org is None or not auth:
            raise OfflineUnavailable("Sign in and choose an organization first (the wizard).")
        provider = provider_from_config(auth, data_dir, sandbox_info())
        client = DataverseClient(
            org.api_url,
            provider.token_callable([dataverse_scope(org.url)], profile.signed_in_upn),
        )
        user = profile.get("crm_user") or {}
        try:
            me = str(user.get("id") or client.who_am_i()["UserId"]).lower()
        except Exception:
            client.close()
            raise
        timezone = str(profile.get("timezone") or "UTC")
        return OfflineConnection(org.id, me, client, timezone, client.close)

    return connect


def offline_service(
    database: Database, data_dir: Path | str, sandbox_info: SandboxInfo, wait: float = 0
) -> OfflineService:
    return OfflineService(database, profile_connect(database, data_dir, sandbox_info), wait)
