"""The Mail page against the real service (issue 8): `run.py serve` on a data directory set up by
the command line, over the sandbox's Exchange and Dataverse, in Chromium, in English and Japanese.

Bob mails Alice; on her Mail page Track makes one CRM email with that Internet Message-Id and
puts the "Tracked to Dynamics 365" category on her copy; Set Regarding (typed search, then a
pick) sets the email's Regarding in the CRM; Untrack takes the category and the link away and
leaves the CRM email, as Dynamics does (DESIGN.md 1.3). Every fact is read back from the
sandbox's own state, not from the page. (test_mail_page_browser.py drives the same page over an
in-memory facade for the keyboard-only and layout checks.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveApp, SandboxProcess, arrive, open_page, screenshot, start_app
from playwright.sync_api import Browser, Locator, Page, expect

from tests.sandbox_process import set_up_by_cli

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"
CATEGORY = "Tracked to Dynamics 365"
SHOTS = "mail-live"


@pytest.fixture(scope="module")
def alice_app(
    shared_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    """Alice's computer, set up without a browser (signin + configure), then served."""
    data_dir = tmp_path_factory.mktemp("alice-pc")
    set_up_by_cli(shared_sandbox, data_dir, ALICE, "--instance-name", "alice-pc")
    app = start_app(data_dir, sandbox_json=shared_sandbox.json_file)
    yield app
    app.stop()


def _bob_mails_alice(sandbox: SandboxProcess, subject: str) -> None:
    from exchangelib import HTMLBody, Mailbox, Message

    bob = sandbox.mailbox(BOB)
    Message(
        account=bob,
        subject=subject,
        body=HTMLBody(f"<p>{subject}: can you confirm?</p>"),
        to_recipients=[Mailbox(email_address=ALICE)],
    ).send()


def _alice_copy(sandbox: SandboxProcess, subject: str) -> Any:
    found = list(sandbox.mailbox(ALICE).inbox.filter(subject=subject))
    assert len(found) == 1, found
    return found[0]


def _crm_emails(sandbox: SandboxProcess, message_id: str) -> list[dict[str, Any]]:
    escaped = message_id.replace("'", "''")
    with sandbox.crm(ALICE) as crm:
        answer = crm.get(
            "emails",
            params={
                "$select": "activityid,subject,messageid,_regardingobjectid_value",
                "$filter": f"messageid eq '{escaped}'",
            },
        )
    answer.raise_for_status()
    return list(answer.json()["value"])


def _row(page: Page, subject: str) -> Locator:
    return page.get_by_test_id("message").filter(has_text=subject)


def _a_contact(sandbox: SandboxProcess) -> dict[str, Any]:
    """One of Alice's active contacts, with a name long enough to search by."""
    with sandbox.crm(ALICE) as crm:
        rows = crm.get(
            "contacts", params={"$select": "contactid,fullname", "$filter": "statecode eq 0"}
        ).json()["value"]
    return next(r for r in rows if len(r.get("fullname") or "") >= 4)


def test_track_regarding_and_untrack_reach_the_crm(
    browser: Browser, shared_sandbox: SandboxProcess, alice_app: LiveApp
) -> None:
    subject = f"Order {time.time_ns()}"
    _bob_mails_alice(shared_sandbox, subject)
    message_id = _alice_copy(shared_sandbox, subject).message_id
    page = open_page(browser)
    page.goto(alice_app.link)
    page.get_by_test_id("nav-mail").click()
    arrive(page, "mail-page")
    row = _row(page, subject)
    expect(row.get_by_test_id("state-untracked")).to_be_visible()
    screenshot(page, f"{SHOTS}-01-inbox")

    with page.expect_response(lambda r: r.url.endswith("/mail/track")):
        row.get_by_test_id("track").click()
    expect(row.get_by_test_id("state-tracked")).to_be_visible()
    emails = _crm_emails(shared_sandbox, message_id)
    assert len(emails) == 1 and emails[0]["subject"] == subject
    assert CATEGORY in (_alice_copy(shared_sandbox, subject).categories or [])

    contact = _a_contact(shared_sandbox)
    row.get_by_test_id("set-regarding").click()
    search = row.get_by_label("Find a contact, account, lead or opportunity")
    with page.expect_response(lambda r: "/mail/search?q=" in r.url):
        search.press_sequentially(contact["fullname"][:4], delay=40)
    pick = row.get_by_test_id("pick-record").filter(has_text=contact["fullname"]).first
    expect(pick).to_be_visible()
    screenshot(page, f"{SHOTS}-02-regarding-search")
    with page.expect_response(lambda r: r.url.endswith("/mail/regarding")):
        pick.click()
    expect(row.get_by_test_id("regarding")).to_contain_text(contact["fullname"])
    (email,) = _crm_emails(shared_sandbox, message_id)
    assert email["_regardingobjectid_value"] == contact["contactid"]
    screenshot(page, f"{SHOTS}-03-regarding-set")

    with page.expect_response(lambda r: r.url.endswith("/mail/untrack")):
        row.get_by_test_id("untrack").click()
    expect(row.get_by_test_id("state-untracked")).to_be_visible()
    assert CATEGORY not in (_alice_copy(shared_sandbox, subject).categories or [])
    assert [e["activityid"] for e in _crm_emails(shared_sandbox, message_id)] == [
        email["activityid"]
    ]  # the CRM email stays: untrack never deletes it

    page.goto(f"{alice_app.base_url}/mail?lang=ja")
    expect(page.get_by_test_id("tab-inbox")).to_have_text("受信トレイ")
    expect(_row(page, subject).get_by_test_id("state-untracked")).to_be_visible()
    screenshot(page, f"{SHOTS}-04-ja")
    page.context.close()


def test_the_mail_page_is_not_offered_before_setup(browser: Browser, tmp_path: Path) -> None:
    """Nothing the user can see does nothing: no Mail link before the wizard is done, and the
    page itself sends the user to the wizard."""
    app = start_app(tmp_path / "fresh")
    try:
        page = open_page(browser)
        page.goto(app.link)
        arrive(page, "signin-link")
        expect(page.get_by_test_id("nav-mail")).to_have_count(0)
        page.goto(f"{app.base_url}/mail")
        arrive(page, "signin-link")  # sent to the wizard
        assert "/setup" in page.url
        expect(page.get_by_test_id("mail-page")).to_have_count(0)
        page.context.close()
    finally:
        app.stop()
