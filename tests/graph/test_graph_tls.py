"""Graph over HTTPS only, TLS 1.2 or later, certificates checked (issue 10 moved this here from
the Dataverse client: both share `tls_context`). Microsoft Graph requires TLS 1.2 (Microsoft's
"TLS 1.0 and 1.1 deprecation for Microsoft Graph"); an untrusted certificate fails at once,
without retries, and a plain-HTTP address that is not this computer is refused before any
request."""

from __future__ import annotations

import ssl

import pytest

from sandbox.tls import TlsMaterial
from sync.crm.client import InsecureUrl
from sync.graph.client import GraphClient
from sync.sides import Unavailable
from tests.crm.test_crm_tls import https_server  # noqa: F401 (the fixture)


def test_graph_trusts_only_the_given_ca_over_tls_1_2(
    https_server: tuple[str, TlsMaterial],  # noqa: F811
) -> None:
    url, material = https_server
    trusted = GraphClient(url, lambda: "t", verify=material.ca_file)
    try:
        assert trusted.get("me") == {"UserId": "u-1"}
        context = trusted._http._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    finally:
        trusted.close()
    waits: list[float] = []
    untrusted = GraphClient(url, lambda: "t", sleep=waits.append)
    try:
        with pytest.raises(Unavailable):
            untrusted.get("me")
        assert untrusted.request_count == 1 and waits == []
    finally:
        untrusted.close()


def test_plain_http_to_another_computer_is_refused() -> None:
    with pytest.raises(InsecureUrl):
        GraphClient("http://graph.example.com/v1.0", lambda: "t")
