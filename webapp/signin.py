"""Wizard step 1, sign in: Microsoft Entra ID or the sandbox, through msal's auth code flow.

/signin offers both; /signin/start builds the flow (PKCE, nonce, state), keeps it in the session
and sends the browser to the authority; the authority posts back to /signin/callback (the
redirect URI, on 127.0.0.1 or localhost). The session cookie is SameSite=Strict, so it is not
sent with that cross-site post: the callback then answers with a page that re-posts the same
fields from our own origin, which does carry the cookie (the flow's `state` is what binds the
answer to this sign-in; msal checks it).
"""

from __future__ import annotations

import re
from typing import Any

from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask.sansio.app import App
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from sync.auth import (
    MICROSOFT_AUTHORITY,
    EncryptionUnavailable,
    TokenProvider,
    clear_token_cache,
    discovery_scope,
    provider_from_config,
)
from sync.runs import raise_alert, resolve_alerts
from sync.settings import get_setting, set_setting
from sync.sides import SideError
from webapp import access, csrf, state

bp = Blueprint("signin", __name__, url_prefix="/signin")

NEXT_STEP = "/setup/organization"
ANSWER_FIELDS = frozenset(
    {"code", "state", "client_info", "session_state", "error", "error_description", "error_uri"}
)
"""The authorization response's fields (RFC 6749 §4.1.2); anything else is dropped."""
PLAINTEXT_ALERT = "token_cache_unencrypted"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")


@bp.record_once
def _setup(setup: BlueprintSetupState) -> None:
    # The authority's post back carries no session cookie (SameSite=Strict): it must reach us.
    access.OPEN_ENDPOINTS.add("signin.callback")
    _install_gettext_fallback(setup.app)


def _install_gettext_fallback(app: App) -> None:
    """Templates use `_()`; until Flask-Babel is set up on the app, show the English text."""
    if "_" not in app.jinja_env.globals:

        def identity(text: str, **values: Any) -> str:
            return text % values if values else text

        app.jinja_env.globals["_"] = identity


def sandbox_info() -> dict[str, Any] | None:
    """The running sandbox's describe() dict (app config SANDBOX_INFO, set by run.py serve)."""
    info = current_app.config.get("SANDBOX_INFO")
    if info:
        return dict(info)
    running = current_app.extensions.get("mailbox_sync.sandbox")
    return dict(running.describe()) if running is not None else None


def current_provider() -> TokenProvider | None:
    """The token provider of the signed-in account, for pages and services that need tokens."""
    config = get_setting(state.database(), "auth")
    if not config:
        return None
    return provider_from_config(config, current_app.config["DATA_DIR"], sandbox_info())


def _next_url() -> str:
    adapter = current_app.url_map.bind("localhost")
    try:
        adapter.match(NEXT_STEP, method="GET")
    except HTTPException:
        return url_for("dashboard.index")
    return NEXT_STEP


def _page(status: int = 200, **context: Any) -> tuple[str, int]:
    database = state.database()
    context.setdefault("error", None)
    context.setdefault("consent", None)
    html = render_template(
        "signin/signin.html",
        account=get_setting(database, "account_upn"),
        auth=get_setting(database, "auth") or {},
        sandbox=sandbox_info(),
        client_id=current_app.config.get("MICROSOFT_CLIENT_ID")
        or get_setting(database, "microsoft_client_id")
        or "",
        tenant=get_setting(database, "microsoft_tenant") or "organizations",
        redirect_uri=_redirect_uri(),
        **context,
    )
    return html, status


def _redirect_uri() -> str:
    """The callback on the host the user opened (127.0.0.1 or localhost): the session cookie
    belongs to that host, so the authority must come back to it."""
    return url_for("signin.callback", _external=True)


def _config_from_form() -> dict[str, Any]:
    """What the user chose: the provider, its authority and client id (validated)."""
    provider = request.form.get("provider", "")
    if provider == "sandbox":
        info = sandbox_info()
        if info is None:
            raise ValueError("The sandbox is not running. Start the app without a tenant.")
        return {
            "provider": "sandbox",
            "authority": str(info["authority"]).rstrip("/"),
            "client_id": str(info["client_id"]),
        }
    if provider == "microsoft":
        client_id = request.form.get("client_id", "").strip()
        tenant = request.form.get("tenant", "").strip() or "organizations"
        if not _GUID.match(client_id):
            raise ValueError(
                "Enter the application (client) ID of your app registration: a GUID like "
                "00000000-0000-0000-0000-000000000000."
            )
        if not _TENANT.match(tenant):
            raise ValueError("Enter a tenant ID or domain, or leave 'organizations'.")
        authority = MICROSOFT_AUTHORITY.rsplit("/", 1)[0] + "/" + tenant
        return {"provider": "microsoft", "authority": authority, "client_id": client_id}
    raise ValueError("Choose Microsoft or the sandbox.")


@bp.get("")
def index() -> tuple[str, int]:
    return _page()


@bp.post("/start")
def start() -> Response | tuple[str, int]:
    database = state.database()
    try:
        config = _config_from_form()
    except ValueError as exc:
        return _page(400, error=str(exc))
    consented = bool(get_setting(database, "token_cache_plaintext_consent"))
    if request.form.get("consent_plaintext") == "yes":
        consented = True
        set_setting(database, "token_cache_plaintext_consent", True)
    config["plaintext"] = consented
    if config["provider"] == "microsoft":
        set_setting(database, "microsoft_client_id", config["client_id"])
        set_setting(database, "microsoft_tenant", config["authority"].rsplit("/", 1)[1])
    try:
        provider = provider_from_config(config, current_app.config["DATA_DIR"], sandbox_info())
    except EncryptionUnavailable as exc:
        return _page(consent={**config, "reason": exc.reason})
    except SideError as exc:
        return _page(400, error=exc.message)
    if not provider.cache_is_encrypted:
        raise_alert(
            database,
            PLAINTEXT_ALERT,
            "Token cache stored unencrypted",
            "This computer has no keyring to encrypt sign-in tokens, so they are kept in a "
            "file in the data folder that only your user account may read (you agreed).",
            "Install and unlock a keyring (libsecret with GNOME Keyring or KWallet, and "
            "PyGObject), then sign out and sign in again to encrypt the cache.",
        )
    try:
        flow = provider.begin(_redirect_uri(), _sign_in_scopes(config))
    except SideError as exc:
        return _page(502, error=exc.message)
    session["signin"] = {"flow": flow, "config": config}
    return redirect(flow["auth_uri"])


def _sign_in_scopes(config: dict[str, Any]) -> list[str]:
    """Global Discovery at sign-in, so the next step can list the organizations at once."""
    if config["provider"] == "sandbox":
        info = sandbox_info() or {}
        return [discovery_scope(info.get("discovery_url"))]
    return [discovery_scope()]


@bp.route("/callback", methods=["GET", "POST"])
def callback() -> Response | tuple[str, int]:
    sent = request.form if request.method == "POST" else request.args
    bounced = "bounced" in sent
    answer = {k: v for k, v in sent.items() if k in ANSWER_FIELDS}
    pending = session.get("signin")
    if pending is None:
        if not bounced:
            # Most likely the cross-site post without our cookie: re-send from our origin.
            html = render_template("signin/bounce.html", fields=answer, method=request.method)
            return html, 200
        if not session.get("signed_in"):
            return redirect(url_for("access.welcome"))
        return _page(400, error="This sign-in was not started here or has expired. Start again.")
    if not session.get("signed_in"):
        return redirect(url_for("access.welcome"))
    database = state.database()
    config = pending["config"]
    try:
        provider = provider_from_config(config, current_app.config["DATA_DIR"], sandbox_info())
        account = provider.complete(pending["flow"], answer)
    except (SideError, EncryptionUnavailable) as exc:
        session.pop("signin", None)
        return _page(400, error=getattr(exc, "message", str(exc)))
    session.pop("signin", None)
    set_setting(database, "account_upn", account.username)
    set_setting(database, "auth", {**config, "username": account.username})
    set_setting(database, "mode", "sandbox" if config["provider"] == "sandbox" else "tenant")
    resolve_alerts(database, "signin_required")
    return redirect(_next_url())


@bp.post("/signout")
def signout() -> Response:
    database = state.database()
    clear_token_cache(current_app.config["DATA_DIR"])
    resolve_alerts(database, PLAINTEXT_ALERT)  # no tokens are stored any more
    set_setting(database, "account_upn", None)
    set_setting(database, "auth", None)
    return redirect(url_for("signin.index"))


csrf.exempt(callback)  # the authority cannot send our CSRF token; msal checks `state` instead
