"""Two computers of one user: only one synchronizes messaging data, and both say which.

Every app instance here (its own data dir and `run.py serve` process) works against the same
sandbox, so they see the same mailbox, where the "synchronizing computer" claim lives. The first
computer ("desk-pc") takes the claim; a computer that answers "No" works without messaging sync
and says so; one that answers "Yes" takes over, and desk-pc's next run stops with the reason.
The tests run in file order: "No" first, while desk-pc still holds the claim.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    LiveApp,
    SandboxProcess,
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
from playwright.sync_api import Browser, Locator, Page, expect

ALICE = "alice@contoso.example"
KEEP = ("my-active-contacts",)  # a small first sync: the claim is what matters here


def set_up(
    page: Page, app: LiveApp, sandbox: SandboxProcess, name: str, answer: bool | None
) -> None:
    """Alice's wizard on this computer, `answer` to the take-over question (None: not asked)."""
    sign_in_to_sandbox(page, app, ALICE, sandbox.password(ALICE), name)
    choose_organization(page, "contoso", name)
    exchange_mailbox_step(page, ALICE, name)
    instance_step(page, name, answer, name)
    choices_and_finish(page, name, keep=KEEP)


def expect_ok(row: Locator) -> None:
    """A run that ended well: its own row says "ok", or it was folded into the quiet row."""
    if row.get_attribute("data-testid") != "quiet-row":
        expect(row.locator(".badge")).to_have_text("ok")


def sync_now(page: Page) -> Locator:
    """Press Sync now and wait for that run to finish."""
    page.reload()
    newest = max(run_ids(page), default=0)
    page.get_by_test_id("sync-now").click()
    return wait_for_messaging_run(page, newer_than=newest)


@pytest.fixture(scope="module")
def desk(
    browser: Browser, shared_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveApp, Page]]:
    """The first computer, set up while nobody holds the claim: it becomes the synchronizing one."""
    app = start_app(tmp_path_factory.mktemp("desk-pc"), sandbox_json=shared_sandbox.json_file)
    page = open_page(browser)
    try:
        set_up(page, app, shared_sandbox, "desk-pc", None)
        expect(page.get_by_test_id("messaging-disabled")).to_have_count(0)
        yield app, page
    finally:
        page.context.close()
        app.stop()


@pytest.fixture
def second(
    browser: Browser, shared_sandbox: SandboxProcess, tmp_path: Path
) -> Iterator[tuple[LiveApp, Page]]:
    app = start_app(tmp_path / "second", sandbox_json=shared_sandbox.json_file)
    page = open_page(browser)
    yield app, page
    page.context.close()
    app.stop()


def test_no_keeps_this_computer_without_messaging_sync(
    desk: tuple[LiveApp, Page], second: tuple[LiveApp, Page], shared_sandbox: SandboxProcess
) -> None:
    _, desk_page = desk
    app, page = second
    set_up(page, app, shared_sandbox, "tablet", False)

    banner = page.get_by_test_id("messaging-disabled")
    expect(banner).to_contain_text("This computer does not synchronize messaging data")
    expect(banner).to_contain_text("desk-pc is the synchronizing computer.")
    screenshot(page, "tablet-10-dashboard-without-messaging")

    # it still works: Sync now runs, and the run says it did no messaging sync
    newest = sync_now(page)
    expect(banner).to_be_visible()
    expect(newest.locator(".badge")).to_have_text("skipped")
    screenshot(page, "tablet-11-dashboard-after-sync-now")

    # and desk-pc keeps synchronizing
    ran = sync_now(desk_page)
    expect(desk_page.get_by_test_id("messaging-disabled")).to_have_count(0)
    expect_ok(ran)
    screenshot(desk_page, "desk-pc-10-still-synchronizing")


def test_yes_takes_over_and_the_first_computer_says_why(
    desk: tuple[LiveApp, Page], second: tuple[LiveApp, Page], shared_sandbox: SandboxProcess
) -> None:
    desk_app, desk_page = desk
    app, page = second
    set_up(page, app, shared_sandbox, "laptop", True)
    expect(page.get_by_test_id("messaging-disabled")).to_have_count(0)
    screenshot(page, "laptop-10-dashboard-synchronizing")

    # desk-pc's next run finds the claim gone: messaging stops there, and it says why
    sync_now(desk_page)
    banner = desk_page.get_by_test_id("messaging-disabled")
    expect(banner).to_contain_text("This computer does not synchronize messaging data")
    expect(banner).to_contain_text("laptop is the synchronizing computer.")
    screenshot(desk_page, "desk-pc-11-dashboard-messaging-stopped")
    desk_page.goto(desk_app.base_url + "/alerts")
    expect(desk_page.get_by_test_id("alert-instance-claim-lost")).to_contain_text(
        "Another computer (laptop) is now the synchronizing computer."
    )
    screenshot(desk_page, "desk-pc-12-alerts")

    # the new synchronizing computer syncs
    expect_ok(sync_now(page))
    screenshot(page, "laptop-11-dashboard-after-sync-now")
