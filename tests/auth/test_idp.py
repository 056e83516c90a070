"""The sandbox identity provider: discovery, the msal auth code + PKCE flow, refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import urlencode, urlsplit

import msal
import pytest
import requests

from sandbox.faults import Fault
from sandbox.identity import TENANT_ID, user_by_upn
from sandbox.idp import SANDBOX_CLIENT_ID
from tests.auth.helpers import ALICE, Idp, answer_of, login_handle, sign_in

REDIRECT = "http://127.0.0.1:8765/signin/callback"
SCOPE = "http://127.0.0.1:9/contoso/user_impersonation"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def _authorize_url(idp: Idp, **overrides: str) -> str:
    params = {
        "client_id": SANDBOX_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": f"{SCOPE} openid profile offline_access",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": _pkce()[1],
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return f"{idp.authority}/oauth2/v2.0/authorize?" + urlencode(params)


def _token(browser: requests.Session, idp: Idp, **data: str) -> requests.Response:
    form = {"client_id": SANDBOX_CLIENT_ID, **data}
    return browser.post(f"{idp.authority}/oauth2/v2.0/token", data=form)


def _msal_app(idp: Idp, browser: requests.Session) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        SANDBOX_CLIENT_ID,
        authority=idp.authority,
        instance_discovery=False,
        http_client=browser,
    )


def test_discovery_document(idp: Idp, browser: requests.Session) -> None:
    doc = browser.get(f"{idp.authority}/v2.0/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"{idp.authority}/v2.0"
    pages = f"{idp.server.browser_url}/{TENANT_ID}"
    assert doc["authorization_endpoint"] == f"{pages}/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{idp.authority}/oauth2/v2.0/token"
    assert doc["end_session_endpoint"].startswith(pages)
    assert doc["code_challenge_methods_supported"] == ["S256"]
    keys = browser.get(doc["jwks_uri"]).json()["keys"]
    assert keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256"
    assert urlsplit(idp.authority).scheme == "https"
    assert idp.authority.endswith("/" + TENANT_ID)

    unknown = browser.get(
        idp.authority.rsplit("/", 1)[0] + "/no-such-tenant/v2.0/.well-known/openid-configuration"
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_tenant"


def test_msal_auth_code_flow_gives_tokens_the_sandbox_accepts(
    idp: Idp, browser: requests.Session
) -> None:
    app = _msal_app(idp, browser)
    flow = app.initiate_auth_code_flow([SCOPE], redirect_uri=REDIRECT, response_mode="form_post")
    answer = answer_of(sign_in(browser, flow["auth_uri"], *ALICE))
    assert answer["state"] == flow["state"] and answer["code"]

    result = app.acquire_token_by_auth_code_flow(flow, answer)
    assert "error" not in result, result
    user = idp.tokens.user_for(result["access_token"])
    assert user is not None and user.upn == ALICE[0]
    claims = result["id_token_claims"]
    assert claims["aud"] == SANDBOX_CLIENT_ID
    assert claims["preferred_username"] == ALICE[0]
    assert claims["oid"] == user_by_upn(ALICE[0]).object_id  # type: ignore[union-attr]
    assert claims["tid"] == TENANT_ID
    assert result["scope"] == SCOPE
    assert idp.server.state.signer.verify(result["id_token"])["iss"] == f"{idp.authority}/v2.0"
    [account] = app.get_accounts()
    assert account["username"] == ALICE[0]
    assert account["home_account_id"] == f"{claims['oid']}.{TENANT_ID}"
    # msal refreshes for another resource with the refresh token, silently
    other = app.acquire_token_silent(["http://127.0.0.1:9/fabrikam/user_impersonation"], account)
    assert other and idp.tokens.user_for(other["access_token"]) == user
    assert idp.log.count(service="identity", target=f"/{TENANT_ID}/oauth2/v2.0/token") >= 2


def test_wrong_password_shows_the_form_again(idp: Idp, browser: requests.Session) -> None:
    url = _authorize_url(idp)
    page = browser.get(url)
    handle = login_handle(page.text)
    action = url.split("?")[0]
    wrong = browser.post(
        action,
        data={"login": handle, "upn": ALICE[0], "password": "nope"},
        allow_redirects=False,
    )
    assert wrong.status_code == 200
    assert "incorrect" in wrong.text and 'name="password"' in wrong.text
    assert ALICE[0] in wrong.text  # the UPN stays filled in
    # the same login may be retried with the right password
    right = browser.post(
        action,
        data={"login": login_handle(wrong.text), "upn": ALICE[0], "password": ALICE[1]},
        allow_redirects=False,
    )
    assert right.status_code == 302 and "code=" in right.headers["Location"]


def test_bad_pkce_verifier_is_invalid_grant(idp: Idp, browser: requests.Session) -> None:
    verifier, challenge = _pkce()
    answer = answer_of(sign_in(browser, _authorize_url(idp, code_challenge=challenge), *ALICE))
    bad = _token(
        browser,
        idp,
        grant_type="authorization_code",
        code=answer["code"],
        redirect_uri=REDIRECT,
        code_verifier=_pkce()[0],
        scope=SCOPE,
    )
    assert bad.status_code == 400
    body = bad.json()
    assert body["error"] == "invalid_grant" and body["error_codes"] == [501481]
    # the code is spent: the right verifier no longer helps
    again = _token(
        browser,
        idp,
        grant_type="authorization_code",
        code=answer["code"],
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert again.json()["error_codes"] == [54005]


def test_code_redeems_once_with_the_right_verifier(idp: Idp, browser: requests.Session) -> None:
    verifier, challenge = _pkce()
    answer = answer_of(sign_in(browser, _authorize_url(idp, code_challenge=challenge), *ALICE))
    wrong_redirect = _token(
        browser,
        idp,
        grant_type="authorization_code",
        code=answer["code"],
        redirect_uri="http://127.0.0.1:1/other",
        code_verifier=verifier,
    )
    assert wrong_redirect.json()["error"] == "invalid_grant"
    verifier2, challenge2 = _pkce()
    answer2 = answer_of(sign_in(browser, _authorize_url(idp, code_challenge=challenge2), *ALICE))
    ok = _token(
        browser,
        idp,
        grant_type="authorization_code",
        code=answer2["code"],
        redirect_uri=REDIRECT,
        code_verifier=verifier2,
        scope=f"{SCOPE} offline_access openid",
        client_info="1",
    )
    body = ok.json()
    assert ok.status_code == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert idp.tokens.user_for(body["access_token"]) is not None
    info = json.loads(base64.urlsafe_b64decode(body["client_info"] + "=="))
    assert info == {"uid": user_by_upn(ALICE[0]).object_id, "utid": TENANT_ID}  # type: ignore[union-attr]
    assert idp.server.state.signer.verify(body["id_token"])["nonce"] == "n-1"

    refreshed = _token(
        browser, idp, grant_type="refresh_token", refresh_token=body["refresh_token"], scope=SCOPE
    ).json()
    assert idp.tokens.user_for(refreshed["access_token"]).upn == ALICE[0]  # type: ignore[union-attr]
    assert refreshed["access_token"] != body["access_token"]

    two_resources = _token(
        browser,
        idp,
        grant_type="refresh_token",
        refresh_token=body["refresh_token"],
        scope=f"{SCOPE} https://outlook.office365.com/EWS.AccessAsUser.All",
    )
    assert two_resources.json()["error"] == "invalid_scope"

    idp.server.revoke_user(ALICE[0])
    revoked = _token(
        browser, idp, grant_type="refresh_token", refresh_token=body["refresh_token"], scope=SCOPE
    )
    assert revoked.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("overrides", "status", "text"),
    [
        ({"client_id": "00000000-0000-0000-0000-000000000000"}, 400, "AADSTS700016"),
        ({"redirect_uri": "https://evil.example/cb"}, 400, "AADSTS50011"),
        ({"redirect_uri": "http://attacker.example:8765/signin/callback"}, 400, "AADSTS50011"),
    ],
)
def test_authorize_refuses_unknown_clients_and_redirects(
    idp: Idp, browser: requests.Session, overrides: dict[str, str], status: int, text: str
) -> None:
    page = browser.get(_authorize_url(idp, **overrides), allow_redirects=False)
    assert page.status_code == status
    assert text in page.text
    assert "Location" not in page.headers  # never redirect to an unverified URI


def test_authorize_errors_go_back_to_the_client(idp: Idp, browser: requests.Session) -> None:
    no_pkce = browser.get(_authorize_url(idp, code_challenge=""), allow_redirects=False)
    assert no_pkce.status_code == 302
    answer = answer_of(no_pkce)
    assert answer["error"] == "invalid_request" and answer["state"] == "st-1"
    plain = answer_of(
        browser.get(_authorize_url(idp, code_challenge_method="plain"), allow_redirects=False)
    )
    assert plain["error"] == "invalid_request"
    token_flow = answer_of(
        browser.get(_authorize_url(idp, response_type="token"), allow_redirects=False)
    )
    assert token_flow["error"] == "unsupported_response_type"

    page = browser.get(_authorize_url(idp))
    cancel = browser.post(
        _authorize_url(idp).split("?")[0],
        data={"login": login_handle(page.text), "action": "cancel"},
        allow_redirects=False,
    )
    assert answer_of(cancel)["error"] == "access_denied"


def test_token_endpoint_errors_are_oauth_json(idp: Idp, browser: requests.Session) -> None:
    unknown_grant = _token(browser, idp, grant_type="password", username="a", password="b")
    assert unknown_grant.status_code == 400
    assert unknown_grant.json()["error"] == "unsupported_grant_type"
    unknown_client = _token(browser, idp, grant_type="refresh_token", client_id="nobody")
    assert unknown_client.json()["error"] == "unauthorized_client"
    bad_code = _token(
        browser,
        idp,
        grant_type="authorization_code",
        code="x",
        redirect_uri=REDIRECT,
        code_verifier="y",
    )
    assert bad_code.json()["error"] == "invalid_grant"
    assert "Trace ID" in bad_code.json()["error_description"]


def test_throttling_fault_answers_429_with_retry_after(idp: Idp, browser: requests.Session) -> None:
    idp.faults.set(Fault.parse("429:every=1,delay=3,times=1,match=/token"))
    throttled = _token(browser, idp, grant_type="refresh_token", refresh_token="x")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "3"
    after = _token(browser, idp, grant_type="refresh_token", refresh_token="x")
    assert after.status_code == 400  # the fault struck once, then the real answer
    assert idp.log.count(service="identity", status=429) >= 1


def test_browser_pages_are_plain_http_on_loopback_and_tokens_https_only(
    idp: Idp, browser: requests.Session
) -> None:
    """A stock browser opens the sign-in page without a certificate warning (issue 11 point 1):
    the pages a person sees are served over plain HTTP on 127.0.0.1, like the app itself,
    while tokens, keys and metadata stay HTTPS only (msal insists on an https authority)."""
    pages = urlsplit(idp.server.browser_url)
    assert pages.scheme == "http" and pages.hostname == "127.0.0.1"
    plain = requests.Session()
    sign_in_page = plain.get(
        _authorize_url(idp).replace(idp.authority, pages.geturl() + "/" + TENANT_ID)
    )
    assert sign_in_page.status_code == 200 and 'name="upn"' in sign_in_page.text
    for path in (
        "oauth2/v2.0/token",
        "v2.0/.well-known/openid-configuration",
        "discovery/v2.0/keys",
    ):
        refused = plain.request(
            "POST" if path.endswith("token") else "GET", f"{pages.geturl()}/{TENANT_ID}/{path}"
        )
        assert refused.status_code == 404, path
        assert "HTTPS only" in refused.text
