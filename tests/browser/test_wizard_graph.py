"""The wizard choosing Exchange Online through Microsoft Graph for an online user (issue 9):
the sandbox's demo users answer Graph `/me` and `/me/mailboxSettings`, so the mailbox step
starts on "Exchange Online (Microsoft Graph)", tests it and goes on; the choices step offers
contacts, tasks and (gcal) appointments, but not sending CRM email."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import (
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
from playwright.sync_api import Browser, expect

ALICE = "alice@contoso.example"
SHOTS = "graph-wizard"


@pytest.fixture(scope="module")
def app(
    shared_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    running = start_app(tmp_path_factory.mktemp("graph"), sandbox_json=shared_sandbox.json_file)
    yield running
    running.stop()


def test_the_wizard_chooses_graph_for_an_online_user(
    app: LiveApp, browser: Browser, shared_sandbox: SandboxProcess
) -> None:
    page = open_page(browser)
    try:
        sign_in_to_sandbox(page, app, ALICE, shared_sandbox.password(ALICE), SHOTS)
        choose_organization(page, "contoso", SHOTS)
        expect(page.get_by_test_id("type-graph")).to_be_checked()
        expect(page.get_by_test_id("type-exchange")).not_to_be_checked()
        arrive(page, "graph-fields")
        expect(page.get_by_test_id("exchange-fields")).to_have_count(0)
        with page.expect_response(lambda r: r.url.endswith("/setup/mailbox")):
            page.get_by_test_id("test-connection").click()
        expect(page.get_by_test_id("test-result")).to_have_text("Connection works.")
        screenshot(page, f"{SHOTS}-06-mailbox-graph")
        page.get_by_test_id("next").click()
        arrive(page, "wizard-instance")
        instance_step(page, "graph-pc", None, SHOTS)
        arrive(page, "graph-note")
        arrive(page, "filter-my-active-contacts")
        arrive(page, "filter-my-open-tasks")
        arrive(page, "filter-my-appointments")  # gcal: issue 9
        arrive(page, "send-crm-email")
        screenshot(page, f"{SHOTS}-08-choices-graph")
    finally:
        page.context.close()
