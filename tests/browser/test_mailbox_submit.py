"""The mailbox step answers every submit where the user is looking (issue 11, point 2).

Typing an address and pressing "Test connection" or "Next" at once once showed nothing: the
message came only after leaving the field and waiting. Each try here types and clicks at once,
with no wait for the field's own check.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import (
    LiveApp,
    SandboxProcess,
    arrive,
    choose_organization,
    holding,
    open_page,
    screenshot,
    sign_in_to_sandbox,
    start_app,
)
from playwright.sync_api import Browser, Page, expect

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"


@pytest.fixture(scope="module")
def bob(
    browser: Browser, shared_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveApp, Page]]:
    app = start_app(tmp_path_factory.mktemp("bob"), sandbox_json=shared_sandbox.json_file)
    page = open_page(browser)
    try:
        sign_in_to_sandbox(page, app, BOB, shared_sandbox.password(BOB), "11-2")
        choose_organization(page, "contoso", "11-2")
        yield app, page
    finally:
        page.context.close()
        app.stop()


@pytest.mark.parametrize("button", ["test-connection", "next"])
@pytest.mark.parametrize("address", [ALICE, ""])
def test_type_and_click_at_once(bob: tuple[LiveApp, Page], button: str, address: str) -> None:
    app, page = bob
    page.goto(app.base_url + "/setup/mailbox")
    field = page.get_by_test_id("field-email")
    field.fill("")
    field.type(address or " ")
    if not address:
        field.fill("")
    page.get_by_test_id(button).click()  # no blur first, no wait
    if address:
        expected = f"The mailbox {ALICE} is already used by another CRM user, Alice Wong."
    else:
        expected = "address"
    expect(page.get_by_test_id("error-email")).to_contain_text(expected, timeout=10_000)
    arrive(page, "wizard-mailbox")  # refused: still on the step
    screenshot(page, f"11-2-{button}-{'other' if address else 'empty'}")


def test_a_redraw_between_press_and_release_keeps_the_click(bob: tuple[LiveApp, Page]) -> None:
    """Leaving the field for the button redraws the fields; that redraw may land while the
    mouse button is still down. The click must still reach the button (a redraw that replaced
    the buttons made the release land on a new element, and the browser dropped the click)."""
    app, page = bob
    page.goto(app.base_url + "/setup/mailbox")
    with holding(page, "**/setup/mailbox/check") as redraw:
        field = page.get_by_test_id("field-email")
        field.fill("")
        field.type(ALICE)
        page.get_by_test_id("test-connection").hover()
        page.mouse.down()  # focus leaves the field: `change`, the redraw's request
        redraw.wait()
        redraw.release("mailbox-fields")
        page.mouse.up()
    expected = f"The mailbox {ALICE} is already used by another CRM user, Alice Wong."
    expect(page.get_by_test_id("error-email")).to_contain_text(expected, timeout=10_000)
