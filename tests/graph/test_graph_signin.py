"""Graph scopes through the shared sandbox identity provider: a token carries the Graph
permissions consented to, and the sandbox Graph answers 403 ErrorAccessDenied outside them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msal
import pytest
import requests

from sandbox.faults import FaultProfile
from sandbox.graph import GraphServer
from sandbox.identity import TokenRegistry
from sandbox.idp import SANDBOX_CLIENT_ID, IdentityServer
from sandbox.requestlog import RequestLog
from sync.graph.client import SCOPES
from tests.auth.helpers import ALICE, answer_of, sign_in

REDIRECT = "http://127.0.0.1:8765/signin/callback"
CONTACTS_READ = "https://graph.microsoft.com/Contacts.Read"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IdentityServer, GraphServer]]:  # fmt: skip
    tokens, log, faults = TokenRegistry(), RequestLog(), FaultProfile()
    work: Path = tmp_path_factory.mktemp("graph-signin")
    idp = IdentityServer(tokens, log, faults, tls_dir=str(work / "idp"))
    graph = GraphServer(tokens, log, faults, str(work))
    idp.start()
    graph.start()
    try:
        yield idp, graph
    finally:
        graph.stop()
        idp.stop()


def _token(idp: IdentityServer, scopes: list[str]) -> dict[str, object]:
    browser = requests.Session()
    browser.verify = idp.ca_file
    browser.trust_env = False
    app = msal.PublicClientApplication(
        SANDBOX_CLIENT_ID, authority=idp.authority, instance_discovery=False, http_client=browser
    )
    flow = app.initiate_auth_code_flow(scopes, redirect_uri=REDIRECT, response_mode="form_post")
    answer = answer_of(sign_in(browser, flow["auth_uri"], *ALICE))
    result: dict[str, object] = app.acquire_token_by_auth_code_flow(flow, answer)
    assert "error" not in result, result
    return result


def _get(graph: GraphServer, token: object, path: str, method: str = "GET") -> requests.Response:
    body = {"givenName": "x"} if method == "POST" else None
    return requests.request(
        method, f"{graph.url}/{path}", json=body, verify=graph.ca_file,
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip


def test_token_with_all_graph_scopes_reaches_every_area(
    servers: tuple[IdentityServer, GraphServer],
) -> None:
    """permissions-reference.md: the six delegated permissions the Graph side asks for."""
    idp, graph = servers
    result = _token(idp, list(SCOPES))
    assert set(str(result["scope"]).split()) == set(SCOPES)
    token = result["access_token"]
    for path in ("me/contacts", "me/mailFolders/inbox/messages", "me/events", "me/todo/lists",
                 "me/mailboxSettings"):  # fmt: skip
        assert _get(graph, token, path).status_code == 200, path


def test_token_without_the_scope_is_403_access_denied(
    servers: tuple[IdentityServer, GraphServer],
) -> None:
    """A Contacts.Read token reads contacts, cannot create one, cannot read mail: 403 with
    Graph's ErrorAccessDenied body."""
    idp, graph = servers
    token = _token(idp, [CONTACTS_READ])["access_token"]
    assert _get(graph, token, "me/contacts").status_code == 200
    for answer in (_get(graph, token, "me/contacts", "POST"), _get(graph, token, "me/messages")):
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "ErrorAccessDenied"
        assert answer.json()["error"]["message"] == (
            "Access is denied. Check credentials and try again."
        )


def test_graph_scopes_need_consent_per_scope(servers: tuple[IdentityServer, GraphServer]) -> None:
    """In the IdP's per-user consent mode a Graph permission is consented to per scope, as
    the Dataverse scope is (sandbox/idp/consent.py)."""
    idp, _graph = servers
    idp.consent_mode = "user"
    try:
        idp.consents.grant(ALICE[0], [CONTACTS_READ])
        assert idp.consents.missing(ALICE[0], [CONTACTS_READ]) == []
        assert idp.consents.missing(ALICE[0], list(SCOPES)) == list(SCOPES)
    finally:
        idp.consent_mode = "granted"
