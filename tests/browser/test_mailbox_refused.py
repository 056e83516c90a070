"""A mailbox already mapped to another CRM user is refused, with a message naming the problem.

Bob signs in to the sandbox and types Alice's address on the mailbox step: the sandbox CRM has
a mailbox record for that address owned by Alice, so the wizard must stop him there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    LiveApp,
    SandboxProcess,
    arrive,
    choose_organization,
    open_page,
    screenshot,
    set_mailbox_address,
    sign_in_to_sandbox,
    start_app,
)
from playwright.sync_api import Browser, Page, expect

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"


@pytest.fixture
def bobs_app(tmp_path: Path, shared_sandbox: SandboxProcess) -> Iterator[LiveApp]:
    app = start_app(tmp_path / "bob", sandbox_json=shared_sandbox.json_file)
    yield app
    app.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = open_page(browser)
    yield page
    page.context.close()


def test_another_users_mailbox_is_refused(
    bobs_app: LiveApp, shared_sandbox: SandboxProcess, page: Page
) -> None:
    shots = "refused"
    sign_in_to_sandbox(page, bobs_app, BOB, shared_sandbox.password(BOB), shots)
    choose_organization(page, "contoso", shots)
    expect(page.get_by_test_id("field-email")).to_have_value(BOB)

    set_mailbox_address(page, ALICE)
    page.get_by_test_id("next").click()
    error = page.get_by_test_id("error-email")
    expect(error).to_contain_text(
        f"The mailbox {ALICE} is already used by another CRM user, Alice Wong.", timeout=15_000
    )
    screenshot(page, f"{shots}-06-mailbox-refused")

    # refused means refused: the wizard stays on the mailbox step, nothing further opens
    arrive(page, "wizard-mailbox")
    page.goto(bobs_app.base_url + "/setup/instance")
    arrive(page, "wizard-mailbox")
    expect(page.get_by_test_id("field-email")).to_have_value(BOB)
    screenshot(page, f"{shots}-07-next-step-not-open")
