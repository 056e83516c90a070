"""The Mail page in Chromium (issue 8 part 6): Track, and Set Regarding by typing into the
search box and picking a record, in English and in Japanese, under the Content-Security-Policy,
with htmx sending the CSRF token and swapping just the row. The Japanese pass is done with the
keyboard only (Tab, Enter, typing): labels, buttons and a <details> summary, no clickable divs.

The app runs in this process (werkzeug on 127.0.0.1, a free port) so the page can use the
in-memory facade of tests/mail/fake_facade.py; `run.py serve` would bring the live service.
(Named *_browser.py: tests/web/test_mail_page.py has the plain name, and two test modules with
one basename cannot be collected in one session without packages.)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ARTIFACTS, arrive
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect
from werkzeug.serving import BaseWSGIServer, make_server

from sync.runs import RunRecorder
from sync.settings import set_setting
from tests.helpers import LOGIN_TOKEN
from tests.mail.fake_facade import FakeMailFacade, complete_setup, mail_app

SHOTS = "mail"
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  const where = event.target && event.target.outerHTML ? event.target.outerHTML.slice(0, 200) : "";
  console.error(`CSP violation: ${event.effectiveDirective} refused ${event.blockedURI || "inline"}`
    + ` (${event.sourceFile}:${event.columnNumber}) ${where}`);
});
"""


@dataclass
class Served:
    base_url: str
    facade: FakeMailFacade
    server: BaseWSGIServer


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    facade = FakeMailFacade()
    app = mail_app(data_dir, facade)
    database = app.extensions["mailbox_sync.database"]
    complete_setup(database, data_dir)
    set_setting(database, "tracking_option", "replies")
    set_setting(database, "send_crm_email", True)
    run = RunRecorder(database, "messaging", "schedule")
    run.counts(
        {
            "email": {"tracked": 4, "linked": 1, "untracked": 0, "attachments_skipped": 1},
            "outgoing": {"sent": 2, "failed": 0, "already_sent": 0, "errors": 0},
        }
    )
    run.finish("ok")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_port}", facade, server)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["mailbox_sync.database"].dispose()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-US", viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.add_init_script(REPORT_VIOLATIONS)
    yield page
    context.close()


def screenshot(page: Page, name: str) -> None:
    """As conftest's, but leaving the caret alone: to hide it Playwright puts `style=""` on
    every input, and htmx's settle step then copies that attribute onto the swapped-in row's
    inputs, which the CSP rightly refuses (an artefact of the screenshot, not of the page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, caret="initial")


FLAGGED = re.compile(r"Content Security Policy|CSP violation|htmx:", re.I)


def _watch(page: Page) -> list[str]:
    """CSP refusals, htmx's errors and uncaught page errors, as they come."""
    problems: list[str] = []

    def message(entry: ConsoleMessage) -> None:
        if FLAGGED.search(entry.text):
            problems.append(f"{entry.type}: {entry.text} [{page.url}]")

    page.on("console", message)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    return problems


def _row(page: Page, subject: str) -> Locator:
    return page.get_by_test_id("message").filter(has_text=subject)


def test_track_and_set_regarding_in_english_and_japanese(served: Served, page: Page) -> None:
    problems = _watch(page)
    page.goto(f"{served.base_url}/login?token={LOGIN_TOKEN}")
    arrive(page, "sync-now")
    expect(page.get_by_test_id("count-email-crm-tracked")).to_have_text("4")
    expect(page.get_by_test_id("total-outgoing-sent")).to_have_text("2")
    screenshot(page, f"{SHOTS}-00-dashboard-email-cards")
    page.get_by_test_id("nav-mail").click()
    arrive(page, "mail-page")
    expect(page.get_by_test_id("tab-inbox")).to_have_attribute("aria-current", "page")
    screenshot(page, f"{SHOTS}-01-inbox")

    # Track: an htmx post with the CSRF header; the row alone comes back
    quote = _row(page, "Quote for 40 laptops")
    expect(quote.get_by_test_id("state-untracked")).to_be_visible()
    with page.expect_response(lambda r: r.url.endswith("/mail/track")) as posted:
        quote.get_by_test_id("track").click()
    assert posted.value.ok and posted.value.request.headers.get("x-csrftoken")
    assert posted.value.request.headers.get("hx-request") == "true"
    expect(quote.get_by_test_id("state-tracked")).to_have_text("Tracked")
    expect(quote.get_by_test_id("untrack")).to_be_visible()
    assert served.facade.calls == [("track", "AAMkAD0000/inbox+id==")]

    # Set Regarding: open the panel, type, see the matches as you type, pick one
    meeting = _row(page, "Meeting next week")
    meeting.get_by_test_id("set-regarding").click()
    search = meeting.get_by_label("Find a contact, account, lead or opportunity")
    with page.expect_response(lambda r: "/mail/search?q=ada" in r.url):
        search.press_sequentially("ada", delay=60)
    picks = meeting.get_by_test_id("pick-record")
    expect(picks).to_have_count(2)  # Ada Lovelace (Contact), Adatum lead (Lead)
    expect(picks.first).to_have_text("Ada Lovelace (Contact)")
    screenshot(page, f"{SHOTS}-02-regarding-search")
    picks.filter(has_text="Ada Lovelace").click()
    expect(meeting.get_by_test_id("regarding")).to_have_text("Regarding: Ada Lovelace")
    expect(meeting.get_by_test_id("state-tracked")).to_be_visible()
    expect(meeting.locator("details[open]")).to_have_count(0)  # the new row, panel closed
    screenshot(page, f"{SHOTS}-03-regarding-set")
    assert served.facade.calls[-1][0] == "regarding"

    # 日本語: the same with the keyboard only
    page.goto(f"{served.base_url}/mail?lang=ja")
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.get_by_test_id("tab-inbox")).to_have_text("受信トレイ")
    estimate = _row(page, "見積もりのお願い")
    estimate.get_by_test_id("track").focus()
    with page.expect_response(lambda r: r.url.endswith("/mail/track")):
        page.keyboard.press("Enter")
    expect(estimate.get_by_test_id("state-tracked")).to_have_text("追跡済み")
    estimate.get_by_test_id("set-regarding").focus()
    expect(estimate.get_by_test_id("set-regarding")).to_have_text("関連を設定")
    page.keyboard.press("Enter")  # opens the <details>
    page.keyboard.press("Tab")  # into its search box
    search = estimate.get_by_label("取引先担当者、取引先企業、潜在顧客、営業案件を検索")
    expect(search).to_be_focused()
    with page.expect_response(lambda r: "/mail/search?q=" in r.url):
        page.keyboard.type("山田", delay=60)
    expect(estimate.get_by_test_id("pick-record")).to_have_text("山田 花子 (取引先担当者)")
    screenshot(page, f"{SHOTS}-04-ja-regarding-search")
    page.keyboard.press("Tab")  # the Search button
    page.keyboard.press("Tab")  # the one match
    expect(estimate.get_by_test_id("pick-record")).to_be_focused()
    with page.expect_response(lambda r: r.url.endswith("/mail/regarding")):
        page.keyboard.press("Enter")
    expect(estimate.get_by_test_id("regarding")).to_have_text("関連: 山田 花子")
    screenshot(page, f"{SHOTS}-05-ja-regarding-set")

    # the English rows kept their state across the page loads
    expect(_row(page, "Meeting next week").get_by_test_id("regarding")).to_have_text(
        "関連: Ada Lovelace"
    )
    assert problems == [], "\n".join(problems)
