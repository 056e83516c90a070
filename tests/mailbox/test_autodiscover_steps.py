"""Issue 10 point 6: Autodiscover's HTTP redirect and DNS SRV steps, per-server credentials
(OAuth resource, NTLM).

Microsoft behaviour relied on ("Autodiscover for Exchange", phase 3, and "Handling Autodiscover
error messages", office-developer-exchange-docs docs/exchange-web-services/): when no candidate
answered, "send an unauthenticated GET request to … "http://autodiscover." + domain +
"/autodiscover/autodiscover.xml". Note that this is NOT an SSL endpoint. If the server returns a
302 redirect response, you can then attempt to resend the Autodiscover request to the endpoint
URL in the Location header"; then "a DNS query for SRV records … "_autodiscover._tcp." + domain
… only use records that point to an SSL endpoint and that have the highest priority and
weight"; a 301/302 answer to the POST means resending it to the Location; a redirect URL is
followed only when it is HTTPS.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync.auth import ConsentRequired, ews_scope
from sync.mailbox.autodiscover import SrvRecord, discover, srv_urls
from sync.mailbox.ews_connection import BasicAuth, NtlmAuth, OAuthToken
from sync.setup.adapters import mailbox_auth
from sync.setup.ports import MailboxConfig
from sync.sides import AuthError
from tests.mailbox.ews_helpers import ALICE, password

RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
SETTINGS = (
    f'<Autodiscover><Response xmlns="{RESPONSE_NS}"><Account><Action>settings</Action>'
    "<Protocol><Type>EXPR</Type><EwsUrl>https://mail.contoso.example/EWS/Exchange.asmx</EwsUrl>"
    "</Protocol></Account></Response></Autodiscover>"
).encode()
EWS_URL = "https://mail.contoso.example/EWS/Exchange.asmx"
EMAIL = "ann@contoso.example"


@pytest.fixture(scope="module")
def ews_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A sandbox EWS with its plain-HTTP twin (the HTTP redirect method's first hop)."""
    from sandbox.ews import EwsServer
    from sandbox.faults import FaultProfile
    from sandbox.identity import TokenRegistry
    from sandbox.requestlog import RequestLog

    server = EwsServer(
        TokenRegistry(), RequestLog(), FaultProfile(), str(tmp_path_factory.mktemp("ews")),
        http_port=0, demo=False,
    )  # fmt: skip
    server.start()
    yield server
    server.stop()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"https://127.0.0.1:{port}/autodiscover/autodiscover.xml"


def test_the_http_redirect_method_against_the_sandbox(ews_http: Any) -> None:
    assert ews_http.http_url is not None
    probe = ews_http.http_url.replace("/EWS/Exchange.asmx", "/autodiscover/autodiscover.xml")
    found = discover(
        ALICE,
        lambda _url: BasicAuth(ALICE, password(ALICE)),
        ews_http.ca_file,
        lambda _email: [closed_port_url()],  # the HTTPS candidates do not answer
        redirect_probes=lambda _email: [probe],
        srv_lookup=lambda _name: [],
    )
    assert found == ews_http.url
    assert any(r.target == "autodiscover" and r.status == 302 for r in ews_http.log.snapshot())


class Recorder:
    """An httpx transport that answers from a table and records every request."""

    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.get((request.method, str(request.url)))
        if answer is None:
            raise httpx.ConnectError("no route", request=request)
        return answer(request) if callable(answer) else answer

    def asked(self, method: str) -> list[str]:
        return [str(r.url) for r in self.requests if r.method == method]


def _discover(recorder: Recorder, auth: Any, srv: Any = lambda _n: []) -> str:
    return discover(
        EMAIL,
        auth,
        srv_lookup=srv,
        transport=httpx.MockTransport(recorder),
    )


def test_the_redirect_is_unauthenticated_and_followed_to_https_only() -> None:
    probe = "http://autodiscover.contoso.example/autodiscover/autodiscover.xml"
    moved = "https://autodiscover-s.contoso.example/autodiscover/autodiscover.xml"
    recorder = Recorder(
        {
            ("GET", probe): httpx.Response(302, headers={"Location": moved}),
            ("POST", moved): httpx.Response(200, content=SETTINGS),
        }
    )
    assert _discover(recorder, lambda _url: BasicAuth("ann", "pw")) == EWS_URL
    [get] = [r for r in recorder.requests if r.method == "GET"]
    assert "Authorization" not in get.headers  # no credentials to a plain-HTTP address
    assert recorder.asked("POST")[-1] == moved

    plain = Recorder(
        {("GET", probe): httpx.Response(302, headers={"Location": "http://evil.example/a.xml"})}
    )
    with pytest.raises(Exception, match="no Exchange settings"):
        _discover(plain, lambda _url: BasicAuth("ann", "pw"))
    assert not any("evil.example" in u for u in plain.asked("POST") + plain.asked("GET"))


def test_srv_records_are_the_last_step() -> None:
    asked: list[str] = []

    def srv(name: str) -> list[SrvRecord]:
        asked.append(name)
        return [
            SrvRecord(0, 10, 443, "mail-b.contoso.example"),
            SrvRecord(0, 5, 443, "mail-c.contoso.example"),
            SrvRecord(0, 90, 80, "plain.contoso.example"),  # not an SSL endpoint
            SrvRecord(10, 99, 443, "backup.contoso.example"),  # a worse priority
        ]

    target = "https://mail-b.contoso.example/autodiscover/autodiscover.xml"
    recorder = Recorder({("POST", target): httpx.Response(200, content=SETTINGS)})
    assert _discover(recorder, lambda _url: BasicAuth("ann", "pw"), srv) == EWS_URL
    assert asked == ["_autodiscover._tcp.contoso.example"]
    assert recorder.asked("POST")[:2] == [
        "https://contoso.example/autodiscover/autodiscover.xml",
        "https://autodiscover.contoso.example/autodiscover/autodiscover.xml",
    ]  # the documented candidates first, then the redirect probe, then SRV
    assert recorder.asked("GET") == [
        "http://autodiscover.contoso.example/autodiscover/autodiscover.xml"
    ]
    assert recorder.asked("POST")[-1] == target


def test_srv_selection() -> None:
    records = [
        SrvRecord(1, 5, 443, "a.example"),
        SrvRecord(1, 7, 443, "b.example"),
        SrvRecord(1, 7, 443, "c.example"),
        SrvRecord(0, 1, 8443, "d.example"),
        SrvRecord(2, 50, 443, "e.example"),
    ]
    assert srv_urls(records) == [
        "https://b.example/autodiscover/autodiscover.xml",
        "https://c.example/autodiscover/autodiscover.xml",
    ]
    assert srv_urls([SrvRecord(0, 0, 80, "x.example")]) == []


def test_a_302_answer_to_the_post_is_resent_to_its_https_location() -> None:
    first = "https://contoso.example/autodiscover/autodiscover.xml"
    moved = "https://mail.contoso.example/autodiscover/autodiscover.xml"
    recorder = Recorder(
        {
            ("POST", first): httpx.Response(302, headers={"Location": moved}),
            ("POST", moved): httpx.Response(200, content=SETTINGS),
        }
    )
    assert _discover(recorder, lambda _url: BasicAuth("ann", "pw")) == EWS_URL


def test_a_server_without_a_token_is_skipped_and_the_consent_error_kept() -> None:
    good = "https://autodiscover.contoso.example/autodiscover/autodiscover.xml"
    recorder = Recorder({("POST", good): httpx.Response(200, content=SETTINGS)})
    no_resource = AuthError("invalid_resource: AADSTS500011", code="invalid_resource")
    missing = ConsentRequired("needs consent", [ews_scope()], "access to your mailbox (EWS)")

    def auth_for(url: str) -> Any:
        if url.startswith("https://contoso.example/"):
            raise no_resource  # the domain's web site is no resource of the tenant
        return OAuthToken(lambda: "token")

    assert _discover(recorder, auth_for) == EWS_URL
    assert [r.headers.get("Authorization") for r in recorder.requests if r.method == "POST"] == [
        "Bearer token"
    ]  # no request at all where no token could be had

    def no_consent_yet(url: str) -> Any:
        if url.startswith("https://contoso.example/"):
            raise no_resource
        raise missing

    with pytest.raises(ConsentRequired):  # the error the user can do something about
        _discover(Recorder({}), no_consent_yet)


def test_oauth_asks_exchange_online_or_the_servers_own_resource() -> None:
    """Exchange Online: `https://outlook.office365.com/EWS.AccessAsUser.All` ("Authenticate an
    EWS application by using OAuth"); on premises (hybrid modern authentication), the server's
    own URL is the resource, so the Autodiscover-reported origin."""
    online = "https://outlook.office365.com/EWS.AccessAsUser.All"
    assert ews_scope("https://outlook.office365.com/EWS/Exchange.asmx") == online
    assert ews_scope("https://autodiscover-s.outlook.com/autodiscover/autodiscover.xml") == online
    assert ews_scope("https://mail.contoso.com/EWS/Exchange.asmx") == (
        "https://mail.contoso.com/EWS.AccessAsUser.All"
    )
    asked: list[list[str]] = []

    class Provider:
        def token_callable(self, scopes: list[str], upn: str | None) -> Any:
            asked.append(scopes)
            return lambda: "t"

    config = MailboxConfig(type="exchange", email=EMAIL, auth="oauth")
    auth_for = mailbox_auth(config, {}, lambda: Provider(), EMAIL)
    auth_for("https://autodiscover-s.outlook.com/autodiscover/autodiscover.xml")
    auth_for("https://mail.contoso.com/EWS/Exchange.asmx")
    assert asked == [[online], ["https://mail.contoso.com/EWS.AccessAsUser.All"]]
    ntlm = mailbox_auth(
        MailboxConfig(type="exchange", email=EMAIL, auth="ntlm", username="CONTOSO\\ann"),
        {"mailbox_password": "pw"},
        lambda: Provider(),
        EMAIL,
    )("https://mail.contoso.com/EWS/Exchange.asmx")
    assert ntlm == NtlmAuth("CONTOSO\\ann", "pw")


def test_autodiscover_signs_in_with_ntlm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NTLM over HTTP: negotiate, the 401's `WWW-Authenticate: NTLM <challenge>`, authenticate
    (MS-NTHT); checked by pyspnego's own NTLM acceptor."""
    import spnego

    users = tmp_path / "ntlm_users"
    users.write_text("CONTOSO:ann:Pa55-word\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    url = "https://contoso.example/autodiscover/autodiscover.xml"
    acceptor: dict[str, Any] = {}
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        header = request.headers.get("Authorization", "")
        seen.append(header)
        scheme, _, token = header.partition(" ")
        if scheme != "NTLM":
            return httpx.Response(401, headers={"WWW-Authenticate": "NTLM"})
        raw = base64.b64decode(token)
        if raw[8:9] == b"\x01":  # NEGOTIATE_MESSAGE
            acceptor["context"] = spnego.server(protocol="ntlm")
            challenge = acceptor["context"].step(raw)
            return httpx.Response(
                401, headers={"WWW-Authenticate": "NTLM " + base64.b64encode(challenge).decode()}
            )
        try:
            acceptor["context"].step(raw)
        except spnego.exceptions.SpnegoError:
            return httpx.Response(401, headers={"WWW-Authenticate": "NTLM"})
        return httpx.Response(200, content=SETTINGS)

    recorder = Recorder({("POST", url): answer})
    assert _discover(recorder, lambda _url: NtlmAuth("CONTOSO\\ann", "Pa55-word")) == EWS_URL
    assert len(seen) == 2 and all(h.startswith("NTLM ") for h in seen)
    assert not any("Pa55-word" in str(r.headers) for r in recorder.requests)

    with pytest.raises(AuthError):
        discover(
            EMAIL,
            lambda _url: NtlmAuth("CONTOSO\\ann", "wrong"),
            candidates=lambda _e: [url],
            redirect_probes=lambda _e: [],
            srv_lookup=lambda _n: [],
            transport=httpx.MockTransport(Recorder({("POST", url): answer})),
        )
