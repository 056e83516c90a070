"""Autodiscover (POX) against the sandbox's Autodiscover service over HTTPS."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from sync.mailbox.autodiscover import MAX_REDIRECTS, candidate_urls, discover, parse_answer
from sync.mailbox.ews_connection import BasicAuth, OAuthToken
from sync.sides import AuthError, Invalid
from tests.mailbox.ews_helpers import ALICE, BOB, password


def service(ews: Any) -> str:
    return ews.url.replace("/EWS/Exchange.asmx", "/autodiscover/autodiscover.xml")


def basic(upn: str) -> Any:
    return lambda _url: BasicAuth(upn, password(upn))


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"https://127.0.0.1:{port}/autodiscover/autodiscover.xml"


def test_the_ews_address_is_found_with_a_password_or_a_token(ews: Any) -> None:
    here = lambda _email: [service(ews)]  # noqa: E731
    assert discover(ALICE, basic(ALICE), ews.ca_file, here) == ews.url
    token = ews.tokens.static_token(BOB)
    assert discover(BOB, lambda _url: OAuthToken(lambda: token), ews.ca_file, here) == ews.url


def test_a_silent_candidate_is_skipped_and_the_next_one_asked(ews: Any) -> None:
    urls = lambda _email: [closed_port_url(), service(ews)]  # noqa: E731
    assert discover(ALICE, basic(ALICE), ews.ca_file, urls) == ews.url


def test_a_redirect_to_another_address_is_followed(ews: Any) -> None:
    ews.autodiscover_redirects["alice@old-domain.example"] = ALICE
    asked: list[str] = []

    def candidates(email: str) -> list[str]:
        asked.append(email)
        return [service(ews)]

    assert discover("alice@old-domain.example", basic(ALICE), ews.ca_file, candidates) == ews.url
    assert asked == ["alice@old-domain.example", ALICE]


def test_a_redirect_loop_ends_with_a_clear_error(ews: Any) -> None:
    ews.autodiscover_redirects["loop-a@contoso.example"] = "loop-b@contoso.example"
    ews.autodiscover_redirects["loop-b@contoso.example"] = "loop-a@contoso.example"
    with pytest.raises(Invalid, match="Type the EWS address") as refused:
        discover("loop-a@contoso.example", basic(ALICE), ews.ca_file, lambda _e: [service(ews)])
    assert refused.value.message.count(service(ews)) == MAX_REDIRECTS + 1


def test_an_unknown_address_or_wrong_password_says_what_to_do(ews: Any) -> None:
    here = lambda _email: [service(ews)]  # noqa: E731
    offline = {"redirect_probes": lambda _e: [], "srv_lookup": lambda _n: []}  # no DNS here
    with pytest.raises(Invalid, match="no Exchange settings for nobody@contoso.example"):
        discover("nobody@contoso.example", basic(ALICE), ews.ca_file, here, **offline)
    wrong = lambda _url: BasicAuth(ALICE, "wrong")  # noqa: E731
    with pytest.raises(AuthError):
        discover(ALICE, wrong, ews.ca_file, here, **offline)


def test_the_documented_places_and_answers() -> None:
    assert candidate_urls("Ann@Contoso.COM") == [
        "https://contoso.com/autodiscover/autodiscover.xml",
        "https://autodiscover.contoso.com/autodiscover/autodiscover.xml",
    ]
    response_ns = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    inside_only = (
        f'<Autodiscover><Response xmlns="{response_ns}"><Account><Action>settings</Action>'
        "<Protocol><Type>EXCH</Type><EwsUrl>https://mbx.internal/EWS/Exchange.asmx</EwsUrl>"
        "</Protocol></Account></Response></Autodiscover>"
    ).encode()
    assert parse_answer(inside_only).ews_url == "https://mbx.internal/EWS/Exchange.asmx"
    assert parse_answer(b"<html>not autodiscover</html>").error
    assert parse_answer(b"not xml at all").error == "the answer is not XML"
