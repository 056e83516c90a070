"""Wizard step 1, sign in: Microsoft Entra ID or the sandbox, through msal's auth code flow.

/signin offers both; /signin/start builds the flow (PKCE, nonce, state), keeps it in the session
and sends the browser to the authority; the authority posts back to /signin/callback (the
redirect URI, on 127.0.0.1 or localhost). The session cookie is SameSite=Strict, so it is not
sent with that cross-site post: the callback then answers with a page that re-posts the same
fields from our own origin, which does carry the cookie (the flow's `state` is what binds the
answer to this sign-in; msal checks it).

Incremental consent: the first sign-in asks only for Global Discovery. When a later silent token
request finds a resource without consent (AADSTS65001, sync.auth.ConsentRequired), the Sign-in
page lists it and /signin/consent runs the same flow for exactly that resource's scope, then
returns to the page the user came from. Where only an administrator may consent, the page shows
the tenant's admin consent URL instead.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

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
    SIGN_IN_ALERT,
    ConsentRequired,
    EncryptionUnavailable,
    PendingConsent,
    TokenProvider,
    admin_consent_url,
    clear_token_cache,
    describe_scope,
    forget_consent_needed,
    needs_admin,
    note_consent_needed,
    pending_consents,
    provider_from_config,
    scope_resource,
)
from sync.runs import resolve_alerts
from sync.settings import get_setting, set_setting
from sync.setup.messages import N_, Msg
from sync.setup.profile import STEP_TITLES, STEPS, Profile
from sync.setup.signin import (
    PLAINTEXT_ALERT,
    encryption_fix,
    microsoft_config,
    note_unencrypted_cache,
    remember_choice,
    remember_sign_in,
    sandbox_config,
    sign_in_scopes,
)
from sync.sides import SideError
from webapp import access, csrf, state
from webapp.i18n import translate

bp = Blueprint("signin", __name__, url_prefix="/signin")

NEXT_STEP = "/setup/organization"
ANSWER_FIELDS = frozenset(
    {"code", "state", "client_info", "session_state", "error", "error_description", "error_uri"}
)
"""The authorization response's fields (RFC 6749 §4.1.2); anything else is dropped."""
_SCOPE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~%\-]+)*/[A-Za-z0-9._]+$")
"""A delegated scope of a resource: `<https origin>[/path]/<permission>` (the sandbox's are
http on 127.0.0.1)."""


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


def _wizard_current(database: Any) -> str | None:
    """The furthest wizard step reached, once signed in (its steps are links then)."""
    if not get_setting(database, "account_upn"):
        return None
    return Profile(database, current_app.config["DATA_DIR"]).current_step()


def _page(status: int = 200, **context: Any) -> tuple[str, int]:
    database = state.database()
    context.setdefault("error", None)
    context.setdefault("consent", None)
    context.setdefault("pending", _pending_for_page())
    context.setdefault("next_url", _return_to())
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
        steps=STEPS,
        step_titles=STEP_TITLES,
        wizard_current=_wizard_current(database),
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
        return sandbox_config(sandbox_info())
    if provider == "microsoft":
        return microsoft_config(request.form.get("client_id", ""), request.form.get("tenant", ""))
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
    remember_choice(database, config)
    try:
        provider = provider_from_config(config, current_app.config["DATA_DIR"], sandbox_info())
    except EncryptionUnavailable as exc:
        return _page(consent={**config, "reason": exc.reason, "command": exc.command})
    except SideError as exc:
        return _page(400, error=exc.message)
    if not provider.cache_is_encrypted:
        note_unencrypted_cache(database, encryption_fix())
    try:
        flow = provider.begin(_redirect_uri(), sign_in_scopes(config, sandbox_info()))
    except SideError as exc:
        return _page(502, error=exc.message)
    session["signin"] = {"flow": flow, "config": config}
    return redirect(flow["auth_uri"])


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
    if pending.get("consent"):
        session.pop("signin", None)
        return _finish_consent(pending, answer)
    database = state.database()
    config = pending["config"]
    try:
        provider = provider_from_config(config, current_app.config["DATA_DIR"], sandbox_info())
        account = provider.complete(pending["flow"], answer)
    except (SideError, EncryptionUnavailable) as exc:
        session.pop("signin", None)
        return _page(400, error=getattr(exc, "message", str(exc)))
    session.pop("signin", None)
    remember_sign_in(database, config, account)
    return redirect(_next_url())


@bp.post("/signout")
def signout() -> Response:
    database = state.database()
    clear_token_cache(current_app.config["DATA_DIR"])
    resolve_alerts(database, PLAINTEXT_ALERT)  # no tokens are stored any more
    set_setting(database, "account_upn", None)
    set_setting(database, "auth", None)
    return redirect(url_for("signin.index"))


# --- incremental consent ---------------------------------------------------------------------


def consent_label(scopes: list[str] | tuple[str, ...]) -> Msg:
    """What `scopes` (one resource's) give access to, in words the page translates."""
    kind, name = describe_scope(scopes[0]) if scopes else ("other", "")
    if kind == "mailbox":
        return N_("access to your mailbox (%(api)s)", api=name)
    if kind == "discovery":
        return N_("access to your list of organizations (Global Discovery)")
    if kind == "organization":
        return N_("access to the %(name)s organization", name=name)
    return N_("access to %(resource)s", resource=name)


def consent_message(error: ConsentRequired) -> Msg:
    """For the wizard: which consent is missing and where to give it."""
    what = translate(consent_label(error.scopes))
    if error.admin and error.admin_url:
        return N_(
            "Your organization lets only an administrator allow %(what)s for Mailbox Sync. "
            "Send your administrator this link to approve it: %(url)s",
            what=what,
            url=error.admin_url,
        )
    return N_(
        "Mailbox Sync needs your consent for %(what)s. Open the Sign-in page and choose "
        '"Give consent", then come back here.',
        what=what,
    )


def _return_to() -> str:
    """Where to come back after a consent: `?next=`, else the page that linked here."""
    wanted = request.values.get("next") or ""
    if not wanted and request.referrer:
        parts = urlsplit(request.referrer)
        if parts.netloc == request.host and not parts.path.startswith(bp.url_prefix or "/signin"):
            wanted = parts.path + (f"?{parts.query}" if parts.query else "")
    return _local_path(wanted)


def _local_path(value: str) -> str:
    """A path on this app (never another site: `//host`, `https://…` and backslashes are out)."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _pending_for_page() -> list[dict[str, Any]]:
    try:
        found = pending_consents(current_app.config["DATA_DIR"])
    except OSError:
        return []
    return [_describe_pending(p) for p in found]


def _describe_pending(pending: PendingConsent) -> dict[str, Any]:
    return {
        "scopes": list(pending.scopes),
        "label": consent_label(pending.scopes),
        "admin": pending.admin,
        "admin_url": _admin_url() if pending.admin else "",
    }


def _admin_url() -> str:
    """The tenant-wide admin consent page for the signed-in app registration."""
    config = get_setting(state.database(), "auth") or {}
    provider = None
    try:
        provider = current_provider()
    except (SideError, EncryptionUnavailable, KeyError):
        provider = None
    if provider is not None:
        return provider.admin_consent_url(config.get("username"))
    authority = str(config.get("authority") or MICROSOFT_AUTHORITY)
    return admin_consent_url(authority, str(config.get("client_id") or ""))


def _requested_scopes(values: Any) -> list[str]:
    """The scopes asked for: well formed and of one resource (one consent, one token)."""
    scopes = [s.strip() for s in values.getlist("scope") if s.strip()]
    if not scopes or len(scopes) > 10 or any(len(s) > 500 or not _SCOPE.match(s) for s in scopes):
        raise ValueError("bad scope")
    if len({scope_resource(s) for s in scopes}) != 1:
        raise ValueError("more than one resource")
    return scopes


def _consent_page(status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("error", None)
    context.setdefault("admin", False)
    context.setdefault("admin_url", "")
    html = render_template("signin/consent.html", **context)
    return html, status


@bp.get("/consent")
def consent() -> Response | tuple[str, int]:
    """Name the resource that needs consent and offer to ask for exactly its scope."""
    config = get_setting(state.database(), "auth")
    if not config:
        return redirect(url_for("signin.index"))
    try:
        scopes = _requested_scopes(request.args)
    except ValueError:
        return _page(400, error="This consent link is not valid. Start again from this page.")
    pending = next(
        (
            p
            for p in pending_consents(current_app.config["DATA_DIR"])
            if set(p.scopes) == set(scopes)
        ),
        None,
    )
    admin = bool(pending and pending.admin)
    return _consent_page(
        scopes=scopes,
        label=consent_label(scopes),
        account=config.get("username"),
        next_url=_return_to(),
        admin=admin,
        admin_url=_admin_url() if admin else "",
    )


@bp.post("/consent")
def consent_start() -> Response | tuple[str, int]:
    """Start the authorization code flow for exactly the scopes that lack consent."""
    database = state.database()
    config = get_setting(database, "auth")
    if not config:
        return redirect(url_for("signin.index"))
    try:
        scopes = _requested_scopes(request.form)
    except ValueError:
        return _page(400, error="This consent link is not valid. Start again from this page.")
    back = _local_path(request.form.get("next") or "/")
    try:
        provider = provider_from_config(config, current_app.config["DATA_DIR"], sandbox_info())
        flow = provider.begin(
            _redirect_uri(), scopes, login_hint=config.get("username"), prompt=None
        )
    except (SideError, EncryptionUnavailable) as exc:
        return _page(502, error=getattr(exc, "message", str(exc)))
    session["signin"] = {
        "flow": flow,
        "config": config,
        "consent": {"scopes": scopes, "next": back},
    }
    return redirect(flow["auth_uri"])


def _finish_consent(pending: dict[str, Any], answer: dict[str, str]) -> Response | tuple[str, int]:
    """The authority's answer to a consent request: on success, back where the user was."""
    database = state.database()
    config, wanted = pending["config"], pending["consent"]
    scopes, back = list(wanted["scopes"]), str(wanted["next"])
    username = config.get("username")
    data_dir = current_app.config["DATA_DIR"]
    page = {"scopes": scopes, "label": consent_label(scopes), "account": username, "next_url": back}
    if answer.get("error"):
        description = answer.get("error_description", "") or answer["error"]
        admin = needs_admin(description)
        note_consent_needed(data_dir, scopes, username, admin=True if admin else None)
        return _consent_page(
            400,
            error=description.splitlines()[0],
            admin=admin,
            admin_url=_admin_url(),
            **page,
        )
    try:
        provider = provider_from_config(config, data_dir, sandbox_info())
        account = provider.complete(pending["flow"], answer)
    except (SideError, EncryptionUnavailable) as exc:
        return _consent_page(400, error=getattr(exc, "message", str(exc)), **page)
    if username and account.username.lower() != str(username).lower():
        return _consent_page(
            400,
            error=translate(
                N_(
                    "You signed in as %(other)s, but Mailbox Sync is signed in as %(account)s. "
                    "Give the consent as %(account)s.",
                    other=account.username,
                    account=username,
                )
            ),
            **page,
        )
    forget_consent_needed(data_dir, scopes)
    resolve_alerts(database, SIGN_IN_ALERT)
    return redirect(back)


csrf.exempt(callback)  # the authority cannot send our CSRF token; msal checks `state` instead
