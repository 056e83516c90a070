"""Trying the sandbox signs in without a certificate warning in a stock browser (issue 11, 1).

The browser context ignores no certificate error: before, Chromium stopped at its full-page
"Your connection is not private" for the sandbox identity provider's throwaway CA. Now the
pages a person sees there are served over plain HTTP on 127.0.0.1, as the app itself is.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from conftest import LiveApp, screenshot, sign_in_to_sandbox
from playwright.sync_api import Page

from sandbox.identity import USERS


def test_sandbox_sign_in_opens_no_certificate_warning(live_app: LiveApp, page: Page) -> None:
    seen: list[str] = []
    page.on("framenavigated", lambda frame: seen.append(frame.url))
    alice = USERS[0]
    sign_in_to_sandbox(page, live_app, alice.upn, alice.password, "11-1-signin")
    identity_pages = [u for u in seen if "/oauth2/v2.0/authorize" in u]
    assert identity_pages, seen
    for url in identity_pages:
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname) == ("http", "127.0.0.1"), url
    assert not any(u.startswith("chrome-error://") for u in seen), seen
    screenshot(page, "11-1-signed-in-without-warning")
