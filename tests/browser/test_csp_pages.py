"""Issue 14.5 in a real browser: every page loads under the Content-Security-Policy with no
violation, and htmx still works (the wizard's live form, the dashboard's polled status, Sync now).

A new user's whole way, as in test_wizard_flow.py but with the Exchange mailbox's user name and
password (so the vault has something to keep: this machine has no keyring, so it is the sign-in's
consent that lets it keep them, and the alert says so). Violations are caught twice: the page's
`securitypolicyviolation` events (an init script turns each into a console error) and
Chromium's own console messages; the last step proves the net catches an inline style.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from conftest import (
    LiveApp,
    SandboxProcess,
    arrive,
    choices_and_finish,
    choose_organization,
    instance_step,
    open_page,
    screenshot,
    set_mailbox_address,
    sign_in_to_sandbox,
    start_app,
)
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

ALICE = "alice@contoso.example"
SHOTS = "csp"
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.effectiveDirective} refused ${event.blockedURI || "inline"}`
    + ` on ${event.documentURI} (${event.sourceFile}:${event.lineNumber}) ${event.sample}`);
});
"""


@dataclass
class Console:
    """Every console message and page error, with the URL of the page that printed it."""

    page: Page
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._message)
        self.page.on("pageerror", lambda error: self.lines.append(f"pageerror: {error}"))

    def _message(self, message: ConsoleMessage) -> None:
        self.lines.append(f"{message.type}: {message.text} [{self.page.url}]")

    def violations(self) -> list[str]:
        """CSP refusals, uncaught errors and htmx's errors (htmx logs them with console.error),
        but not a request's own outcome: a 422 of the wizard's validation, or the live check
        the form's own request aborts (`hx-sync`)."""
        flagged = re.compile(r"Content Security Policy|CSP violation|pageerror|htmx:", re.I)
        outcome = re.compile(r"^error: htmx:(responseError|sendAbort|afterRequest),")
        return [line for line in self.lines if flagged.search(line) and not outcome.search(line)]


@pytest.fixture(scope="module")
def app(
    shared_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    running = start_app(tmp_path_factory.mktemp("csp"), sandbox_json=shared_sandbox.json_file)
    yield running
    running.stop()


@pytest.fixture
def watched(browser: Browser) -> Iterator[tuple[Page, Console]]:
    page = open_page(browser)
    page.add_init_script(REPORT_VIOLATIONS)
    try:
        yield page, Console(page)
    finally:
        page.context.close()


def visit(page: Page, console: Console, url: str, shot: str) -> None:
    """Open one of our pages; it must carry the policy and load without a violation."""
    response = page.goto(url)
    assert response is not None and response.ok, f"{url}: {response and response.status}"
    assert "script-src 'self'" in response.headers["content-security-policy"], url
    assert response.headers["x-frame-options"] == "DENY", url
    page.wait_for_load_state("load")
    screenshot(page, f"{SHOTS}-{shot}")
    assert console.violations() == [], f"{url}:\n" + "\n".join(console.violations())


def exchange_with_password_step(page: Page, password: str) -> None:
    """Exchange by autodiscover, signed in with user name and password (kept by the vault).

    Each change redraws the form through htmx (hx-post to /setup/mailbox/check, an outerHTML
    swap); Test connection is an hx-post too.
    """
    set_mailbox_address(page, ALICE)
    page.get_by_test_id("type-exchange").check()
    with page.expect_response(lambda r: r.url.endswith("/setup/mailbox/check")):
        page.get_by_test_id("auth-basic").check()
    arrive(page, "field-password")  # swapped in by htmx
    page.get_by_test_id("field-username").fill(ALICE)
    page.get_by_test_id("field-password").fill(password)
    with page.expect_response(lambda r: r.url.endswith("/setup/mailbox")):
        page.get_by_test_id("test-connection").click()
    expect(page.get_by_test_id("test-result")).to_have_text("Connection works.")
    page.get_by_test_id("field-password").fill(password)  # the swap emptied it (never echoed)
    screenshot(page, f"{SHOTS}-06-mailbox")
    page.get_by_test_id("next").click()
    arrive(page, "wizard-instance")


def test_every_page_loads_under_the_policy_and_htmx_works(
    app: LiveApp, watched: tuple[Page, Console], shared_sandbox: SandboxProcess
) -> None:
    page, console = watched
    base = app.base_url

    # before the link: the welcome page
    visit(page, console, base + "/welcome", "00-welcome")
    # the link, the wizard's first page, the sign-in page, the consent (no keyring here), the
    # sandbox identity provider, back on the wizard's organization step
    sign_in_to_sandbox(page, app, ALICE, shared_sandbox.password(ALICE), SHOTS)
    assert console.violations() == [], "\n".join(console.violations())
    visit(page, console, base + "/signin", "02a-signin-signed-in")
    visit(page, console, base + "/setup/organization", "05a-organization")
    choose_organization(page, "contoso", SHOTS)
    exchange_with_password_step(page, shared_sandbox.password(ALICE))
    instance_step(page, "csp-pc", None, SHOTS)
    choices_and_finish(page, SHOTS)  # the counts come live through htmx
    assert console.violations() == [], "\n".join(console.violations())

    # every step stays reachable once done, and every other page
    for step in ("organization", "mailbox", "instance", "choices", "done"):
        visit(page, console, f"{base}/setup/{step}", f"10-step-{step}")
    for path, name in (("/settings", "settings"), ("/conflicts", "conflicts"), ("/log", "log")):
        visit(page, console, base + path, f"11-{name}")
    visit(page, console, base + "/alerts", "12-alerts")
    passwords = page.locator("[data-testid=alert-token_cache_unencrypted]").filter(
        has_text="Passwords stored unencrypted"
    )
    expect(passwords).to_contain_text("(you agreed)")  # the sign-in's consent, its alert
    stored = json.loads((app.data_dir / "secrets.json").read_text())
    assert stored == {"mailbox_password": shared_sandbox.password(ALICE)}

    # the dashboard: htmx's polled fragment, then Sync now's hx-post swap
    visit(page, console, base + "/", "13-dashboard")
    with page.expect_response(lambda r: "/status?seen=" in r.url, timeout=30_000) as polled:
        pass
    assert polled.value.ok and polled.value.request.headers.get("hx-request") == "true"
    before = page.get_by_test_id("run-row").count()
    with page.expect_response(lambda r: r.url.endswith("/sync-now")) as posted:
        page.get_by_test_id("sync-now").click()
    assert posted.value.ok and posted.value.request.headers.get("x-csrftoken")
    expect(page.get_by_test_id("run-row")).to_have_count(before + 1, timeout=30_000)
    screenshot(page, f"{SHOTS}-14-dashboard-after-sync-now")
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False
    assert page.locator("head style").count() == 0  # htmx added none
    assert console.violations() == [], "\n".join(console.violations())

    # the net works: an inline style is refused and reported
    page.evaluate("document.head.insertAdjacentHTML('beforeend', '<style>body{}</style>')")
    for _ in range(50):  # the report reaches the console a moment later
        if console.violations():
            break
        page.wait_for_timeout(100)
    caught = console.violations()
    assert caught, "an inline style went unreported: the checks above would prove nothing"
    assert all("style-src" in line or "Content Security Policy" in line for line in caught)
