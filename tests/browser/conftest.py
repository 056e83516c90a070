"""Browser tests: Playwright for Python driving Debian's Chromium (never a downloaded browser).

`make test` installs the `chromium` package when it is missing (tests/tools/system_deps.sh).
Each test gets the real app (`run.py serve` in a subprocess, its own data dir, a free port) and
saves a screenshot of every page it looks at under `test-artifacts/screenshots/`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.helpers import stop_process
from tests.sandbox_process import SandboxProcess, start_sandbox_process

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

LINK = re.compile(r"Open (http://127\.0\.0\.1:\d+)(/login\?token=\S+)")
EXPECT_TIMEOUT = 15_000
"""ms an `expect` waits unless told otherwise: Playwright's 5 s is short on two busy cores."""
expect.set_options(timeout=EXPECT_TIMEOUT)

pytestmark = pytest.mark.browser


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Debian's chromium is missing: run `bash tests/tools/system_deps.sh`.")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True
        )
        yield browser
        browser.close()


@dataclass
class LiveApp:
    """A `run.py serve` process: its sign-in link, base URL and everything it printed."""

    process: subprocess.Popen[str]
    data_dir: Path
    link: str
    base_url: str
    output: list[str] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        stop_process(self.process)


def start_app(
    data_dir: Path, *extra: str, timeout: float = 90, sandbox_json: Path | None = None
) -> LiveApp:
    """Start the server on a free port and wait for its one-time sign-in link.

    `sandbox_json`: use that running sandbox (`run.py sandbox --json` output) instead of
    starting one in the server, so several app instances and the test see the same sandbox.
    """
    command = [sys.executable, str(ROOT / "run.py"), "serve", "--data-dir", str(data_dir)]
    command += ["--port", "0", *extra]
    if sandbox_json is not None:
        command += ["--sandbox-json", str(sandbox_json)]
    # stdout apart from stderr: a log line from another thread can land in the middle of the
    # printed link line when both share one pipe
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None and process.stderr is not None
    output: list[str] = []
    found: list[re.Match[str]] = []
    ready = threading.Event()

    def drain(stream: IO[str]) -> None:
        # Read everything the server prints for its whole life: a full pipe would block it.
        for line in stream:
            output.append(line)
            match = LINK.search(line)
            if match and not found:
                found.append(match)
                ready.set()
        ready.set()  # the process ended

    def drain_log(stream: IO[str]) -> None:
        for line in stream:
            output.append(line)

    threading.Thread(target=drain, args=(process.stdout,), daemon=True).start()
    threading.Thread(target=drain_log, args=(process.stderr,), daemon=True).start()
    ready.wait(timeout)
    if found:
        link, base = found[0].group(1) + found[0].group(2), found[0].group(1)
        return LiveApp(process, data_dir, link, base, output)
    process.kill()
    process.wait()
    raise AssertionError("the server printed no sign-in link:\n" + "".join(output))


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[LiveApp]:
    app = start_app(tmp_path / "data", *os.environ.get("LIVE_APP_ARGS", "").split())
    yield app
    app.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-US", viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as test-artifacts/screenshots/<name>.png (kept for humans to look at)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --- one sandbox shared by the test and every app instance -----------------------------------


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One sandbox per test module: each module's claims and data start fresh."""
    running = start_sandbox_process(tmp_path_factory.mktemp("sandbox"))
    yield running
    running.stop()


def open_page(browser: Browser) -> Page:
    """A page in its own context: two apps on 127.0.0.1 must not share a session cookie.

    No certificate errors are ignored: the sandbox identity provider serves the pages a person
    sees over plain HTTP on 127.0.0.1 (its HTTPS is for msal's token requests only), so a stock
    browser signs in without a warning, as these tests prove.
    """
    context = browser.new_context(locale="en-US", viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


# --- a slow server on cue --------------------------------------------------------------------


@dataclass
class Held:
    """The requests to one URL pattern, held until `release`: the answer of a slow server
    (a real tenant's 1-2 s) made to land exactly when a test wants it."""

    page: Page
    pattern: str
    routes: list[Route] = field(default_factory=list)

    def wait(self, count: int = 1) -> None:
        """Wait until `count` requests are held (Playwright runs the route handler while it
        waits, so the wait is Playwright's)."""
        for _ in range(200):
            if len(self.routes) >= count:
                return
            self.page.wait_for_timeout(50)
        raise AssertionError(f"{len(self.routes)} requests to {self.pattern}, {count} awaited")

    def release(self, swapped: str) -> None:
        """Let every held request go and wait until the element of id `swapped` is a new one
        (the answer swapped in) and htmx has settled."""
        self.page.evaluate("(id) => { document.getElementById(id).dataset.old = '1' }", swapped)
        while self.routes:
            self.routes.pop(0).continue_()
        self.page.wait_for_function(
            "(id) => !document.getElementById(id)?.dataset.old", arg=swapped
        )
        settled(self.page)


HTMX_SETTLED = "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
"""htmx has swapped its answers in and settled them."""


@contextmanager
def holding(page: Page, pattern: str) -> Iterator[Held]:
    held = Held(page, pattern)
    page.route(pattern, lambda route: held.routes.append(route))
    try:
        yield held
    finally:
        page.unroute(pattern)
        for route in held.routes:  # never leave the page's request hanging
            with suppress(PlaywrightError):  # the page may have aborted it meanwhile
                route.continue_()


# --- steps every flow shares -----------------------------------------------------------------


def arrive(page: Page, test_id: str) -> None:
    """Wait for the page a click led to: its mark visible, then its load finished.

    A clicked link or submitted form does not wait for the next page's load, and htmx (a
    deferred script) binds its triggers only once the document is parsed; a radio checked in
    between changes no field set, as a slow CI machine showed. After an htmx swap, the same
    holds until the swap has settled.
    """
    expect(page.get_by_test_id(test_id)).to_be_visible()
    page.wait_for_load_state("load")
    settled(page)


def settled(page: Page) -> None:
    """Wait until htmx has settled its swaps: it binds the triggers of swapped-in elements in
    the settle step, after they are visible; a change dispatched before that sends nothing."""
    page.wait_for_function(HTMX_SETTLED)


def sign_in_to_sandbox(page: Page, app: LiveApp, upn: str, password: str, shots: str) -> None:
    """Open the one-time link, sign in at the sandbox identity provider, land on step 2."""
    page.goto(app.link)
    expect(page.get_by_test_id("signin-link")).to_be_visible()
    screenshot(page, f"{shots}-01-wizard-not-signed-in")
    page.get_by_test_id("signin-link").click()
    expect(page.locator("#signin-sandbox-submit")).to_be_visible()
    screenshot(page, f"{shots}-02-signin")
    page.locator("#signin-sandbox-submit").click()
    upn_field, consent = page.locator("#upn"), page.locator("#consent-checkbox")
    expect(upn_field.or_(consent)).to_be_visible()
    if consent.is_visible():  # no keyring here: the plaintext token cache needs consent
        screenshot(page, f"{shots}-03-signin-consent")
        consent.check()
        page.locator("#consent-submit").click()
    expect(upn_field).to_be_visible()
    upn_field.fill(upn)
    page.locator("#password").fill(password)
    screenshot(page, f"{shots}-04-identity-provider")
    page.locator("#idp-submit").click()
    arrive(page, "org-list")
    expect(page.locator("body")).to_contain_text(f"Signed in as {upn}")


def choose_organization(page: Page, unique_name: str, shots: str) -> None:
    page.get_by_test_id(f"sync-{unique_name}").check()
    screenshot(page, f"{shots}-05-organization")
    page.get_by_test_id("next").click()
    arrive(page, "wizard-mailbox")


def set_mailbox_address(page: Page, address: str) -> None:
    """Type the address and let htmx redraw the form (it does on `change`) before going on."""
    field_ = page.get_by_test_id("field-email")
    if field_.input_value() == address:
        return
    with page.expect_response(lambda r: r.url.endswith("/setup/mailbox/check")):
        field_.fill(address)
        field_.dispatch_event("change")
    expect(page.get_by_test_id("field-email")).to_have_value(address)


def exchange_mailbox_step(page: Page, address: str, shots: str) -> None:
    """Exchange (sandbox, autodiscover), OAuth; test the connection, then go on."""
    set_mailbox_address(page, address)
    page.get_by_test_id("type-exchange").check()
    page.get_by_test_id("auth-oauth").check()
    page.get_by_test_id("test-connection").click()
    expect(page.get_by_test_id("test-result")).to_have_text("Connection works.")
    methods = page.locator("[data-testid^=method-]")
    expect(methods).to_have_count(3)  # incoming, outgoing, appointments/contacts/tasks
    expect(page.get_by_test_id("method-act")).to_contain_text("OK")  # Alice's names this client
    for email in ("incoming", "outgoing"):  # not synced by this app yet: never written
        expect(page.get_by_test_id(f"method-{email}")).to_contain_text("Left as it is")
    screenshot(page, f"{shots}-06-mailbox")
    page.get_by_test_id("next").click()
    arrive(page, "wizard-instance")


def instance_step(page: Page, name: str, take_over: bool | None, shots: str) -> None:
    """Name this computer; answer the take-over question when it is asked (None: not asked)."""
    expect(page.get_by_test_id("claim-state")).to_be_visible()
    page.get_by_test_id("field-instance_name").fill(name)
    question = page.get_by_test_id("take-over-question")
    if take_over is None:
        expect(page.get_by_test_id("claim-state")).to_have_attribute("data-state", "none")
        expect(question).to_have_count(0)
        screenshot(page, f"{shots}-07-instance")
        page.get_by_test_id("next").click()
    else:
        expect(page.get_by_test_id("claim-state")).to_have_attribute("data-state", "other")
        expect(question).to_have_text("Make this computer the synchronizing computer?")
        screenshot(page, f"{shots}-07-instance-take-over-question")
        page.get_by_test_id("take-over-yes" if take_over else "take-over-no").click()
    arrive(page, "wizard-choices")


DEFAULT_FILTERS = ("my-active-contacts", "my-appointments", "my-open-tasks")


def choices_and_finish(page: Page, shots: str, keep: Sequence[str] = DEFAULT_FILTERS) -> None:
    """The default filters are ticked, each with its live count; keep those in `keep`, then
    finish on the dashboard."""
    for slug in DEFAULT_FILTERS:
        expect(page.get_by_test_id(f"filter-{slug}").locator("input")).to_be_checked()
        expect(page.get_by_test_id(f"count-{slug}")).to_have_text(re.compile(r"^\d+ records$"))
    for slug in DEFAULT_FILTERS:
        if slug not in keep:
            page.get_by_test_id(f"filter-{slug}").locator("input").uncheck()
    screenshot(page, f"{shots}-08-what-to-sync")
    page.get_by_test_id("next").click()
    arrive(page, "wizard-done")
    screenshot(page, f"{shots}-09-done")
    page.get_by_test_id("finish").click()
    arrive(page, "sync-now")


def run_ids(page: Page) -> list[int]:
    """The ids of the runs the dashboard lists (newest first)."""
    ids = page.locator("[data-testid=run-row], [data-testid=quiet-row]").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)"
    )
    return [int(i) for i in ids]


FINISHED_MESSAGING_RUN = """(args) => {
    if (args.orRunning && document.querySelector('[data-testid=progress]')) return -1;
    // a quiet run is folded into a "quiet since" row that carries the newest run's id
    const rows = [...document.querySelectorAll('[data-testid=run-row], [data-testid=quiet-row]')]
        .filter((r) =>
        +r.dataset.runId > args.newerThan
        && !r.classList.contains('running')
        && !(args.excludeSkipped && r.classList.contains('skipped'))
        && r.dataset.job === 'messaging');
    return rows.length ? Math.max(...rows.map((r) => +r.dataset.runId)) : 0;
}"""
"""The newest finished messaging run's id on the dashboard (0: none yet; -1: `orRunning` and a
run's progress is shown)."""


def wait_for_messaging_run(
    page: Page, newer_than: int = 0, exclude_skipped: bool = False, timeout: float = 60_000
) -> Locator:
    """Wait until the dashboard (htmx keeps it live) lists a finished messaging run with an id
    above `newer_than` (and not skipped, if so asked); return that run's row."""
    args = {"newerThan": newer_than, "excludeSkipped": exclude_skipped, "orRunning": False}
    found = _wait_for_runs(page, args, timeout)
    return page.locator(f"[data-run-id='{found}']")


def wait_for_progress_or_run(page: Page, newer_than: int = 0, timeout: float = 60_000) -> bool:
    """Wait until a messaging run shows its progress, or a (not skipped) one with an id above
    `newer_than` has finished; True when the progress is what showed up."""
    args = {"newerThan": newer_than, "excludeSkipped": True, "orRunning": True}
    return _wait_for_runs(page, args, timeout) == -1


def _wait_for_runs(page: Page, args: dict[str, Any], timeout: float) -> int:
    try:
        handle = page.wait_for_function(FINISHED_MESSAGING_RUN, arg=args, timeout=timeout)
    except PlaywrightTimeoutError:
        rows = "\n".join(page.get_by_test_id("run-row").all_inner_texts()) or "(none)"
        raise AssertionError(
            f"no finished messaging run ({args}) within {timeout / 1000:.0f} s; the runs "
            f"listed on {page.url}:\n{rows}"
        ) from None
    return int(handle.json_value())
