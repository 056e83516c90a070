"""The wizard's end (issue 11, point 5), in Chromium against the sandbox.

It once finished with nothing to sync, its summary left the filters out and two links led to
the same dashboard. Here: every filter unticked and no email → "Next" is refused with the
message in view beside the button; then one filter and email tracking → the summary lists
every choice (kinds, each filter's conditions in words, email options, computer, mailbox,
organizations), and the page's one way on is the Finish button.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import (
    DEFAULT_FILTERS,
    LiveApp,
    SandboxProcess,
    arrive,
    choose_organization,
    instance_step,
    open_page,
    screenshot,
    sign_in_to_sandbox,
    start_app,
)
from playwright.sync_api import Browser, Page, expect

BOB = "bob@contoso.example"
SHOTS = "11-5-summary"


@pytest.fixture(scope="module")
def at_choices(
    browser: Browser, shared_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveApp, Page]]:
    app = start_app(tmp_path_factory.mktemp("summary"), sandbox_json=shared_sandbox.json_file)
    page = open_page(browser)
    try:
        sign_in_to_sandbox(page, app, BOB, shared_sandbox.password(BOB), SHOTS)
        choose_organization(page, "contoso", SHOTS)
        page.get_by_test_id("type-exchange").check()
        page.get_by_test_id("auth-oauth").check()
        page.get_by_test_id("next").click()
        arrive(page, "wizard-instance")
        instance_step(page, "summary-pc", None, SHOTS)
        yield app, page
    finally:
        page.context.close()
        app.stop()


def test_nothing_to_sync_is_refused_in_view_then_the_summary_lists_every_choice(
    at_choices: tuple[LiveApp, Page],
) -> None:
    _app, page = at_choices
    for slug in DEFAULT_FILTERS:
        page.get_by_test_id(f"filter-{slug}").locator("input").uncheck()
    page.get_by_test_id("tracking").select_option("none")
    page.get_by_test_id("send-crm-email").uncheck()
    page.get_by_test_id("next").click()
    error = page.get_by_test_id("error")
    expect(error).to_contain_text("Choose at least one thing to sync")
    expect(error).to_be_in_viewport()  # beside the Next button just pressed
    arrive(page, "wizard-choices")
    screenshot(page, f"{SHOTS}-refused")

    page.get_by_test_id("filter-my-open-tasks").locator("input").check()
    page.get_by_test_id("tracking").select_option("replies")
    interval = page.get_by_test_id("interval").locator("option:checked").inner_text()
    page.get_by_test_id("next").click()
    summary = page.get_by_test_id("summary")
    expect(summary).to_be_visible()
    expect(page.get_by_test_id("summary-org")).to_have_text("Contoso Sandbox")
    expect(page.get_by_test_id("summary-mailbox")).to_contain_text(BOB)
    expect(page.get_by_test_id("summary-instance")).to_contain_text("summary-pc")
    expect(page.get_by_test_id("summary-kinds")).to_have_text("Tasks")
    expect(page.get_by_test_id("summary-filter")).to_have_text(
        "Tasks: My open tasks — Owner is me; Status is Open"
    )
    expect(page.get_by_test_id("summary-tracking")).to_have_text(
        "Replies to email tracked in the CRM"
    )
    expect(page.get_by_test_id("summary-email")).to_contain_text("Sent items are tracked too")
    expect(page.get_by_test_id("summary-interval")).to_have_text(interval)
    # one way on to the dashboard in the page's content
    main = page.locator("main")
    expect(main.locator("a[href='/'], a[href^='/?']")).to_have_count(0)
    expect(main.get_by_test_id("finish")).to_have_count(1)
    screenshot(page, f"{SHOTS}-done")
