"""A new user's whole way in a real browser, against the sandbox:

one-time link → sign in (sandbox identity provider, as Alice) → the wizard (contoso as the
synchronizing organization, the Exchange sandbox mailbox with OAuth, this computer as the
synchronizing one, the default filters) → the first sync's progress to its end, with counts →
Sync now and a new run → a conflict made on both sides → reversed on /conflicts → the other
value is in the sandbox CRM.

The test reaches the sandbox as a script would: the CRM over HTTP with Alice's bearer token
(`run.py sandbox --json`), the mailbox through exchangelib.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    LiveApp,
    SandboxProcess,
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
    wait_for_progress_or_run,
)
from playwright.sync_api import Browser, Locator, Page, expect

from sync.auth import TOKEN_CACHE_FILE

ALICE = "alice@contoso.example"
SHOTS = "new-user"
CRM_TITLE, MAILBOX_TITLE = "Head of Purchasing (CRM)", "Chief Buyer (mailbox)"


@dataclass
class Alice:
    """Alice's app, her browser page (on the dashboard once set up) and her conflict contact."""

    app: LiveApp
    page: Page
    contact: dict[str, Any]


def make_contact(sandbox: SandboxProcess) -> dict[str, Any]:
    """A contact of Alice's in the sandbox CRM, made before the first sync (it syncs over)."""
    lastname = "Conflict-" + uuid.uuid4().hex[:8]
    with sandbox.crm(ALICE) as crm:
        made = crm.post(
            "contacts",
            json={"firstname": "Casey", "lastname": lastname, "jobtitle": "Buyer"},
            headers={"Prefer": "return=representation"},
        )
        made.raise_for_status()
    return {"id": made.json()["contactid"], "lastname": lastname}


@pytest.fixture(scope="module")
def alice(
    browser: Browser, shared_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Alice]:
    """A new user: the link, the sign-in and the whole wizard, up to the dashboard."""
    contact = make_contact(shared_sandbox)
    # -v: debug logging from every library, the most a log could give away
    app = start_app(tmp_path_factory.mktemp("alice"), "-v", sandbox_json=shared_sandbox.json_file)
    page = open_page(browser)
    try:
        page.goto(app.base_url + "/")
        expect(page.locator("body")).to_contain_text("one-time")
        screenshot(page, f"{SHOTS}-00-welcome-without-link")

        sign_in_to_sandbox(page, app, ALICE, shared_sandbox.password(ALICE), SHOTS)
        choose_organization(page, "contoso", SHOTS)
        exchange_mailbox_step(page, ALICE, SHOTS)
        instance_step(page, "desk-pc", None, SHOTS)
        add_own_filter(page)
        choices_and_finish(page, SHOTS)
        expect(page.get_by_test_id("messaging-disabled")).to_have_count(0)
        yield Alice(app, page, contact)
    finally:
        page.context.close()
        app.stop()


def add_own_filter(page: Page) -> None:
    """On the "What to sync" step: a filter of one's own, refused once, then added.
    [ui-filters] The builder is typed per field and swapped by htmx (issue 11 point 4): each
    change waits for its swap; the refusal is a filter with no name."""

    def swapped(action: Callable[[], object]) -> None:
        with page.expect_response(lambda r: "/setup/choices/filters" in r.url):
            action()
        page.wait_for_function(
            "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
        )

    swapped(lambda: page.get_by_test_id("filter-kind").select_option("tasks"))
    swapped(lambda: page.get_by_test_id("field-0").select_option("_ownerid_value"))
    page.get_by_test_id("value-0").select_option("me")
    swapped(lambda: page.get_by_test_id("field-1").select_option("scheduledend"))
    page.get_by_test_id("op-1").select_option("le")
    page.get_by_test_id("days-1").fill("7")
    swapped(lambda: page.get_by_test_id("add-filter-submit").click())
    expect(page.get_by_test_id("filter-error")).to_contain_text("Give the filter a name")
    page.get_by_test_id("filter-name").fill("Due this week")
    swapped(lambda: page.get_by_test_id("add-filter-submit").click())
    own = page.locator("[data-testid^=filter-user-]")
    expect(own).to_have_count(1)
    expect(own.locator("input")).to_be_checked()
    expect(own.locator(".count")).to_have_text(re.compile(r"^\d+ records$"))
    screenshot(page, f"{SHOTS}-08a-own-filter")


def crm_job_title(sandbox: SandboxProcess, contact_id: str) -> str | None:
    with sandbox.crm(ALICE) as crm:
        answer = crm.get(f"contacts({contact_id})", params={"$select": "jobtitle"})
        answer.raise_for_status()
        title: str | None = answer.json()["jobtitle"]
        return title


def change_job_title_on_both_sides(sandbox: SandboxProcess, contact: dict[str, Any]) -> None:
    """The same field, two new values: one in the CRM (HTTP), one in the mailbox (EWS)."""
    account = sandbox.mailbox(ALICE)
    found = list(account.contacts.filter(surname=contact["lastname"]))
    assert len(found) == 1, f"the first sync put {len(found)} copies of the contact in the mailbox"
    found[0].job_title = MAILBOX_TITLE
    found[0].save(update_fields=["job_title"])
    with sandbox.crm(ALICE) as crm:
        crm.patch(f"contacts({contact['id']})", json={"jobtitle": CRM_TITLE}).raise_for_status()


def sync_now_and_wait(page: Page, shot: str | None = None) -> Locator:
    """Press Sync now; return the row of the new messaging run once it has finished.
    `shot`: the screenshot's name if the run is caught showing its progress."""
    newest = max(run_ids(page), default=0)
    page.get_by_test_id("sync-now").click()
    if shot and wait_for_progress_or_run(page, newer_than=newest):
        arrive(page, "progress-bar")
        screenshot(page, shot)
    return wait_for_messaging_run(page, newer_than=newest)


def synced_runs(page: Page) -> Locator:
    """The dashboard's rows of finished messaging runs that did not skip (newest first): a
    run with changes or a failure has its own row, quiet runs are folded into one row."""
    return page.locator(
        "[data-testid=run-row][data-job=messaging]:not(.skipped):not(.running),"
        " [data-testid=quiet-row][data-job=messaging]"
    )


def test_first_sync_starts_by_itself_and_shows_progress_and_counts(alice: Alice) -> None:
    page = alice.page
    if wait_for_progress_or_run(page, timeout=30_000):  # a fast run may end before we look
        arrive(page, "progress-bar")
        screenshot(page, f"{SHOTS}-10-dashboard-first-sync-running")
    first = wait_for_messaging_run(page, exclude_skipped=True, timeout=90_000)
    expect(first.locator(".badge")).to_have_text("ok")
    progress = first.get_by_test_id("run-progress").locator("li")  # every kind to its end
    expect(progress.first).to_be_visible()
    assert all(t.endswith("done") for t in progress.all_inner_texts()), progress.all_inner_texts()
    expect(page.get_by_test_id("progress")).to_have_count(0)
    expect(page.get_by_test_id("count-contacts-mailbox-created")).to_have_text(
        re.compile(r"^[1-9]\d*$")
    )
    screenshot(page, f"{SHOTS}-11-dashboard-after-first-sync")


def test_sync_now_makes_a_new_run_and_an_unchanged_sync_writes_nothing(alice: Alice) -> None:
    page = alice.page
    again = sync_now_and_wait(page, f"{SHOTS}-12-dashboard-sync-now-running")
    if again.get_attribute("data-testid") != "quiet-row":  # quiet runs in a row are folded
        expect(again.locator(".badge")).to_have_text("ok")
    # the contacts the first sync put in the mailbox stay counted as in sync
    expect(page.get_by_test_id("in-sync-contacts")).to_have_text(re.compile(r"^[1-9]\d* in sync$"))
    screenshot(page, f"{SHOTS}-13-dashboard-after-sync-now")

    # nothing changed anywhere since the first sync: every later run must find nothing to do
    # (a field the mailbox cannot hold exactly must not come back as a change to the CRM)
    sync_now_and_wait(page)
    shot = screenshot(page, f"{SHOTS}-14-dashboard-after-unchanged-sync")
    said = synced_runs(page).evaluate_all(
        "rows => rows.map(r => r.dataset.testid === 'quiet-row' ? 'quiet'"
        " : r.cells[r.cells.length - 1].textContent.trim())"
    )
    assert len(said) >= 2, said
    assert set(said[:-1]) <= {"quiet", "Nothing changed."}, (
        f"runs after the first sync (newest first) changed data: {said}; the per-kind "
        f"counts are in {shot}"
    )


def test_a_conflict_is_recorded_and_reversed_into_the_crm(
    alice: Alice, shared_sandbox: SandboxProcess
) -> None:
    page, contact = alice.page, alice.contact
    if synced_runs(page).count() == 0:  # run alone: the contact must be in the mailbox first
        sync_now_and_wait(page)

    # a conflict: the same field changed in the CRM and in the mailbox, then a sync
    change_job_title_on_both_sides(shared_sandbox, contact)
    sync_now_and_wait(page)
    expect(page.get_by_test_id("kind-contacts")).to_contain_text("conflicts")
    screenshot(page, f"{SHOTS}-15-dashboard-after-conflict")

    page.goto(alice.app.base_url + "/conflicts")
    row = page.locator("tr[data-testid^=conflict-]", has_text=contact["lastname"]).filter(
        has_text="Job title"
    )
    expect(row).to_have_count(1)
    conflict_id = str(row.get_attribute("data-testid")).removeprefix("conflict-")
    expect(page.get_by_test_id(f"conflict-{conflict_id}-crm")).to_have_text(CRM_TITLE)
    expect(page.get_by_test_id(f"conflict-{conflict_id}-mailbox")).to_have_text(MAILBOX_TITLE)
    winner = page.get_by_test_id(f"conflict-{conflict_id}-winner")
    crm_kept = winner.inner_text().startswith("CRM")
    kept, other = (CRM_TITLE, MAILBOX_TITLE) if crm_kept else (MAILBOX_TITLE, CRM_TITLE)
    assert crm_job_title(shared_sandbox, contact["id"]) == kept
    screenshot(page, f"{SHOTS}-16-conflicts")

    page.get_by_test_id(f"conflict-reverse-{conflict_id}").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Conflict #{conflict_id} reversed")
    expect(page.get_by_test_id(f"conflict-reverse-{conflict_id}")).to_have_count(0)
    screenshot(page, f"{SHOTS}-17-conflict-reversed")
    assert crm_job_title(shared_sandbox, contact["id"]) == other

    page.goto(alice.app.base_url + "/alerts")
    expect(page.get_by_role("heading", name="Alerts")).to_be_visible()
    screenshot(page, f"{SHOTS}-18-alerts")
    page.goto(alice.app.base_url + "/")  # back on the dashboard for whatever comes next
    arrive(page, "sync-now")


def token_cache_secrets(data_dir: Path) -> list[str]:
    """Every token in the app's msal cache (plaintext here: the test machine has no keyring)."""
    cache = json.loads((data_dir / TOKEN_CACHE_FILE).read_text())
    return [
        entry["secret"]
        for section in ("AccessToken", "RefreshToken", "IdToken")
        for entry in cache.get(section, {}).values()
    ]


def test_no_token_or_password_in_the_logs_after_sign_in_and_sync(
    alice: Alice, shared_sandbox: SandboxProcess
) -> None:
    page = alice.page
    if synced_runs(page).count() == 0:  # run alone: one full sync first
        sync_now_and_wait(page)
    secrets = {
        "Alice's password": shared_sandbox.password(ALICE),
        "the secret key": (alice.app.data_dir / "secret_key").read_text().strip(),
    }
    tokens = token_cache_secrets(alice.app.data_dir)
    assert len(tokens) >= 3, "the sign-in left no tokens: nothing would be checked"
    secrets |= {f"token #{i}": token for i, token in enumerate(tokens)}
    page.goto(alice.app.base_url + "/log")
    logs = {"the printed log (stdout, stderr)": "".join(alice.app.output),
            "the log page": page.content()}  # fmt: skip
    assert len(logs["the printed log (stdout, stderr)"].splitlines()) > 50  # -v: a full log
    for where, text in logs.items():
        for what, value in secrets.items():
            assert value not in text, f"{what} appears in {where}"
