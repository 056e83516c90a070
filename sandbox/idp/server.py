"""IdentityServer: the sandbox identity provider on 127.0.0.1 over HTTPS (msal insists on it).

The pages a person sees (sign-in, consent, admin consent, sign-out) are also served over plain
HTTP on a second loopback port, and the OpenID configuration sends browsers there: a stock
browser does not know the sandbox's throwaway CA and would stop at a full-page certificate
warning. The app itself is plain HTTP on 127.0.0.1 too, so nothing weaker is added; tokens are
still issued over HTTPS only (the token endpoint, keys and metadata refuse plain HTTP).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sandbox.faults import FaultProfile
from sandbox.identity import TENANT_ID, TokenRegistry
from sandbox.idp.app import IdpState, create_idp_app
from sandbox.idp.consent import ConsentStore
from sandbox.idp.grants import SANDBOX_CLIENT_ID, GrantStore
from sandbox.requestlog import RequestLog
from sandbox.serving import Listener
from sandbox.tls import make_tls_material

BROWSER_PATHS = re.compile(
    r"^/[^/]+/(oauth2/v2\.0/(authorize|logout)|oauth2/deviceauth|adminconsent)$"
)
"""The endpoints a browser is sent to; everything else is HTTPS only."""


def browser_pages_only(app: Callable[..., Any]) -> Callable[..., Iterable[bytes]]:
    """The WSGI app of the plain-HTTP listener: the browser pages, nothing else."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if BROWSER_PATHS.match(environ.get("PATH_INFO", "")):
            result: Iterable[bytes] = app(environ, start_response)
            return result
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Served over HTTPS only (tokens, keys and metadata)."]

    return serve


class IdentityServer:
    """An Entra-ID-shaped identity provider for the sandbox users (see sandbox/README.md).

    Tokens it issues come from the shared TokenRegistry, so every sandbox server accepts them.
    """

    client_id: str = SANDBOX_CLIENT_ID

    def __init__(
        self,
        tokens: TokenRegistry,
        log: RequestLog,
        faults: FaultProfile,
        tls_dir: str,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.tls = make_tls_material(tls_dir)
        self.ca_file = self.tls.ca_file
        grants = GrantStore(path=str(Path(tls_dir) / "refresh_tokens.json"))
        self.state = IdpState(tokens, log, faults, grants=grants)
        self.app = create_idp_app(self.state)
        self._listener = Listener(
            self.app, "sandbox-identity", host, port, ssl_context=self.tls.server_context()
        )
        self._pages = Listener(browser_pages_only(self.app), "sandbox-identity-pages", host)

    @property
    def base_url(self) -> str:
        if not self._listener.running:
            raise RuntimeError("IdentityServer is not started")
        return self.state.base_url

    @property
    def authority(self) -> str:
        """`https://127.0.0.1:PORT/<TENANT_ID>`, no trailing slash (what msal is given)."""
        return f"{self.base_url}/{TENANT_ID}"

    @property
    def access_token_lifetime(self) -> float:
        return self.state.access_token_lifetime

    @access_token_lifetime.setter
    def access_token_lifetime(self, seconds: float) -> None:
        """Shorter lifetimes make clients refresh (msal refreshes tokens with < 5 min left)."""
        self.state.access_token_lifetime = seconds

    @property
    def consents(self) -> ConsentStore:
        """Who consented to what (grant, revoke, the administrators)."""
        return self.state.consents

    @property
    def consent_mode(self) -> str:
        return self.state.consents.mode

    @consent_mode.setter
    def consent_mode(self, mode: str) -> None:
        """ "granted" (everyone consented to everything: the default), "user" (per user and
        scope, on a consent page) or "admin" (users may not consent; an administrator consents
        for the tenant at `admin_consent_url`). See sandbox/idp/consent.py."""
        self.state.consents.set_mode(mode)

    @property
    def admin_consent_url(self) -> str:
        """The tenant-wide admin consent page of the sandbox's app registration."""
        return f"{self.authority}/adminconsent?client_id={self.client_id}"

    def revoke_user(self, upn: str) -> int:
        """Revoke a user's refresh tokens, as an admin revoking sessions would."""
        return self.state.grants.revoke_user(upn)

    def revoke_access_tokens(self, upn: str) -> int:
        """Revoke the access tokens issued to a user (not the refresh tokens): every sandbox
        service answers 401 to them from now on, and a client must refresh. How many."""
        return self.state.revoke_access_tokens(upn)

    def start(self) -> None:
        if self._listener.running:
            return
        self._listener.start()
        self.state.base_url = self._listener.origin
        self._pages.start()
        self.state.browser_url = self._pages.origin

    @property
    def browser_url(self) -> str:
        """`http://127.0.0.1:PORT`: where the sign-in and consent pages are served."""
        return self.state.browser_url

    def stop(self) -> None:
        self._pages.stop()
        self._listener.stop()
