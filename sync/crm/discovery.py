"""Global Discovery: which Dataverse organizations (environments) the signed-in user can use.

`GET https://globaldisco.crm.dynamics.com/api/discovery/v2.0/Instances` (its own token scope)
answers `{"value": [{"Id", "UniqueName", "FriendlyName", "Url", "ApiUrl", "Version", "State",
…}]}`. `ApiUrl` is the host of the Web API (no `/api/data/…` path on the real service), so the
Web API root is built from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from sync.crm.client import DataverseClient

WEB_API_PATH = "api/data/v9.2/"


@dataclass(frozen=True)
class Instance:
    """One organization the user may sign in to."""

    id: str
    unique_name: str
    friendly_name: str
    url: str
    api_url: str
    """The Web API root, ending in `/api/data/v9.2/`."""
    version: str
    state: int
    """0 = enabled, 1 = disabled."""


def web_api_url(api_url: str | None, url: str) -> str:
    """The Web API root from an instance's `ApiUrl` (or its `Url` when absent)."""
    base = (api_url or url).strip()
    if "/api/data/" in base:
        return base if base.endswith("/") else base + "/"
    return base.rstrip("/") + "/" + WEB_API_PATH


def instance_from(row: Mapping[str, Any]) -> Instance:
    url = str(row.get("Url") or "")
    return Instance(
        id=str(row.get("Id") or "").lower(),
        unique_name=str(row.get("UniqueName") or ""),
        friendly_name=str(row.get("FriendlyName") or row.get("UniqueName") or ""),
        url=url if url.endswith("/") or not url else url + "/",
        api_url=web_api_url(row.get("ApiUrl"), url),
        version=str(row.get("Version") or ""),
        state=int(row.get("State") or 0),
    )


def discover_instances(
    discovery_url: str,
    token_provider: Callable[[], str],
    verify: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[Instance]:
    """The organizations the token's user has, sorted by friendly name (typed errors as the
    client raises them: AuthError for a refused token, Unavailable after retries)."""
    root, _, leaf = discovery_url.rstrip("/").rpartition("/")
    with DataverseClient(root + "/", token_provider, verify=verify, transport=transport) as client:
        data = client.get_json(leaf)
    rows = data.get("value", []) if isinstance(data, Mapping) else []
    return sorted((instance_from(r) for r in rows), key=lambda i: i.friendly_name.lower())
