"""Local access control: the one-time sign-in link (Jupyter's pattern) and the welcome page.

The server prints a link with a random token at start; opening it sets a session cookie and
spends the token. Every other page needs that cookie.
"""

from __future__ import annotations

import secrets

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

bp = Blueprint("access", __name__)

OPEN_ENDPOINTS = {"access.login", "access.welcome", "static", "signin.callback"}


def new_login_token() -> str:
    """A fresh one-time token for the start-up link."""
    return secrets.token_urlsafe(32)


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
