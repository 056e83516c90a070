"""The walk a new user takes (issue 11, "must show"), as one test in Debian's Chromium with no
certificate bypass: `run.py serve` with nothing configured (what `make run` starts: the app on
its own sandbox), the printed one-time link, the sandbox sign-in, every wizard step, the first
sync, Sync now, then Mail, Conflicts, Settings and Log — and the same pages again in Japanese,
switched with the page's own language link. A screenshot of every page goes to
test-artifacts/screenshots/walk-*.png; the Japanese pages are checked to be Japanese (the
crawler in tests/web/test_i18n_crawl.py checks every word of them with test data).

The walk is meant to take under a minute; it prints how long it took (speed is measured, never
asserted: see bench/).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    LiveApp,
    arrive,
    choices_and_finish,
    choose_organization,
    exchange_mailbox_step,
    instance_step,
    open_page,
    run_ids,
    screenshot,
    sign_in_to_sandbox,
    start_app,
    wait_for_messaging_run,
)
from playwright.sync_api import Browser, Page, expect

ALICE = "alice@contoso.example"
PAGES = ("mail", "conflicts", "settings", "log")
"""The navigation's pages after the dashboard, in the order a user looks at them."""


@pytest.fixture
def fresh_app(tmp_path: Path) -> Iterator[LiveApp]:
    app = start_app(tmp_path / "data")  # its own sandbox, as `make run` on a new computer
    yield app
    app.stop()


def _password(app: LiveApp) -> str:
    """Alice's sandbox password, as the sign-in page lists it for a new user."""
    from sandbox.identity import user_by_upn

    return user_by_upn(ALICE).password


def _visit(page: Page, name: str, shot: str) -> None:
    """Follow the navigation's link to `name`: the page itself answers (not an error page nor
    a redirect elsewhere), then its screenshot."""
    with page.expect_response(lambda r: r.url.split("?")[0].endswith(f"/{name}")) as answer:
        page.get_by_test_id(f"nav-{name}").click()
    assert answer.value.status == 200, (name, answer.value.status)
    page.wait_for_load_state("networkidle")
    assert page.url.split("?")[0].endswith(f"/{name}"), page.url
    screenshot(page, shot)


def test_the_new_user_walk_in_english_then_japanese(browser: Browser, fresh_app: LiveApp) -> None:
    started = time.monotonic()
    page = open_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None
    )

    sign_in_to_sandbox(page, fresh_app, ALICE, _password(fresh_app), "walk")
    choose_organization(page, "contoso", "walk")
    exchange_mailbox_step(page, ALICE, "walk")
    instance_step(page, "walk-pc", None, "walk")
    choices_and_finish(page, "walk", keep=("my-active-contacts",))

    first = wait_for_messaging_run(page, exclude_skipped=True, timeout=60_000)
    expect(first).to_be_visible()
    screenshot(page, "walk-10-dashboard-first-sync")
    newest = max(run_ids(page), default=0)
    page.get_by_test_id("sync-now").click()
    wait_for_messaging_run(page, newer_than=newest)
    screenshot(page, "walk-11-dashboard-after-sync-now")
    for number, name in enumerate(PAGES, start=12):
        _visit(page, name, f"walk-{number}-{name}")
    expect(page.locator("html")).to_have_attribute("lang", "en")

    page.get_by_test_id("brand").click()
    page.get_by_test_id("lang-ja").click()  # the page's own language switch
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.get_by_test_id("sync-now")).to_have_text("今すぐ同期")
    screenshot(page, "walk-20-ja-dashboard")
    for number, name in enumerate(PAGES, start=21):
        _visit(page, name, f"walk-{number}-ja-{name}")
        expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.get_by_test_id("nav-settings")).to_have_text("設定")
    page.goto(fresh_app.base_url + "/setup/done")  # the wizard's summary, in Japanese too
    arrive(page, "wizard-done")
    screenshot(page, "walk-25-ja-summary")

    assert errors == [], errors
    print(f"\nthe new user's walk took {time.monotonic() - started:.1f} s")
    page.context.close()
