"""Signing in, without Flask: the choices the Sign-in page and `run.py signin` share.

The web page signs in through the browser (authorization code flow); `run.py signin` through
the device code flow (print a page and a code, wait), for a computer with no browser or a
script. Both validate the same choices, ask for the same first scope (Global Discovery: the
next step lists the organizations) and remember the same settings afterwards.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sync.auth import (
    MICROSOFT_AUTHORITY,
    SIGN_IN_ALERT,
    Account,
    TokenProvider,
    discovery_scope,
    provider_from_config,
)
from sync.messages import N_
from sync.runs import raise_alert, resolve_alerts
from sync.settings import get_setting, set_setting
from sync.store.db import Database

PLAINTEXT_ALERT = "token_cache_unencrypted"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")


def sandbox_config(info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The sign-in choice "the sandbox"; ValueError when it is not running."""
    if info is None:
        raise ValueError("The sandbox is not running. Start the app without a tenant.")
    return {
        "provider": "sandbox",
        "authority": str(info["authority"]).rstrip("/"),
        "client_id": str(info["client_id"]),
    }


def microsoft_config(client_id: str, tenant: str) -> dict[str, Any]:
    """The sign-in choice "Microsoft Entra ID" with an app registration; ValueError if bad."""
    client_id, tenant = client_id.strip(), tenant.strip() or "organizations"
    if not _GUID.match(client_id):
        raise ValueError(
            "Enter the application (client) ID of your app registration: a GUID like "
            "00000000-0000-0000-0000-000000000000."
        )
    if not _TENANT.match(tenant):
        raise ValueError("Enter a tenant ID or domain, or leave 'organizations'.")
    authority = MICROSOFT_AUTHORITY.rsplit("/", 1)[0] + "/" + tenant
    return {"provider": "microsoft", "authority": authority, "client_id": client_id}


def sign_in_scopes(config: Mapping[str, Any], info: Mapping[str, Any] | None) -> list[str]:
    """Global Discovery at sign-in, so the next step can list the organizations at once."""
    if config["provider"] == "sandbox":
        return [discovery_scope((info or {}).get("discovery_url"))]
    return [discovery_scope()]


PLAINTEXT_ACKNOWLEDGED = "token_cache_plaintext_acknowledged"
"""The user chose "keep unencrypted, I understand" on the alert: it is not raised again."""


def note_unencrypted_cache(database: Database, command: str | None = None) -> None:
    """The alert that says the token cache is kept in clear (the user agreed), with the
    command that would let it be encrypted; never again once the user acknowledged it."""
    if get_setting(database, PLAINTEXT_ACKNOWLEDGED):
        return
    fix = (
        N_(
            "To encrypt them, run `%(command)s`, then sign out and sign in again. Or keep "
            "them as they are: choose “Keep unencrypted, I understand” and this alert is not "
            "shown again.",
            command=command,
        )
        if command
        else N_(
            "To encrypt them, install and unlock a keyring, then sign out and sign in again. "
            "Or keep them as they are: choose “Keep unencrypted, I understand” and this alert "
            "is not shown again."
        )
    )
    raise_alert(
        database,
        PLAINTEXT_ALERT,
        N_("Sign-in tokens are stored unencrypted"),
        N_(
            "This computer has no keyring Mailbox Sync can use, so the sign-in tokens and "
            "passwords are kept in a file in the data folder that only your user account may "
            "read (you agreed to this at sign-in)."
        ),
        fix,
    )


def acknowledge_unencrypted_cache(database: Database) -> None:
    """The user keeps the unencrypted cache knowingly: settle the alert for good."""
    set_setting(database, PLAINTEXT_ACKNOWLEDGED, True)
    resolve_alerts(database, PLAINTEXT_ALERT)


def encryption_fix() -> str | None:
    """The command that would let the cache be encrypted on this computer, if known."""
    from sync.auth import EncryptionUnavailable, open_token_cache

    probe = Path(tempfile.mkdtemp(prefix="mbs-keyring-")) / "probe.bin"
    try:
        open_token_cache(probe, allow_plaintext=False)
    except EncryptionUnavailable as missing:
        return missing.command
    finally:
        shutil.rmtree(probe.parent, ignore_errors=True)
    return None


def remember_choice(database: Database, config: Mapping[str, Any]) -> None:
    """Keep the Microsoft app registration for the next sign-in's form."""
    if config["provider"] == "microsoft":
        set_setting(database, "microsoft_client_id", config["client_id"])
        set_setting(database, "microsoft_tenant", str(config["authority"]).rsplit("/", 1)[1])


def remember_sign_in(database: Database, config: Mapping[str, Any], account: Account) -> None:
    """After a sign-in: who is signed in, with which choice; the sign-in alert is settled."""
    set_setting(database, "account_upn", account.username)
    set_setting(database, "auth", {**config, "username": account.username})
    set_setting(database, "mode", "sandbox" if config["provider"] == "sandbox" else "tenant")
    resolve_alerts(database, SIGN_IN_ALERT)


def device_sign_in(
    database: Database,
    data_dir: str | Path,
    config: Mapping[str, Any],
    info: Mapping[str, Any] | None,
    show: Callable[[str], None],
    approve: Callable[[Mapping[str, Any]], None] | None = None,
) -> Account:
    """Sign in with the device code flow: `show` gets the instructions (the page and the code),
    `approve` (scripted sandbox sign-ins only) may answer the page itself; then wait for the
    user and remember the sign-in. Raises EncryptionUnavailable (no keyring and no consent to
    a plaintext cache) and SideError (refused, cancelled, expired, unreachable)."""
    provider: TokenProvider = provider_from_config(config, data_dir, info)
    if not provider.cache_is_encrypted:
        set_setting(database, "token_cache_plaintext_consent", True)
        note_unencrypted_cache(database, encryption_fix())
    remember_choice(database, config)
    flow = provider.start_device_flow(sign_in_scopes(config, info))
    show(str(flow.get("message") or ""))
    if approve is not None:
        approve(flow)
    account = provider.finish_device_flow(flow)
    remember_sign_in(database, config, account)
    return account
