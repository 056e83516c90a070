"""Local access control: the one-time sign-in link (Jupyter's pattern), the welcome page, and
what the browser is told to enforce.

The server prints a link with a random token at start; opening it sets a session cookie and
spends the token. Every other page needs that cookie. Every response carries a
Content-Security-Policy (scripts and styles from our own files only, so an injected `<script>`
or `onerror=` does nothing) and refuses to be framed (clickjacking); a state-changing request
that a browser sent from another origin is refused, even one that carries a valid CSRF token.
"""

from __future__ import annotations

import secrets

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from sync.redaction import remember_secret

bp = Blueprint("access", __name__)

OPEN_ENDPOINTS = {"access.login", "access.welcome", "static", "signin.callback"}
CROSS_ORIGIN_ENDPOINTS = {"signin.callback"}
"""Posted to from another origin on purpose: the authority's form_post (msal checks `state`)."""
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",  # htmx and static/js only: no inline script, no eval
        "style-src 'self'",  # no <style> or style="" (htmx's own is off: base.html)
        "img-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors' older twin, for browsers without CSP 2
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on our posts
    "Referrer-Policy": "same-origin",
}


def new_login_token() -> str:
    """A fresh one-time token for the start-up link (masked in any log line that shows it)."""
    token = secrets.token_urlsafe(32)
    remember_secret(token)
    return token


def _own_origin() -> str:
    return f"{request.scheme}://{request.host}".lower()


@bp.before_app_request
def refuse_other_origins() -> Response | tuple[str, int] | None:
    """A browser names the page that sent a post in `Origin`: it must be one of ours.

    Without `Origin` (curl, scripts, old browsers) the CSRF token alone decides, as before.
    """
    if request.routing_exception is not None or request.method not in UNSAFE_METHODS:
        return None
    if request.endpoint in CROSS_ORIGIN_ENDPOINTS:
        return None
    origin = request.headers.get("Origin")
    if origin is None or origin.lower() == _own_origin():
        return None
    current_app.logger.warning(
        "refused %s %s from origin %s", request.method, request.path, origin[:200]
    )
    html = render_template(
        "error.html",
        title="Refused: sent from another site",
        message="This request came from a page that is not this app. Open the app from its "
        "own link and try again there.",
        detail="",
    )
    return html, 403


@bp.after_app_request
def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.before_app_request
def require_sign_in() -> Response | None:
    if request.routing_exception is not None:  # unknown URL or refused Host: Flask answers
        return None
    if request.endpoint in OPEN_ENDPOINTS or session.get("signed_in"):
        return None
    if request.headers.get("HX-Request"):
        response = Response("Signed out", status=401)
        response.headers["HX-Redirect"] = url_for("access.welcome")
        return response
    return redirect(url_for("access.welcome"))


@bp.get("/login")
def login() -> Response | str:
    expected = current_app.config.get("LOGIN_TOKEN")
    given = request.args.get("token", "")
    if expected and given and secrets.compare_digest(expected, given):
        current_app.config["LOGIN_TOKEN"] = None  # one time only
        session.clear()
        session["signed_in"] = True
        session.permanent = True
        return redirect(url_for("dashboard.index"))
    return render_template("welcome.html", failed=bool(given)), 403


@bp.get("/welcome")
def welcome() -> str:
    return render_template("welcome.html", failed=False)
