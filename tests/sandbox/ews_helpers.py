"""What the sandbox EWS tests share: the user they act as and raw SOAP posts (below exchangelib)."""

from __future__ import annotations

from typing import Any

import requests

ALICE = "alice@contoso.example"
ALICE_LOGIN = (ALICE, "alice-Sandbox-1")
"""Alice's sandbox password login (basic auth), for requests sent without exchangelib."""


def post_soap(server: Any, body: bytes, auth: tuple[str, str] = ALICE_LOGIN) -> requests.Response:
    """POST a SOAP document to the sandbox's EWS endpoint, trusting only its test CA."""
    return requests.post(
        server.url,
        data=body,
        auth=auth,
        headers={"Content-Type": "text/xml; charset=utf-8"},
        verify=server.ca_file,
        timeout=10,
    )
