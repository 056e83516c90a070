"""The sandbox identity provider's HTTP endpoints, shaped like Entra ID's v2.0 endpoints.

What msal's PublicClientApplication calls (with `instance_discovery=False`): the OpenID
configuration under `<authority>/v2.0/`, the authorize page the browser opens, and the token
endpoint (authorization code with PKCE, refresh token). See sandbox/README.md for the differences.
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
    signer: Signer = field(default_factory=Signer)
    base_url: str = ""
    access_token_lifetime: float = 3600.0
    id_token_lifetime: float = 3600.0
    _issued: dict[str, list[str]] = field(default_factory=dict)
    """The access tokens issued here, by user (lower-case UPN), so they can be revoked."""
    _issued_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/{TENANT_ID}/v2.0"

    def issue_access_token(self, upn: str, audience: str) -> str:
        """A new access token, remembered so that `revoke_access_tokens` can find it."""
        token = self.tokens.issue(upn, self.access_token_lifetime, audience=audience)
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
        return jsonify(
            {
                "issuer": state.issuer,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query", "form_post"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
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
        if request.form.get("action") == "cancel":
            state.grants.cancel_login(handle)
            return _send_to_client(
                auth,
                {
                    "error": "access_denied",
                    "error_description": "AADSTS65004: User declined to consent to access the app.",
                },
            )
        upn = request.form.get("upn", "").strip()
        user = state.tokens.user_for_password(upn, request.form.get("password", ""))
        if user is None:
            g.detail = "AADSTS50126"
            return login_page(
                tenant, handle, upn, "Your account or password is incorrect. Try again."
            )
        finished = state.grants.finish_login(handle, user.upn)
        if finished is None:  # the same form posted twice at once
            return _message_page("Sign-in expired", "This sign-in page was already used.", 400)
        g.user = user.upn
        _, code = finished
        return _send_to_client(
            auth,
            {"code": code, "client_info": _client_info(user), "session_state": str(uuid.uuid4())},
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
            "access_token": state.issue_access_token(user.upn, audience),
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
            return token_response(user, scopes, client_id, code.request.nonce)
        if grant_type == "refresh_token":
            refresh = state.grants.use_refresh(form.get("refresh_token", ""), client_id)
            user = _user(refresh.upn)
            g.user = user.upn
            scopes = requested or ["openid", "profile", "offline_access"]
            return token_response(user, scopes, client_id, None)
        raise OAuthError(
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'. The sandbox supports "
            "authorization_code and refresh_token.",
        )

    return app


def _user(upn: str) -> User:
    user = next((u for u in USERS if u.upn == upn), None)
    if user is None:  # a user removed while holding a grant
        raise OAuthError("invalid_grant", 50034, "The user account does not exist.")
    return user
