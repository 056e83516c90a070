"""The sandbox identity provider's HTTP endpoints, shaped like Entra ID's v2.0 endpoints.

What msal's PublicClientApplication calls (with `instance_discovery=False`): the OpenID
configuration under `<authority>/v2.0/`, the authorize page the browser opens, and the token
endpoint (authorization code with PKCE, refresh token); plus the consent pages and the tenant's
admin consent page (`<authority>/adminconsent`). See sandbox/README.md for the differences.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Flask, g, jsonify, redirect, render_template_string, request
from werkzeug.wrappers import Response

from sandbox.faults import FaultProfile
from sandbox.identity import TENANT_ID, USERS, TokenRegistry, User
from sandbox.idp import pages
from sandbox.idp.consent import ConsentStore
from sandbox.idp.device import DEVICE_CODE_LIFETIME, POLL_INTERVAL, DeviceStore
from sandbox.idp.grants import (
    KNOWN_CLIENTS,
    AuthRequest,
    GrantStore,
    OAuthError,
    audience_for,
    is_loopback_redirect,
)
from sandbox.idp.jwt import Signer
from sandbox.requestlog import RequestLog

TENANT_ALIASES = frozenset({TENANT_ID, "organizations", "common"})
SERVICE = "identity"


@dataclass
class IdpState:
    """Everything the endpoints share; `base_url` is set once the server has its port."""

    tokens: TokenRegistry
    log: RequestLog
    faults: FaultProfile
    grants: GrantStore = field(default_factory=GrantStore)
    consents: ConsentStore = field(default_factory=ConsentStore)
    devices: DeviceStore = field(default_factory=DeviceStore)
    signer: Signer = field(default_factory=Signer)
    base_url: str = ""
    browser_url: str = ""
    """Where the pages a person sees are served: plain HTTP on 127.0.0.1 (see BROWSER_PATHS)."""
    access_token_lifetime: float = 3600.0
    id_token_lifetime: float = 3600.0
    _issued: dict[str, list[str]] = field(default_factory=dict)
    """The access tokens issued here, by user (lower-case UPN), so they can be revoked."""
    _issued_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/{TENANT_ID}/v2.0"

    def issue_access_token(
        self, upn: str, audience: str, scopes: frozenset[str] | None = None
    ) -> str:
        """A new access token, remembered so that `revoke_access_tokens` can find it."""
        token = self.tokens.issue(
            upn, self.access_token_lifetime, audience=audience, scopes=scopes
        )  # (graph) the scopes too, so the sandbox Graph can answer 403 for a missing one
        with self._issued_lock:
            self._issued.setdefault(upn.lower(), []).append(token)
        return token

    def revoke_access_tokens(self, upn: str) -> int:
        """Make every access token issued to the user unusable at once, on every sandbox
        service (as continuous access evaluation does after an admin revokes the sessions);
        refresh tokens stay valid. The user's static token is not one of these. How many."""
        with self._issued_lock:
            issued = self._issued.pop(upn.lower(), [])
        for token in issued:
            self.tokens.revoke(token)
        return len(issued)


def _error_json(err: OAuthError) -> Response:
    """An error the way Entra answers it: OAuth fields plus codes, trace and correlation ids."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = (
        str(uuid.uuid4()),
        request.headers.get("client-request-id", str(uuid.uuid4())),
    )
    body = {
        "error": err.error,
        "error_description": f"{err.description}\r\nTrace ID: {trace}\r\n"
        f"Correlation ID: {correlation}\r\nTimestamp: {now}",
        "error_codes": [err.aadsts],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
    }
    if err.suberror:
        body["suberror"] = err.suberror
    response = jsonify(body)
    response.status_code = err.status
    g.detail = f"{err.error} AADSTS{err.aadsts}"
    return response


def _message_page(title: str, message: str, status: int, error: bool = True) -> Response:
    g.detail = message[:80]
    html = render_template_string(pages.MESSAGE, title=title, message=message, error=error)
    return Response(html, status=status, mimetype="text/html")


def _client_info(user: User) -> str:
    raw = json.dumps({"uid": user.object_id, "utid": TENANT_ID}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _send_to_client(auth: AuthRequest, params: Mapping[str, str]) -> Response:
    """Answer the client at its redirect URI: a redirect with a query, or a self-posting form."""
    fields = {k: v for k, v in params.items() if v}
    if auth.state:
        fields["state"] = auth.state
    if auth.response_mode == "form_post":
        html = render_template_string(pages.FORM_POST, action=auth.redirect_uri, fields=fields)
        return Response(html, mimetype="text/html")
    joiner = "&" if "?" in auth.redirect_uri else "?"
    return redirect(auth.redirect_uri + joiner + urlencode(fields), code=302)


def _no_consent(client_id: str) -> OAuthError:
    """AADSTS65001 as Entra answers it at the token endpoint (reference-error-codes.md)."""
    return OAuthError(
        "invalid_grant",
        65001,
        f"The user or administrator has not consented to use the application with ID "
        f"'{client_id}' named 'Mailbox Sync (sandbox)'. Send an interactive authorization "
        "request for this user and resource.",
        suberror="consent_required",
    )


def create_idp_app(state: IdpState) -> Flask:
    """The Flask app of the identity provider (served over HTTPS by IdentityServer)."""
    app = Flask("sandbox.idp")
    app.config["JSON_SORT_KEYS"] = False

    @app.before_request
    def _start() -> Response | None:
        g.started, g.user, g.detail = time.time(), None, ""
        fault = state.faults.pick(request.path)
        if fault is None:
            return None
        g.detail = f"fault {fault.kind}"
        if fault.kind == "slow":
            time.sleep(fault.delay)
            return None
        if fault.kind == "drop":
            connection = request.environ.get("werkzeug.socket")
            # Log first: the client sees the close at once and may look at the log before
            # this thread would reach after_request.
            state.log.record(SERVICE, None, request.method, request.path, 0, g.detail, g.started)
            g.recorded = True
            if connection is not None:
                connection.shutdown(socket.SHUT_RDWR)
            return Response("", status=500)  # never reaches the client
        if fault.kind in ("429", "busy"):
            response = _error_json(
                OAuthError("temporarily_unavailable", 50196, "Too many requests.", status=429)
            )
            response.headers["Retry-After"] = str(int(max(1, fault.delay)))
            return response
        return _error_json(
            OAuthError("temporarily_unavailable", 50033, "The service is unavailable.", status=503)
        )

    @app.after_request
    def _record(response: Response) -> Response:
        if g.get("recorded"):
            return response
        state.log.record(
            SERVICE,
            g.get("user"),
            request.method,
            request.path,
            response.status_code,
            g.get("detail", ""),
            started=g.get("started"),
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    def check_tenant(tenant: str) -> None:
        if tenant not in TENANT_ALIASES:
            raise OAuthError(
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )

    @app.errorhandler(OAuthError)
    def _oauth_error(err: OAuthError) -> Response:
        return _error_json(err)

    @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def openid_configuration(tenant: str) -> Response:
        check_tenant(tenant)
        base = f"{state.base_url}/{TENANT_ID}"
        pages_base = f"{state.browser_url or state.base_url}/{TENANT_ID}"
        return jsonify(
            {
                "issuer": state.issuer,
                "authorization_endpoint": f"{pages_base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{pages_base}/oauth2/v2.0/logout",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query", "form_post"],
                "grant_types_supported": [
                    "authorization_code",
                    "refresh_token",
                    "urn:ietf:params:oauth:grant-type:device_code",
                ],
                "code_challenge_methods_supported": ["S256"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nbf",
                    "name",
                    "preferred_username",
                    "oid",
                    "tid",
                    "nonce",
                    "ver",
                ],
                "tenant_region_scope": "NA",
                "cloud_instance_name": "sandbox.invalid",
            }
        )

    @app.get("/<tenant>/discovery/v2.0/keys")
    def keys(tenant: str) -> Response:
        check_tenant(tenant)
        return jsonify(state.signer.jwks())

    def login_page(tenant: str, handle: str, upn: str, error: str = "") -> Response:
        html = render_template_string(
            pages.LOGIN,
            tenant=TENANT_ID,
            action=f"/{tenant}/oauth2/v2.0/authorize",
            handle=handle,
            upn=upn,
            error=error,
            users=USERS,
        )
        return Response(html, mimetype="text/html")

    @app.get("/<tenant>/oauth2/v2.0/authorize")
    def authorize(tenant: str) -> Response:
        if tenant not in TENANT_ALIASES:
            return _message_page(
                "Sign-in failed", f"AADSTS90002: Tenant '{tenant}' not found.", 400
            )
        args = request.args
        client_id = args.get("client_id", "")
        if client_id not in KNOWN_CLIENTS:
            return _message_page(
                "Sign-in failed",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                "directory of the sandbox tenant.",
                400,
            )
        redirect_uri = args.get("redirect_uri", "")
        if not is_loopback_redirect(redirect_uri):
            return _message_page(
                "Sign-in failed",
                f"AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not "
                "match the redirect URIs configured for the application (http://localhost or "
                "http://127.0.0.1 on any port).",
                400,
            )
        response_mode = args.get("response_mode", "query")
        auth = AuthRequest(
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=tuple(args.get("scope", "").split()),
            state=args.get("state"),
            nonce=args.get("nonce"),
            code_challenge=args.get("code_challenge", ""),
            response_mode=response_mode if response_mode in ("query", "form_post") else "query",
            login_hint=args.get("login_hint", ""),
        )

        def refuse(error: str, description: str) -> Response:
            g.detail = error
            return _send_to_client(auth, {"error": error, "error_description": description})

        if args.get("response_type") != "code":
            return refuse(
                "unsupported_response_type",
                "AADSTS700054: The sandbox supports response_type 'code' only.",
            )
        if not auth.scopes:
            return refuse(
                "invalid_request",
                "AADSTS900144: The request body must contain the following parameter: 'scope'.",
            )
        if not auth.code_challenge or args.get("code_challenge_method") != "S256":
            return refuse(
                "invalid_request",
                "AADSTS50147: The sandbox requires PKCE: a code_challenge with "
                "code_challenge_method S256.",
            )
        if response_mode not in ("query", "form_post"):
            return refuse("invalid_request", "AADSTS90014: response_mode is not supported.")
        if args.get("prompt") == "none":
            return refuse(
                "login_required",
                "AADSTS50058: A silent sign-in request was sent but no user is signed in.",
            )
        handle = state.grants.begin_login(auth)
        return login_page(tenant, handle, auth.login_hint)

    def declined(auth: AuthRequest, handle: str, description: str) -> Response:
        state.grants.cancel_login(handle)
        g.detail = description.split(":", 1)[0]
        return _send_to_client(auth, {"error": "access_denied", "error_description": description})

    def issue_code(auth: AuthRequest, handle: str, user: User) -> Response:
        finished = state.grants.finish_login(handle, user.upn)
        if finished is None:  # the same form posted twice at once
            return _message_page("Sign-in expired", "This sign-in page was already used.", 400)
        g.user = user.upn
        _, code = finished
        return _send_to_client(
            auth,
            {"code": code, "client_info": _client_info(user), "session_state": str(uuid.uuid4())},
        )

    def consent_page(tenant: str, handle: str, auth: AuthRequest, user: User) -> Response:
        """Ask the user for the scopes they have not consented to (or say only an admin may)."""
        missing = state.consents.missing(user.upn, auth.scopes)
        state.grants.mark_signed_in(handle, user.upn)
        g.user = user.upn
        action = f"/{tenant}/oauth2/v2.0/authorize"
        if not state.consents.may_consent(user.upn):
            g.detail = "AADSTS90094"
            html = render_template_string(
                pages.ADMIN_REQUIRED,
                scopes=missing,
                handle=handle,
                action=action,
                admin_url=f"{state.browser_url or state.base_url}/{TENANT_ID}/adminconsent?client_id={auth.client_id}",
            )
        else:
            g.detail = "consent"
            html = render_template_string(
                pages.CONSENT,
                upn=user.upn,
                client_id=auth.client_id,
                scopes=missing,
                handle=handle,
                action=action,
            )
        return Response(html, mimetype="text/html")

    @app.post("/<tenant>/oauth2/v2.0/authorize")
    def sign_in(tenant: str) -> Response:
        handle = request.form.get("login", "")
        auth = state.grants.login(handle)
        if tenant not in TENANT_ALIASES or auth is None:
            return _message_page(
                "Sign-in expired",
                "This sign-in page is no longer valid. Go back to the app and start again.",
                400,
            )
        action = request.form.get("action")
        if action == "cancel":
            return declined(
                auth, handle, "AADSTS65004: User declined to consent to access the app."
            )
        if action in ("consent-accept", "consent-decline", "admin-back"):
            signed_in = state.grants.signed_in(handle)
            consenting = _user(signed_in) if signed_in else None
            if consenting is None:
                return _message_page(
                    "Sign-in expired", "Sign in first. Go back to the app and start again.", 400
                )
            if action == "admin-back":
                return declined(auth, handle, "AADSTS90094: Administrator consent is required.")
            if action == "consent-decline":
                return declined(
                    auth, handle, "AADSTS65004: User declined to consent to access the app."
                )
            if not state.consents.may_consent(consenting.upn):  # a forged accept
                return declined(auth, handle, "AADSTS90094: Administrator consent is required.")
            state.consents.grant(consenting.upn, auth.scopes)
            return issue_code(auth, handle, consenting)
        upn = request.form.get("upn", "").strip()
        user = state.tokens.user_for_password(upn, request.form.get("password", ""))
        if user is None:
            g.detail = "AADSTS50126"
            return login_page(
                tenant, handle, upn, "Your account or password is incorrect. Try again."
            )
        if state.consents.missing(user.upn, auth.scopes):
            return consent_page(tenant, handle, auth, user)
        return issue_code(auth, handle, user)

    def admin_consent_page(
        tenant: str, client_id: str, redirect_uri: str, state_value: str, upn: str, error: str
    ) -> Response:
        html = render_template_string(
            pages.ADMIN_CONSENT,
            action=f"/{tenant}/adminconsent",
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=state_value,
            upn=upn,
            error=error,
        )
        return Response(html, mimetype="text/html", status=400 if error else 200)

    @app.get("/<tenant>/adminconsent")
    def admin_consent(tenant: str) -> Response:
        """Entra's tenant-wide admin consent URL, `/{organization}/adminconsent?client_id=…`
        (grant-admin-consent.md; redirect_uri and state are optional)."""
        args = request.args
        client_id = args.get("client_id", "")
        if tenant not in TENANT_ALIASES or client_id not in KNOWN_CLIENTS:
            return _message_page(
                "Sign-in failed",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                "directory of the sandbox tenant.",
                400,
            )
        redirect_uri = args.get("redirect_uri", "")
        if redirect_uri and not is_loopback_redirect(redirect_uri):
            return _message_page(
                "Sign-in failed",
                f"AADSTS50011: The redirect URI '{redirect_uri}' is not valid.",
                400,
            )
        return admin_consent_page(tenant, client_id, redirect_uri, args.get("state", ""), "", "")

    @app.post("/<tenant>/adminconsent")
    def admin_consent_given(tenant: str) -> Response:
        form = request.form
        client_id, redirect_uri = form.get("client_id", ""), form.get("redirect_uri", "")
        state_value = form.get("state", "")
        if tenant not in TENANT_ALIASES or client_id not in KNOWN_CLIENTS:
            return _message_page("Sign-in failed", "AADSTS700016: Unknown application.", 400)
        if redirect_uri and not is_loopback_redirect(redirect_uri):
            return _message_page("Sign-in failed", "AADSTS50011: Bad redirect URI.", 400)
        upn = form.get("upn", "").strip()
        user = state.tokens.user_for_password(upn, form.get("password", ""))
        if user is None:
            g.detail = "AADSTS50126"
            return admin_consent_page(
                tenant, client_id, redirect_uri, state_value, upn,
                "Your account or password is incorrect. Try again.",
            )  # fmt: skip
        g.user = user.upn
        if not state.consents.is_admin(user.upn):
            g.detail = "not an administrator"
            return admin_consent_page(
                tenant, client_id, redirect_uri, state_value, upn,
                "Only an administrator can consent for the organization.",
            )  # fmt: skip
        state.consents.grant_tenant()
        g.detail = "admin consent"
        if redirect_uri:
            fields = {"admin_consent": "True", "tenant": TENANT_ID, "state": state_value}
            joiner = "&" if "?" in redirect_uri else "?"
            query = urlencode({k: v for k, v in fields.items() if v})
            return redirect(redirect_uri + joiner + query, code=302)
        return _message_page(
            "Permissions granted",
            "Mailbox Sync may now act for every user of the sandbox tenant.",
            200,
            error=False,
        )

    @app.get("/<tenant>/oauth2/v2.0/logout")
    def logout(tenant: str) -> Response:
        target = request.args.get("post_logout_redirect_uri", "")
        if target and is_loopback_redirect(target):
            return redirect(target, code=302)
        return _message_page("You signed out", "You signed out of the sandbox.", 200, error=False)

    def token_response(user: User, scopes: list[str], client_id: str, nonce: str | None) -> Any:
        audience, granted = audience_for(scopes)
        lifetime = state.access_token_lifetime
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(granted),
            "expires_in": int(lifetime),
            "ext_expires_in": int(lifetime),
            "access_token": state.issue_access_token(user.upn, audience, frozenset(granted)),
        }
        if "offline_access" in scopes:
            body["refresh_token"] = state.grants.issue_refresh(user.upn, client_id)
        if "openid" in scopes:
            now = int(time.time())
            claims: dict[str, Any] = {
                "ver": "2.0",
                "iss": state.issuer,
                "sub": str(uuid.uuid5(uuid.UUID(user.object_id), client_id)),
                "aud": client_id,
                "exp": now + int(state.id_token_lifetime),
                "iat": now,
                "nbf": now,
                "name": user.display_name,
                "preferred_username": user.upn,
                "oid": user.object_id,
                "tid": TENANT_ID,
            }
            if nonce:
                claims["nonce"] = nonce
            body["id_token"] = state.signer.sign(claims)
        if request.form.get("client_info") == "1":
            body["client_info"] = _client_info(user)
        g.detail = f"{request.form.get('grant_type')} aud={audience}"
        return jsonify(body)

    @app.post("/<tenant>/oauth2/v2.0/token")
    def token(tenant: str) -> Any:
        check_tenant(tenant)
        form = request.form
        client_id = form.get("client_id", "")
        if client_id not in KNOWN_CLIENTS:
            raise OAuthError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        if form.get("client_secret") or form.get("client_assertion"):
            raise OAuthError(
                "invalid_client",
                700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be "
                "presented.",
                status=401,
            )
        grant_type = form.get("grant_type", "")
        requested = form.get("scope", "").split()
        if grant_type == "authorization_code":
            code = state.grants.redeem_code(
                form.get("code", ""),
                client_id,
                form.get("redirect_uri", ""),
                form.get("code_verifier", ""),
            )
            user = _user(code.upn)
            g.user = user.upn
            scopes = requested or list(code.request.scopes)
            if state.consents.missing(user.upn, scopes):
                raise _no_consent(client_id)
            return token_response(user, scopes, client_id, code.request.nonce)
        if grant_type == "refresh_token":
            refresh = state.grants.use_refresh(form.get("refresh_token", ""), client_id)
            user = _user(refresh.upn)
            g.user = user.upn
            scopes = requested or ["openid", "profile", "offline_access"]
            if state.consents.missing(user.upn, scopes):
                raise _no_consent(client_id)  # the refresh token is kept: it serves other scopes
            return token_response(user, scopes, client_id, None)
        if grant_type == DEVICE_GRANT:
            polled = state.devices.poll(form.get("device_code", ""), client_id)
            if isinstance(polled, str):
                raise OAuthError(polled, *DEVICE_ERRORS[polled])
            user = _user(polled.upn or "")
            g.user = user.upn
            return token_response(user, list(polled.scopes), client_id, None)
        raise OAuthError(
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'. The sandbox supports "
            "authorization_code, refresh_token and the device code grant.",
        )

    @app.post("/<tenant>/oauth2/v2.0/devicecode")
    def device_code(tenant: str) -> Any:
        """v2-oauth2-device-code.md: `client_id` and `scope` in, the codes and where to go out."""
        check_tenant(tenant)
        client_id = request.form.get("client_id", "")
        if client_id not in KNOWN_CLIENTS:
            raise OAuthError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        scopes = tuple(request.form.get("scope", "").split())
        if not scopes:
            raise OAuthError(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        code, grant = state.devices.begin(client_id, scopes)
        page = f"{state.browser_url or state.base_url}/{TENANT_ID}/oauth2/deviceauth"
        return jsonify(
            {
                "device_code": code,
                "user_code": grant.user_code,
                "verification_uri": page,
                "expires_in": int(DEVICE_CODE_LIFETIME),
                "interval": POLL_INTERVAL,
                "message": f"To sign in, use a web browser to open the page {page} and enter "
                f"the code {grant.user_code} to authenticate.",
            }
        )

    def device_page(
        tenant: str, status: int = 200, error: str = "", done: str = "", **values: Any
    ) -> Response:
        html = render_template_string(
            pages.DEVICE,
            title="Signed in" if done else "Enter code",
            tenant=TENANT_ID,
            action=f"/{tenant}/oauth2/deviceauth",
            error=error,
            done=done,
            user_code=values.get("user_code", ""),
            upn=values.get("upn", ""),
            scopes=values.get("scopes", ()),
        )
        return Response(html, mimetype="text/html", status=status)

    @app.get("/<tenant>/oauth2/deviceauth")
    def device_auth(tenant: str) -> Response:
        """The verification page (Entra's is microsoft.com/devicelogin)."""
        return device_page(tenant, user_code=request.args.get("code", ""))

    @app.post("/<tenant>/oauth2/deviceauth")
    def device_auth_given(tenant: str) -> Response:
        form = request.form
        user_code, upn = form.get("user_code", ""), form.get("upn", "").strip()
        grant = state.devices.by_user_code(user_code)
        if grant is None:
            g.detail = "AADSTS70000"
            return device_page(
                tenant, 400, "That code is not valid or has expired. Check it, or start the "
                "sign-in again on your device.", user_code=user_code, upn=upn,
            )  # fmt: skip
        if form.get("action") == "cancel":
            state.devices.decline(grant)
            return device_page(tenant, done="You cancelled the sign-in. You may close this page.")
        user = state.tokens.user_for_password(upn, form.get("password", ""))
        if user is None:
            g.detail = "AADSTS50126"
            return device_page(
                tenant, 400, "Your account or password is incorrect. Try again.",
                user_code=user_code, upn=upn, scopes=grant.scopes,
            )  # fmt: skip
        g.user = user.upn
        missing = state.consents.missing(user.upn, grant.scopes)
        if missing and not state.consents.may_consent(user.upn):
            g.detail = "AADSTS90094"
            return device_page(
                tenant, 403, "AADSTS90094: Mailbox Sync needs permissions in your "
                "organization that only an administrator can grant: "
                f"{' '.join(missing)}.", user_code=user_code, upn=upn,
            )  # fmt: skip
        if missing:  # the page listed the scopes: signing in there is the consent
            state.consents.grant(user.upn, missing)
        state.devices.approve(grant, user.upn)
        return device_page(
            tenant, done=f"Signed in as {user.upn}. Return to your device; you may close this page."
        )

    return app


DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_ERRORS: dict[str, tuple[int, str]] = {
    "authorization_pending": (
        70016,
        "The provided request has not yet been authorized by the user. The user must input "
        "their code.",
    ),
    "authorization_declined": (70000, "The user declined the sign-in."),
    "expired_token": (70020, "The provided device code has expired."),
    "bad_verification_code": (70019, "The device code was not recognized."),
}
"""The token endpoint's answers while a device sign-in is not done (v2-oauth2-device-code.md
"Expected errors"; AADSTS70016 is the documented pending code)."""


def _user(upn: str) -> User:
    user = next((u for u in USERS if u.upn == upn), None)
    if user is None:  # a user removed while holding a grant
        raise OAuthError("invalid_grant", 50034, "The user account does not exist.")
    return user
