"""Keeping a sandbox-mode profile pointed at the sandbox that runs now.

The sandbox listens on free ports and keeps its data in memory, so every start is a new
sandbox at new addresses with fresh demo data (the same record ids: demo data is seeded
deterministically). A profile made against an earlier start would point at dead URLs and hold
links to mailbox items that no longer exist; here it is moved to the running sandbox and, when
that sandbox is fresh, its sync state is reset so the next run is an initial sync again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select

from sync.setup.addresses import is_loopback
from sync.store.db import Database
from sync.store.models import ItemError, Link, Organization, Setting, SyncToken

INFO_FILE = "sandbox.json"


def write_info(directory: Path, info: Mapping[str, Any]) -> Path:
    """Save describe() (it holds tokens: mode 0600) for `--sandbox-json` and scripts."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / INFO_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle, indent=2)
    return path


class SandboxInfoError(Exception):
    """A sandbox description cannot be used; the text names the file and what to do.

    The command line reports it as bad input (exit 2): carrying on without it would only fail
    later with "the sandbox is not running", far from the mistyped path."""


def read_info(path: str | Path) -> dict[str, Any]:
    """The describe() JSON saved in `path`; raises SandboxInfoError."""
    try:
        info = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SandboxInfoError(
            f"The sandbox description {path} does not exist. Start the sandbox with "
            "`run.py sandbox --json > FILE` (or `run.py sandbox`, which names its file) and "
            "pass that file."
        ) from None
    except (OSError, ValueError) as error:
        raise SandboxInfoError(f"Cannot read the sandbox description {path}: {error}") from None
    if not isinstance(info, dict) or "organizations" not in info or "ews_url" not in info:
        raise SandboxInfoError(f"{path} is not the output of `run.py sandbox --json`.")
    return info


def _on_this_computer(url: Any) -> bool:
    """A URL of a sandbox (which only ever listens on this computer)."""
    try:
        return isinstance(url, str) and is_loopback(urlsplit(url).hostname)
    except ValueError:
        return False


def adopt_sandbox(database: Database, info: Mapping[str, Any], fresh: bool) -> None:
    """Point stored organizations and the mailbox at `info`; reset sync state when `fresh`."""
    orgs = {org["unique_name"]: org for org in info["organizations"]}
    with database.session() as session:
        for row in session.scalars(select(Organization)):
            org = orgs.get(row.unique_name)
            if org is not None:
                row.url, row.api_url = org["url"], org["api_url"]
        mailbox = session.get(Setting, "mailbox")
        if mailbox is not None and isinstance(mailbox.value, dict):
            value = dict(mailbox.value)
            if value.get("type") == "exchange" and _on_this_computer(value.get("ews_url")):
                value["ews_url"] = info["ews_url"]
                mailbox.value = value
        if fresh:
            for model in (Link, SyncToken, ItemError):
                session.execute(delete(model))
