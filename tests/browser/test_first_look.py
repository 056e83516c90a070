"""A new user opens the printed link, looks at the dashboard, presses Sync now, sees a run."""

from __future__ import annotations

from conftest import LiveApp, screenshot
from playwright.sync_api import Page, expect


def test_link_dashboard_and_sync_now(live_app: LiveApp, page: Page) -> None:
    page.goto(live_app.base_url + "/")
    expect(page.locator("body")).to_contain_text("one-time")
    screenshot(page, "00-welcome-without-link")

    page.goto(live_app.link)  # a new user lands on the setup wizard …
    expect(page.get_by_test_id("dashboard-first")).to_be_visible()
    screenshot(page, "00-wizard-first-page")
    page.get_by_test_id("dashboard-first").click()  # … and may look at the dashboard first
    expect(page.get_by_test_id("sync-now")).to_be_visible()
    before = page.get_by_test_id("run-row").count()
    page.get_by_test_id("sync-now").click()
    expect(page.get_by_test_id("run-row")).to_have_count(before + 1, timeout=20_000)
    screenshot(page, "01-dashboard-after-sync-now")
