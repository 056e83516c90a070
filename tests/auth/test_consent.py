"""Issue 10 point 1, incremental consent, in sync/auth.py and the sandbox identity provider.

Entra refuses a token for a resource nobody consented to with AADSTS65001 DelegationDoesNotExist
("Send an interactive authorization request for this user and resource"), answered as
`invalid_grant` with `suberror` `consent_required`; where users may not consent, only an
administrator can, for the whole tenant, at `/{organization}/adminconsent?client_id=…`
(learn.microsoft.com: entra/identity-platform/reference-error-codes,
entra/identity/enterprise-apps/application-sign-in-unexpected-user-consent-error and
grant-admin-consent)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from sandbox.idp import SANDBOX_CLIENT_ID
from sync.auth import (
    ConsentRequired,
    SignInRequired,
    TokenProvider,
    admin_consent_url,
    describe_scope,
    ews_scope,
    needs_admin,
    needs_consent,
    pending_consents,
    scope_label,
)
from tests.auth.helpers import ALICE, Idp, answer_of, login_handle

REDIRECT = "http://127.0.0.1:8765/signin/callback"
DISCOVERY = "http://127.0.0.1:9/user_impersonation"
CONTOSO = "http://127.0.0.1:9/contoso/user_impersonation"
EWS = "https://127.0.0.1:7/EWS.AccessAsUser.All"
DAVE = ("dave@fabrikam.example", "dave-Sandbox-1")  # the sandbox tenant's administrator


@pytest.fixture
def consent_mode(idp: Idp) -> Iterator[IdentityModes]:
    modes = IdentityModes(idp)
    yield modes
    idp.server.consents.revoke()
    idp.server.consent_mode = "granted"


class IdentityModes:
    def __init__(self, idp: Idp) -> None:
        self.idp = idp

    def set(self, mode: str) -> None:
        self.idp.server.consents.revoke()
        self.idp.server.consent_mode = mode


def _provider(idp: Idp, cache_path: Path) -> TokenProvider:
    return TokenProvider(
        idp.authority,
        SANDBOX_CLIENT_ID,
        cache_path,
        ca_file=idp.server.ca_file,
        sandbox=True,
        allow_plaintext=True,
    )


def _login(browser: requests.Session, auth_uri: str, upn: str, password: str) -> requests.Response:
    page = browser.get(auth_uri)
    assert page.status_code == 200, page.text
    action = urlsplit(auth_uri)._replace(query="").geturl()
    return browser.post(
        action,
        data={"login": login_handle(page.text), "upn": upn, "password": password, "action": "x"},
        allow_redirects=False,
    )


def _consent(browser: requests.Session, auth_uri: str, page: requests.Response, action: str):
    """Post the consent (or admin-required) page's button."""
    assert 'name="login"' in page.text, page.text
    return browser.post(
        urlsplit(auth_uri)._replace(query="").geturl(),
        data={"login": login_handle(page.text), "action": action},
        allow_redirects=False,
    )


def _listed_scopes(page: requests.Response) -> list[str]:
    return [unescape(s) for s in re.findall(r"<li>([^<]+)</li>", page.text)]


def _sign_in_consenting(idp: Idp, browser: requests.Session, cache: Path) -> TokenProvider:
    provider = _provider(idp, cache)
    flow = provider.begin(REDIRECT, [DISCOVERY])
    page = _login(browser, flow["auth_uri"], *ALICE)
    assert "Permissions requested" in page.text and _listed_scopes(page) == [DISCOVERY]
    provider.complete(flow, answer_of(_consent(browser, flow["auth_uri"], page, "consent-accept")))
    return provider


def test_a_resource_without_consent_asks_for_exactly_its_scope(
    idp: Idp, browser: requests.Session, cache_path: Path, consent_mode: IdentityModes
) -> None:
    consent_mode.set("user")
    provider = _sign_in_consenting(idp, browser, cache_path)
    assert provider.token_for([DISCOVERY], ALICE[0])  # consented at sign-in

    with pytest.raises(ConsentRequired) as missing:
        provider.token_for([CONTOSO], ALICE[0])
    error = missing.value
    assert isinstance(error, SignInRequired)  # every "sign in again" place still sees it
    assert error.scopes == (CONTOSO,) and error.label == "access to the Contoso organization"
    assert "access to the Contoso organization" in error.message
    assert "AADSTS65001" in error.message and "/signin" in error.message
    assert [p.scopes for p in pending_consents(cache_path.parent)] == [(CONTOSO,)]

    # the interactive request for that one scope shows a consent page for it alone
    flow = provider.begin(REDIRECT, [CONTOSO], login_hint=ALICE[0], prompt=None)
    page = _login(browser, flow["auth_uri"], *ALICE)
    assert _listed_scopes(page) == [CONTOSO]
    provider.complete(flow, answer_of(_consent(browser, flow["auth_uri"], page, "consent-accept")))
    assert idp.tokens.user_for(provider.token_for([CONTOSO], ALICE[0], force_refresh=True))
    assert pending_consents(cache_path.parent) == []


def test_the_token_endpoint_answers_65001_with_suberror_consent_required(
    idp: Idp, browser: requests.Session, cache_path: Path, consent_mode: IdentityModes
) -> None:
    consent_mode.set("user")
    provider = _sign_in_consenting(idp, browser, cache_path)
    refresh_token = next(iter(provider.cache.search(provider.cache.CredentialType.REFRESH_TOKEN)))
    session = requests.Session()
    session.verify, session.trust_env = idp.server.ca_file, False
    reply = session.post(
        f"{idp.authority}/oauth2/v2.0/token",
        data={
            "client_id": SANDBOX_CLIENT_ID,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token["secret"],
            "scope": f"{EWS} offline_access openid profile",
        },
    )
    body = reply.json()
    assert reply.status_code == 400
    assert body["error"] == "invalid_grant" and body["suberror"] == "consent_required"
    assert body["error_codes"] == [65001]
    assert body["error_description"].startswith("AADSTS65001: The user or administrator has not")
    # the refresh token itself still works for what was consented
    assert provider.token_for([DISCOVERY], ALICE[0], force_refresh=True)


def test_admin_only_tenant_sends_users_to_the_admin_consent_page(
    idp: Idp, browser: requests.Session, cache_path: Path, consent_mode: IdentityModes
) -> None:
    consent_mode.set("admin")
    provider = _provider(idp, cache_path)
    flow = provider.begin(REDIRECT, [DISCOVERY])
    page = _login(browser, flow["auth_uri"], *ALICE)
    assert "Administrator approval needed" in page.text and "AADSTS90094" in page.text
    assert 'value="consent-accept"' not in page.text  # users cannot consent here
    answer = answer_of(_consent(browser, flow["auth_uri"], page, "admin-back"))
    assert answer["error"] == "access_denied" and needs_admin(answer["error_description"])

    # a forged "accept" from a user is refused just the same
    flow = provider.begin(REDIRECT, [DISCOVERY])
    page = _login(browser, flow["auth_uri"], *ALICE)
    forged = answer_of(_consent(browser, flow["auth_uri"], page, "consent-accept"))
    assert forged["error"] == "access_denied" and "code" not in forged

    # the administrator consents for the tenant; then the user signs in without a prompt
    admin_page = idp.server.admin_consent_url
    assert admin_page == admin_consent_url(idp.authority, SANDBOX_CLIENT_ID)
    form = browser.get(admin_page)
    assert "Consent on behalf of your organization" in form.text
    action = urlsplit(admin_page)._replace(query="").geturl()
    fields = {"client_id": SANDBOX_CLIENT_ID, "redirect_uri": "", "state": ""}
    refused = browser.post(action, data={**fields, "upn": ALICE[0], "password": ALICE[1]})
    assert refused.status_code == 400 and "Only an administrator" in refused.text
    granted = browser.post(
        action,
        data={
            **fields,
            "redirect_uri": REDIRECT,
            "state": "s1",
            "upn": DAVE[0],
            "password": DAVE[1],
        },
        allow_redirects=False,
    )
    assert granted.status_code == 302
    assert (
        "admin_consent=True" in granted.headers["Location"]
        and "state=s1" in granted.headers["Location"]
    )
    flow = provider.begin(REDIRECT, [DISCOVERY])
    provider.complete(flow, answer_of(_login(browser, flow["auth_uri"], *ALICE)))
    assert provider.token_for([CONTOSO], ALICE[0])


def test_declining_consent_is_access_denied(
    idp: Idp, browser: requests.Session, cache_path: Path, consent_mode: IdentityModes
) -> None:
    consent_mode.set("user")
    provider = _provider(idp, cache_path)
    flow = provider.begin(REDIRECT, [DISCOVERY])
    page = _login(browser, flow["auth_uri"], *ALICE)
    answer = answer_of(_consent(browser, flow["auth_uri"], page, "consent-decline"))
    assert answer["error"] == "access_denied" and "AADSTS65004" in answer["error_description"]
    assert "code" not in answer


def test_msal_shaped_consent_errors_are_recognised() -> None:
    msal_answer = {
        "error": "invalid_grant",
        "error_description": "AADSTS65001: The user or administrator has not consented …",
        "error_codes": [65001],
        "suberror": "consent_required",
        "classification": "consent_required",
    }
    assert needs_consent(msal_answer)
    assert needs_consent({"error": "invalid_grant", "error_codes": [65001]})
    assert not needs_consent({"error": "invalid_grant", "error_codes": [50173]})
    assert needs_admin("AADSTS90094: Administrator consent is required.")
    assert needs_admin("AADSTS90095: AdminConsentRequiredRequestAccess")
    assert not needs_admin("AADSTS65004: User declined to consent to access the app.")


def test_resources_are_named_in_words() -> None:
    assert scope_label([ews_scope()]) == "access to your mailbox (EWS)"
    assert scope_label(["https://contoso.crm.dynamics.com/user_impersonation"]) == (
        "access to the Contoso organization"
    )
    assert scope_label([CONTOSO]) == "access to the Contoso organization"
    assert describe_scope(DISCOVERY) == ("discovery", "")
    assert describe_scope("https://globaldisco.crm.dynamics.com/user_impersonation")[0] == (
        "discovery"
    )
    assert scope_label(["Mail.ReadWrite"]) == "access to your mailbox (Microsoft Graph)"


def test_the_admin_consent_url_is_entras_format() -> None:
    """grant-admin-consent.md: https://login.microsoftonline.com/{organization}/adminconsent
    ?client_id={client-id}."""
    client = "00000000-0000-0000-0000-000000000001"
    assert admin_consent_url("https://login.microsoftonline.com/organizations", client, "t1") == (
        f"https://login.microsoftonline.com/t1/adminconsent?client_id={client}"
    )
    assert admin_consent_url("https://login.microsoftonline.com/contoso.com", client) == (
        f"https://login.microsoftonline.com/contoso.com/adminconsent?client_id={client}"
    )


def test_a_sync_run_without_consent_raises_an_alert_naming_the_resource(tmp_path: Path) -> None:
    """The messaging job's "Sign in again" alert carries the consent's message (what is missing
    and where to give it), not a bare "sign in again" that would only loop."""
    from typing import Any

    from sync.engine.options import EngineSettings
    from sync.kinds import CONTACTS
    from sync.memory import MemoryCrm, MemoryMailbox
    from sync.messaging import Connection, MessagingJob
    from sync.runs import open_alerts
    from sync.service import MESSAGING, SyncService
    from sync.store.db import open_database

    missing = ConsentRequired(
        "Mailbox Sync needs your consent for access to your mailbox (EWS). Open the Sign-in page "
        '(/signin) and choose "Give consent" to allow it.',
        [ews_scope()],
        "access to your mailbox (EWS)",
        ALICE[0],
    )

    class Refusing(MemoryMailbox):
        def read_changes(self, *args: Any, **kwargs: Any) -> Any:
            raise missing

    database = open_database(tmp_path / "data")
    crm = MemoryCrm()
    job = MessagingJob(
        database, lambda: Connection("org", crm, Refusing(), EngineSettings(me=crm.me), [CONTACTS])
    )
    SyncService(database, {MESSAGING: job}).run(MESSAGING, "now")
    [alert] = open_alerts(database)
    assert alert.code == "signin_required"
    assert "access to your mailbox (EWS)" in alert.message and "Give consent" in alert.message
