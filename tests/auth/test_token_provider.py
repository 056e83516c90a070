"""sync/auth.py against the sandbox identity provider: sign in, silent tokens, the cache."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
import requests

from sandbox.faults import Fault, FaultProfile
from sandbox.identity import TokenRegistry
from sandbox.idp import SANDBOX_CLIENT_ID, IdentityServer
from sandbox.requestlog import RequestLog
from sync.auth import (
    EncryptionUnavailable,
    TokenProvider,
    dataverse_scope,
    discovery_scope,
    ews_scope,
    open_token_cache,
    provider_from_config,
)
from sync.sides import AuthError, Unavailable
from tests.auth.helpers import ALICE, Idp, answer_of, sign_in

REDIRECT = "http://127.0.0.1:8765/signin/callback"
DISCOVERY = "http://127.0.0.1:9/user_impersonation"
CONTOSO = "http://127.0.0.1:9/contoso/user_impersonation"


def _encryption_available(tmp_path: Path) -> bool:
    try:
        open_token_cache(tmp_path / "probe.bin", allow_plaintext=False)
    except EncryptionUnavailable:
        return False
    return True


def _provider(idp: Idp, cache_path: Path, allow_plaintext: bool = True) -> TokenProvider:
    return TokenProvider(
        idp.authority,
        SANDBOX_CLIENT_ID,
        cache_path,
        ca_file=idp.server.ca_file,
        sandbox=True,
        allow_plaintext=allow_plaintext,
    )


def _signed_in(idp: Idp, browser: requests.Session, cache_path: Path) -> TokenProvider:
    provider = _provider(idp, cache_path)
    flow = provider.begin(REDIRECT, [DISCOVERY])
    answer = answer_of(sign_in(browser, flow["auth_uri"], *ALICE))
    account = provider.complete(flow, answer)
    assert account.username == ALICE[0] and account.name == "Alice Wong"
    return provider


def test_scope_helpers() -> None:
    assert dataverse_scope("https://contoso.crm.dynamics.com/") == (
        "https://contoso.crm.dynamics.com/user_impersonation"
    )
    assert discovery_scope() == "https://globaldisco.crm.dynamics.com/user_impersonation"
    assert discovery_scope("http://127.0.0.1:9/api/discovery/v2.0/Instances") == DISCOVERY
    assert ews_scope() == "https://outlook.office365.com/EWS.AccessAsUser.All"
    assert ews_scope("https://127.0.0.1:7/EWS/Exchange.asmx") == (
        "https://127.0.0.1:7/EWS.AccessAsUser.All"
    )


def test_cache_without_encryption_needs_consent(idp: Idp, tmp_path: Path) -> None:
    if _encryption_available(tmp_path):
        provider = _provider(idp, tmp_path / "enc.bin", allow_plaintext=False)
        assert provider.cache_is_encrypted
        return
    with pytest.raises(EncryptionUnavailable) as refused:
        _provider(idp, tmp_path / "c.bin", allow_plaintext=False)
    assert "unencrypted" in str(refused.value)
    provider = _provider(idp, tmp_path / "c.bin", allow_plaintext=True)
    assert provider.cache_is_encrypted is False


def test_sign_in_then_silent_tokens_survive_a_restart(
    idp: Idp, browser: requests.Session, cache_path: Path
) -> None:
    provider = _signed_in(idp, browser, cache_path)
    token = provider.token_for([DISCOVERY])
    assert idp.tokens.user_for(token).upn == ALICE[0]  # type: ignore[union-attr]
    contoso = provider.token_for([dataverse_scope("http://127.0.0.1:9/contoso/")])
    assert idp.tokens.user_for(contoso).upn == ALICE[0]  # type: ignore[union-attr]
    if not provider.cache_is_encrypted:
        assert stat.S_IMODE(os.stat(cache_path).st_mode) == 0o600

    # "restart": a new provider on the same cache file finds the account and its tokens
    token_calls = idp.log.count(service="identity", method="POST", status=200)
    again = _provider(idp, cache_path)
    assert [a.username for a in again.accounts()] == [ALICE[0]]
    assert again.token_for([DISCOVERY]) == token  # from the persisted cache, no request
    assert idp.log.count(service="identity", method="POST", status=200) == token_calls


def test_refresh_gives_new_tokens_and_revocation_means_sign_in_again(
    idp: Idp, browser: requests.Session, cache_path: Path
) -> None:
    idp.server.access_token_lifetime = 120  # msal refreshes tokens with less than 5 min left
    provider = _signed_in(idp, browser, cache_path)
    first = provider.token_for([CONTOSO])
    restarted = _provider(idp, cache_path)
    second = restarted.token_for([CONTOSO])
    assert first != second
    assert idp.tokens.user_for(second).upn == ALICE[0]  # type: ignore[union-attr]
    refreshes = [e for e in idp.log if e.detail.startswith("refresh_token")]
    assert refreshes and refreshes[-1].user == ALICE[0]

    idp.server.revoke_user(ALICE[0])
    with pytest.raises(AuthError, match="Sign in again"):
        restarted.token_for([CONTOSO])


def test_no_account_and_sign_out(idp: Idp, browser: requests.Session, cache_path: Path) -> None:
    empty = _provider(idp, cache_path)
    with pytest.raises(AuthError, match="not signed in"):
        empty.token_for([DISCOVERY])
    provider = _signed_in(idp, browser, cache_path)
    provider.sign_out()
    assert provider.accounts() == []
    assert _provider(idp, cache_path).accounts() == []
    with pytest.raises(AuthError):
        provider.token_for([DISCOVERY])


def test_answers_from_another_sign_in_are_refused(
    idp: Idp, browser: requests.Session, cache_path: Path
) -> None:
    provider = _provider(idp, cache_path)
    flow = provider.begin(REDIRECT, [DISCOVERY])
    other = provider.begin(REDIRECT, [DISCOVERY])
    answer = answer_of(sign_in(browser, other["auth_uri"], *ALICE))
    with pytest.raises(AuthError, match="does not belong"):
        provider.complete(flow, answer)
    with pytest.raises(AuthError, match="Sign-in failed"):
        provider.complete(flow, {"state": flow["state"], "error": "access_denied"})


def test_secrets_are_never_logged(
    idp: Idp, browser: requests.Session, cache_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    provider = _provider(idp, cache_path)
    flow = provider.begin(REDIRECT, [DISCOVERY])
    answer = answer_of(sign_in(browser, flow["auth_uri"], *ALICE))
    provider.complete(flow, answer)
    token = provider.token_for([CONTOSO])
    text = caplog.text
    assert token not in text
    assert answer["code"] not in text
    assert flow["code_verifier"] not in text
    assert ALICE[1] not in text


def test_a_restarted_sandbox_honours_refresh_tokens(
    browser: requests.Session, tmp_path: Path, cache_path: Path
) -> None:
    """The sandbox keeps refresh tokens in its folder: after a restart (new ports, new CA, new
    token registry) a forced refresh works without signing in again."""
    tls_dir = str(tmp_path / "identity")
    first = IdentityServer(TokenRegistry(), RequestLog(), FaultProfile(), tls_dir=tls_dir)
    first.start()
    try:
        browser.verify = first.ca_file
        idp = Idp(first, first.state.tokens, first.state.log, first.state.faults)
        old_token = _signed_in(idp, browser, cache_path).token_for([CONTOSO])
    finally:
        first.stop()
    registry = TokenRegistry()
    second = IdentityServer(registry, RequestLog(), FaultProfile(), tls_dir=tls_dir)
    second.start()
    try:
        idp = Idp(second, registry, second.state.log, second.state.faults)
        provider = _provider(idp, cache_path)
        assert registry.user_for(old_token) is None  # the new sandbox does not know it
        fresh = provider.token_for([CONTOSO], force_refresh=True)
        assert registry.user_for(fresh).upn == ALICE[0]  # type: ignore[union-attr]
        assert stat.S_IMODE(os.stat(f"{tls_dir}/refresh_tokens.json").st_mode) == 0o600
    finally:
        second.stop()


def test_an_unreachable_authority_is_unavailable_not_sign_in_again(
    idp: Idp, browser: requests.Session, cache_path: Path
) -> None:
    provider = _signed_in(idp, browser, cache_path)
    idp.faults.set(Fault.parse("drop:every=1,match=/token"))
    with pytest.raises(Unavailable):
        provider.token_for([CONTOSO], force_refresh=True)
    assert idp.log.count(service="identity", status=0) >= 1
    idp.faults.clear()
    assert idp.tokens.user_for(provider.token_for([CONTOSO], force_refresh=True)) is not None


def test_provider_from_config(tmp_path: Path) -> None:
    microsoft = provider_from_config(
        {
            "provider": "microsoft",
            "client_id": "11111111-2222-3333-4444-555555555555",
            "authority": "https://login.microsoftonline.com/contoso.onmicrosoft.com",
            "plaintext": True,
        },
        tmp_path,
    )
    assert microsoft.authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert not microsoft.sandbox and microsoft.ca_file is None
    with pytest.raises(AuthError, match="sandbox is not running"):
        provider_from_config({"provider": "sandbox", "plaintext": True}, tmp_path, None)
