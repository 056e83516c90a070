"""Issue 14.5, web: no framing, a Content-Security-Policy the pages can live with, and posts from
other origins refused (the CSRF token stays as it was).

The browser side of the CSP (every page loads with no violation, htmx still works) is in
tests/browser/test_csp_pages.py; here the headers, the templates and the Origin check.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sync.settings import get_setting
from tests.helpers import ROOT, csrf_token_from, signed_in

PAGES = ["/welcome", "/", "/settings", "/log", "/alerts", "/conflicts", "/signin", "/setup"]


def _directives(policy: str) -> dict[str, list[str]]:
    parts = (d.split() for d in policy.split(";") if d.strip())
    return {p[0]: p[1:] for p in parts}


@pytest.mark.parametrize("path", [*PAGES, "/static/css/app.css", "/no-such-page"])
def test_every_response_refuses_framing_and_carries_the_policy(
    client: FlaskClient, path: str
) -> None:
    response = client.get(path)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = _directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    for directive in ("script-src", "style-src"):
        assert policy[directive] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["object-src"] == ["'none'"]


def test_the_policy_is_also_on_pages_before_the_sign_in_link(app: Flask) -> None:
    response = app.test_client().get("/login?token=wrong")
    assert response.status_code == 403
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE), "an inline <script>"),
    (re.compile(r"<style\b", re.IGNORECASE), "a <style> element"),
    (re.compile(r"\sstyle\s*=", re.IGNORECASE), "a style= attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.IGNORECASE), "an on…= event handler"),
    (re.compile(r"javascript:", re.IGNORECASE), "a javascript: URL"),
    (re.compile(r"\bhx-on\b|\bhx-on:|hx-vals=['\"]\s*js:", re.IGNORECASE), "htmx eval"),
]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_templates_hold_nothing_the_policy_refuses(template: Path) -> None:
    text = re.sub(r"\{#.*?#\}|<!--.*?-->", "", template.read_text(), flags=re.DOTALL)  # comments
    found = [what for pattern, what in INLINE if pattern.search(text)]
    assert found == [], f"{template.name} holds {', '.join(found)}"


def test_htmx_is_told_not_to_add_its_inline_style(client: FlaskClient) -> None:
    page = client.get("/settings").get_data(as_text=True)
    match = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", page)
    assert match, "base.html sets htmx's configuration"
    assert '"includeIndicatorStyles": false' in match.group(1)
    assert '"allowEval": false' in match.group(1)
    css = (ROOT / "static" / "css" / "app.css").read_text()
    assert ".htmx-request .htmx-indicator" in css  # the rules htmx would have injected


# --- Origin on state-changing requests ---------------------------------------------------------


def _token(client: FlaskClient) -> str:
    return csrf_token_from(client.get("/settings").get_data(as_text=True))


def _zone(app: Flask) -> object:
    return get_setting(app.extensions["mailbox_sync.database"], "timezone")


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://localhost:9999", "https://localhost"]
)
def test_a_post_from_another_origin_is_refused_even_with_the_csrf_token(
    app: Flask, client: FlaskClient, origin: str
) -> None:
    response = client.post(
        "/settings/preferences",
        data={"csrf_token": _token(client), "timezone": "Europe/Paris"},
        headers={"Origin": origin},
    )
    assert response.status_code == 403
    assert "sent from another site" in response.get_data(as_text=True)
    assert _zone(app) is None  # nothing was changed


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_other_unsafe_methods_are_checked_too(app: Flask, method: str) -> None:
    app.add_url_rule(
        "/probe", "probe", lambda: "changed", methods=["GET", "PUT", "PATCH", "DELETE"]
    )
    client = signed_in(app)
    token = _token(client)
    refused = client.open(
        "/probe", method=method, headers={"Origin": "http://evil.example", "X-CSRFToken": token}
    )
    assert refused.status_code == 403
    ours = client.open(
        "/probe", method=method, headers={"Origin": "http://localhost", "X-CSRFToken": token}
    )
    assert ours.status_code == 200


def test_same_origin_posts_and_clients_without_origin_still_need_csrf(
    app: Flask, client: FlaskClient
) -> None:
    token = _token(client)
    ours = client.post(
        "/settings/preferences",
        data={"csrf_token": token, "timezone": "Europe/Paris"},
        headers={"Origin": "http://localhost"},
    )
    assert ours.status_code == 303 and _zone(app) == "Europe/Paris"
    # no Origin (curl, a script): the CSRF token decides, as before
    plain = client.post(
        "/settings/preferences", data={"csrf_token": token, "timezone": "Asia/Tokyo"}
    )
    assert plain.status_code == 303 and _zone(app) == "Asia/Tokyo"
    refused = client.post("/settings/preferences", data={"timezone": "Europe/Paris"})
    assert refused.status_code == 400 and "The form expired" in refused.get_data(as_text=True)
    assert _zone(app) == "Asia/Tokyo"
    # htmx sends the token in a header, and the browser its Origin
    htmx = client.post(
        "/sync-now",
        headers={"X-CSRFToken": token, "HX-Request": "true", "Origin": "http://localhost"},
    )
    assert htmx.status_code == 200


def test_the_authoritys_form_post_to_the_callback_is_not_refused(app: Flask) -> None:
    stranger = app.test_client()  # the IdP's page posts cross-site, without our cookie
    response = stranger.post(
        "/signin/callback",
        data={"code": "sbxcode.abc", "state": "xyz"},
        headers={"Origin": "https://127.0.0.1:44321"},
    )
    assert response.status_code == 200  # the bounce page, which re-posts from our origin
    assert "js/bounce.js" in response.get_data(as_text=True)
    assert response.headers["X-Frame-Options"] == "DENY"
