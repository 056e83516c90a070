"""Issue 14, point 3, against the sandbox identity provider: a refused access token is replaced
through the refresh token, a refused refresh token means "sign in again", the identity provider
answering 429/5xx is retried a bounded number of times and then reported in words, and a valid
cached token costs no request to the identity provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import sync.auth
from sandbox.faults import Fault
from sandbox.idp import SANDBOX_CLIENT_ID
from sync.auth import SignInRequired, TokenProvider, TokenSource
from sync.sides import Unavailable
from tests.auth.helpers import ALICE, Idp, answer_of, sign_in

REDIRECT = "http://127.0.0.1:8765/signin/callback"
CONTOSO = "http://127.0.0.1:9/contoso/user_impersonation"
FAST = (0.05, 0.05)
"""Retry pauses for these tests: the real ones are seconds."""
TOKEN_PATH = "oauth2/v2.0/token"


@pytest.fixture(autouse=True)
def no_faults_after(idp: Idp) -> Iterator[None]:
    """The identity provider is shared by the module: a test's faults end with it."""
    yield
    idp.faults.clear()


def provider_for(idp: Idp, cache_path: Path, **options: object) -> TokenProvider:
    options.setdefault("retry_waits", FAST)
    return TokenProvider(
        idp.authority,
        SANDBOX_CLIENT_ID,
        cache_path,
        ca_file=idp.server.ca_file,
        sandbox=True,
        allow_plaintext=True,
        **options,  # type: ignore[arg-type]
    )


def signed_in(idp: Idp, browser: requests.Session, cache_path: Path) -> TokenProvider:
    provider = provider_for(idp, cache_path)
    flow = provider.begin(REDIRECT, [CONTOSO])
    provider.complete(flow, answer_of(sign_in(browser, flow["auth_uri"], *ALICE)))
    return provider


def token_requests(idp: Idp) -> list[int]:
    """The statuses of the token endpoint's answers so far, in order."""
    return [e.status for e in idp.log if e.service == "identity" and TOKEN_PATH in e.target]


def test_a_revoked_access_token_is_replaced_through_the_refresh_token(
    idp: Idp, browser: requests.Session, cache_path: Path
) -> None:
    source = signed_in(idp, browser, cache_path).token_callable([CONTOSO], ALICE[0])
    assert isinstance(source, TokenSource)
    first = source()
    assert idp.server.revoke_access_tokens(ALICE[0]) >= 1
    assert idp.tokens.user_for(first) is None  # every service now answers 401 to it
    assert source() == first  # msal's cache still holds it: asking again does not help

    fresh = source.refresh()
    assert fresh != first
    assert idp.tokens.user_for(fresh).upn == ALICE[0]  # type: ignore[union-attr]
    assert source() == fresh  # the cache now hands out the new token
    refreshes = [e for e in idp.log if e.detail.startswith("refresh_token")]
    assert refreshes and refreshes[-1].user == ALICE[0]


def test_a_refused_refresh_token_means_sign_in_again(
    idp: Idp, browser: requests.Session, cache_path: Path
) -> None:
    source = signed_in(idp, browser, cache_path).token_callable([CONTOSO], ALICE[0])
    source()
    idp.server.revoke_user(ALICE[0])
    idp.server.revoke_access_tokens(ALICE[0])
    with pytest.raises(SignInRequired) as caught:
        source.refresh()
    error = caught.value
    assert error.code == "invalid_grant" and error.username == ALICE[0]
    assert "Sign in again" in error.message and "AADSTS50173" in error.message


def test_no_account_is_sign_in_required(idp: Idp, cache_path: Path) -> None:
    with pytest.raises(SignInRequired, match="not signed in"):
        provider_for(idp, cache_path).token_for([CONTOSO], ALICE[0])


def test_a_passing_503_of_the_identity_provider_is_retried(
    idp: Idp, browser: requests.Session, cache_path: Path
) -> None:
    source = signed_in(idp, browser, cache_path).token_callable([CONTOSO], ALICE[0])
    before = len(token_requests(idp))
    idp.faults.set(Fault.parse(f"503:times=2,match={TOKEN_PATH}"))
    fresh = source.refresh()
    assert idp.tokens.user_for(fresh) is not None
    assert token_requests(idp)[before:] == [503, 503, 200]


def test_a_lasting_503_is_reported_in_words_after_bounded_attempts(
    idp: Idp, browser: requests.Session, cache_path: Path
) -> None:
    source = signed_in(idp, browser, cache_path).token_callable([CONTOSO], ALICE[0])
    before = len(token_requests(idp))
    idp.faults.set(Fault.parse(f"503:every=1,match={TOKEN_PATH}"))
    with pytest.raises(Unavailable) as caught:
        source.refresh()
    message = caught.value.message
    assert "503 Service Unavailable 3 times in a row" in message
    assert "AADSTS50033" in message and "next run" in message
    assert "Traceback" not in message and caught.value.code == "503"
    assert token_requests(idp)[before:] == [503, 503, 503]

    # msal did not keep the 503 to replay it: once the service is back, it is asked again
    idp.faults.clear()
    assert idp.tokens.user_for(source.refresh()) is not None


def test_a_long_retry_after_ends_the_attempt_at_once(
    idp: Idp, browser: requests.Session, cache_path: Path
) -> None:
    source = signed_in(idp, browser, cache_path).token_callable([CONTOSO], ALICE[0])
    before = len(token_requests(idp))
    idp.faults.set(Fault.parse(f"429:every=1,delay=600,match={TOKEN_PATH}"))
    with pytest.raises(Unavailable, match="asked to wait 600 s"):
        source.refresh()
    assert token_requests(idp)[before:] == [429]


def test_a_503_on_the_openid_configuration_is_unavailable_in_words(
    idp: Idp, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync.auth, "_APPS", {})  # as in a process that never asked
    idp.faults.set(Fault.parse("503:every=1,match=openid-configuration"))
    with pytest.raises(Unavailable) as caught:
        provider_for(idp, cache_path).accounts()
    assert "answered 503 Service Unavailable 3 times in a row" in caught.value.message
    assert idp.log.count(service="identity", method="GET", status=503) >= 3


def test_a_valid_cached_token_needs_no_request_to_the_identity_provider(
    idp: Idp, browser: requests.Session, cache_path: Path
) -> None:
    token = signed_in(idp, browser, cache_path).token_callable([CONTOSO], ALICE[0])()
    seen = len(idp.log)
    # the next runs: each builds its own provider (sync.connect does) on the same cache
    for _ in range(2):
        again = provider_for(idp, cache_path).token_callable([CONTOSO], ALICE[0])
        assert again() == token
    assert [f"{e.method} {e.target}" for e in list(idp.log)[seen:]] == []
