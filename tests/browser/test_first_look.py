"""A new user opens the printed link and looks at the dashboard before setting up: it says
"Finish setup" where the cards would be, offers no Sync now (nothing to sync yet: nothing the
user sees may do nothing), and its link leads back to the wizard (issue 11 point 8)."""

from __future__ import annotations

from conftest import LiveApp, arrive, screenshot
from playwright.sync_api import Page, expect


def test_link_dashboard_and_sync_now(live_app: LiveApp, page: Page) -> None:
    page.goto(live_app.base_url + "/")
    expect(page.locator("body")).to_contain_text("one-time")
    screenshot(page, "00-welcome-without-link")

    page.goto(live_app.link)  # a new user lands on the setup wizard …
    arrive(page, "dashboard-first")
    screenshot(page, "00-wizard-first-page")
    page.get_by_test_id("dashboard-first").click()  # … and may look at the dashboard first
    arrive(page, "finish-setup")
    expect(page.get_by_test_id("sync-now")).to_have_count(0)
    screenshot(page, "01-dashboard-before-setup")
    page.get_by_test_id("finish-setup-link").click()
    arrive(page, "signin-link")
