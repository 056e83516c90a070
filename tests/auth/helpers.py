"""Helpers for the sign-in tests: the IdP handle and a scripted browser's steps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from urllib.parse import parse_qsl, urlsplit

import requests

from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry
from sandbox.idp import IdentityServer
from sandbox.requestlog import RequestLog

ALICE = ("alice@contoso.example", "alice-Sandbox-1")


@dataclass
class Idp:
    server: IdentityServer
    tokens: TokenRegistry
    log: RequestLog
    faults: FaultProfile

    @property
    def authority(self) -> str:
        return self.server.authority


def login_handle(html: str) -> str:
    match = re.search(r'name="login" value="([^"]+)"', html)
    assert match, "no login form in the page"
    return match.group(1)


def sign_in(browser: requests.Session, auth_uri: str, upn: str, password: str) -> requests.Response:
    """Open the authorize page, post the login form; the IdP's answer (redirect not followed)."""
    page = browser.get(auth_uri)
    assert page.status_code == 200, page.text
    action = urlsplit(auth_uri)._replace(query="").geturl()
    return browser.post(
        action,
        data={"login": login_handle(page.text), "upn": upn, "password": password, "action": "x"},
        allow_redirects=False,
    )


def answer_of(response: requests.Response) -> dict[str, str]:
    """What the IdP sends to the redirect URI: the query of a redirect, or a form_post's fields."""
    if response.status_code == 302:
        return dict(parse_qsl(urlsplit(response.headers["Location"]).query))
    assert response.status_code == 200, response.text
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', response.text)
    assert fields, "no form_post fields in the answer"
    return {name: unescape(value) for name, value in fields}


def form_action(response: requests.Response) -> str:
    match = re.search(r'<form method="post" action="([^"]+)"', response.text)
    assert match
    return unescape(match.group(1))
