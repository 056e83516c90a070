"""Issue 14, point 5 (part): the Dataverse client sends its bearer token over HTTPS only; plain
HTTP is accepted for exactly the loopback hosts (the sandbox), by the parsed host name."""

from __future__ import annotations

import httpx
import pytest

from sync.crm.client import DataverseClient, InsecureUrl, check_secure_url
from sync.crm.discovery import discover_instances
from sync.sides import Invalid


def recording_client(api_url: str, seen: list[str], answer: dict | None = None) -> DataverseClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.scheme}://{request.url.host} {request.headers['authorization']}")
        return httpx.Response(200, json=answer if answer is not None else {"value": []})

    def token() -> str:
        seen.append("token asked")
        return "secret-token"

    return DataverseClient(api_url, token, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "url",
    [
        "http://contoso.crm.dynamics.com/api/data/v9.2/",
        "http://127.0.0.1.evil.example/api/data/v9.2/",
        "http://localhost.evil.example/api/data/v9.2/",
        "http://localhost@evil.example/api/data/v9.2/",
        "http://evil.example/127.0.0.1/api/data/v9.2/",
        "http://127.0.0.2/api/data/v9.2/",
        "http://[::2]/api/data/v9.2/",
        "ftp://127.0.0.1/api/data/v9.2/",
        "127.0.0.1/api/data/v9.2/",
        "https:///api/data/v9.2/",
    ],
)
def test_plain_http_to_another_computer_is_refused_before_any_request(url: str) -> None:
    seen: list[str] = []
    with pytest.raises(InsecureUrl) as refused:
        recording_client(url, seen)
    assert isinstance(refused.value, Invalid) and refused.value.code == "insecure_url"
    assert "https://" in refused.value.message
    assert seen == []  # no token asked for, nothing sent


@pytest.mark.parametrize(
    "url",
    [
        "https://contoso.crm.dynamics.com/api/data/v9.2/",
        "http://127.0.0.1:8080/contoso/api/data/v9.2/",
        "http://localhost:8080/contoso/api/data/v9.2/",
        "HTTP://LocalHost/contoso/api/data/v9.2/",
        "http://[::1]:8080/contoso/api/data/v9.2/",
    ],
)
def test_https_and_the_loopback_sandbox_are_accepted(url: str) -> None:
    check_secure_url(url)
    seen: list[str] = []
    with recording_client(url, seen, {"UserId": "u"}) as client:
        assert client.who_am_i() == {"UserId": "u"}
    assert seen[-1].endswith("Bearer secret-token")


def test_a_plain_http_link_from_the_service_is_not_followed() -> None:
    """A next-page link to another computer over plain HTTP would carry the token with it."""
    seen: list[str] = []
    page = {"value": [{"contactid": "1"}], "@odata.nextLink": "http://evil.example/next?page=2"}
    with recording_client("https://contoso.crm.dynamics.com/api/data/v9.2/", seen, page) as client:
        pages = client.iter_pages("contacts")
        assert next(pages) == [{"contactid": "1"}]
        with pytest.raises(InsecureUrl):
            next(pages)
    assert [s for s in seen if s != "token asked"] == [
        "https://contoso.crm.dynamics.com Bearer secret-token"
    ]


def test_discovery_over_plain_http_is_refused() -> None:
    with pytest.raises(InsecureUrl):
        discover_instances("http://globaldisco.example/api/discovery/v2.0/Instances", lambda: "t")
