"""Offline in Chromium against the real app and the sandbox (issue 12): go offline, edit a
contact in the metadata-built form, the same field edited on the server meanwhile (another
user, through the sandbox's Web API), go online, the conflict listed on the Conflicts page,
resolved "keep mine" (Use the other value: the server had won by the default policy), and the
server holds mine afterwards, read from the sandbox itself.

Once in English and once in Japanese: Alice's CRM language (usersettings.uilanguageid, 1041)
gives the form's labels in Japanese, the app's pages are asked in Japanese, and no English word
is left on any page visited (the crawler's rule, tests/web/test_i18n_crawl.py), the user's own
data aside.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import (
    LiveApp,
    SandboxProcess,
    arrive,
    holding,
    open_page,
    screenshot,
    settled,
    start_app,
)
from playwright.sync_api import Browser, Page, expect

from tests.sandbox_process import set_up_by_cli
from tests.web.test_i18n_crawl import _WORD, ALLOWED, USER_DATA, english_words

ALICE = "alice@contoso.example"
SHOTS = "offline"
JAPANESE_UI_WORDS = {"FAX", "Web", "ID", "URL", "Exchange", "Outlook", "Teams", "UTC"}
"""Latin words the Japanese product UI itself writes (labels such as "Web サイト", "FAX")."""


@pytest.fixture(scope="module")
def alice_app(
    shared_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    """Alice's computer, set up by the command line with her active contacts offline."""
    data_dir = tmp_path_factory.mktemp("alice-offline")
    set_up_by_cli(
        shared_sandbox, data_dir, ALICE, "--instance-name", "alice-pc",
        filters="my-active-contacts,offline-my-contacts",
    )  # fmt: skip
    app = start_app(data_dir, sandbox_json=shared_sandbox.json_file)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def alice_page(browser: Browser, alice_app: LiveApp) -> Iterator[Page]:
    """Alice's browser, signed in once (the sign-in link works one time)."""
    page = open_page(browser)
    page.goto(alice_app.link)
    yield page
    page.context.close()


def _alice_id(sandbox: SandboxProcess) -> str:
    with sandbox.crm(ALICE) as crm:
        return str(crm.get("WhoAmI").json()["UserId"])


def _set_language(sandbox: SandboxProcess, code: int) -> None:
    with sandbox.crm(ALICE) as crm:
        answer = crm.patch(
            f"usersettingscollection({_alice_id(sandbox)})", json={"uilanguageid": code}
        )
        assert answer.status_code == 204, answer.text


def _contacts(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    """Alice's active contacts (what her offline filter takes), by name."""
    with sandbox.crm(ALICE) as crm:
        answer = crm.get(
            "contacts",
            params={"$filter": f"_ownerid_value eq {_alice_id(sandbox)} and statecode eq 0",
                    "$orderby": "fullname"},
        )  # fmt: skip
    answer.raise_for_status()
    return list(answer.json()["value"])


def _server_job_title(sandbox: SandboxProcess, contact_id: str) -> str | None:
    with sandbox.crm(ALICE) as crm:
        answer = crm.get(f"contacts({contact_id})", params={"$select": "jobtitle"})
    answer.raise_for_status()
    value = answer.json()["jobtitle"]
    return str(value) if value is not None else None


def _go(page: Page, app: LiveApp, action: str, done: str, lang: str) -> None:
    page.goto(f"{app.base_url}/offline/?lang={lang}")
    page.get_by_test_id(f"go-{action}").click()
    expect(page.get_by_test_id(done)).to_be_visible(timeout=60_000)


def _round(
    page: Page, app: LiveApp, sandbox: SandboxProcess, contact: dict[str, Any], lang: str
) -> dict[str, str]:
    """One go offline → edit → server edit → go online → keep mine; the page texts seen."""
    seen: dict[str, str] = {}
    mine, theirs = f"Mine {lang}", f"Theirs {lang}"
    contact_id = str(contact["contactid"])

    def look(name: str) -> None:
        seen[name] = page.locator("body").inner_text()
        screenshot(page, f"{SHOTS}-{lang}-{name}")

    _go(page, app, "offline", "offline-done", lang)
    look("01-offline")
    page.goto(f"{app.base_url}/offline/contacts?lang={lang}")
    expect(page.get_by_test_id(f"offline-row-{contact_id}")).to_be_visible()
    look("02-list")
    page.get_by_test_id(f"offline-row-{contact_id}").get_by_role("link").click()
    arrive(page, "offline-form")
    label = page.locator("label[for=f-jobtitle]")
    expect(label).to_have_text("役職" if lang == "ja" else "Job Title")
    look("03-form")
    page.locator("#f-jobtitle").fill(mine)
    page.get_by_test_id("offline-save").click()
    arrive(page, "offline-list")

    with sandbox.crm(ALICE) as crm:  # the same field changed on the server meanwhile
        assert crm.patch(f"contacts({contact_id})", json={"jobtitle": theirs}).status_code == 204

    _go(page, app, "online", "online-done", lang)
    look("04-online")
    page.goto(f"{app.base_url}/conflicts?lang={lang}")
    row = page.locator("tr[data-testid^=conflict-]").filter(has_text=str(contact["fullname"]))
    expect(row).to_have_count(1)
    expect(row).to_contain_text(theirs)
    expect(row).to_contain_text(mine)
    look("05-conflict")
    assert _server_job_title(sandbox, contact_id) == theirs  # the default policy: the server's
    row.locator("[data-testid^=conflict-reverse-]").click()  # keep mine
    reversed_row = page.locator("tr.reversed[data-testid^=conflict-]")
    expect(reversed_row.filter(has_text=str(contact["fullname"]))).to_have_count(1)
    assert _server_job_title(sandbox, contact_id) == mine
    look("06-resolved")
    return seen


def test_offline_edit_conflict_keep_mine_in_english_and_japanese(
    alice_page: Page, alice_app: LiveApp, shared_sandbox: SandboxProcess
) -> None:
    contacts = _contacts(shared_sandbox)
    assert len(contacts) >= 2
    page = alice_page

    _set_language(shared_sandbox, 1033)
    _round(page, alice_app, shared_sandbox, contacts[0], "en")

    _set_language(shared_sandbox, 1041)
    try:
        seen = _round(page, alice_app, shared_sandbox, contacts[1], "ja")
    finally:
        _set_language(shared_sandbox, 1033)

    data = {w for c in _contacts(shared_sandbox) for v in c.values() if isinstance(v, str)
            for w in _WORD.findall(v)}  # fmt: skip
    data |= {"Mine", "Theirs", "ja", "en", "Alice", "Wong", "Contoso", "Sandbox"}
    here = set(_WORD.findall(socket.gethostname()))
    allowed = ALLOWED | USER_DATA | JAPANESE_UI_WORDS | data | here
    left = {name: sorted(w) for name, text in seen.items() if (w := english_words(text, allowed))}
    assert not left, f"English left on Japanese pages: {left}"


def _table_by_logical_name(page: Page, name: str) -> None:
    """Choose "Another table", type its name and leave the box; each redraw settled."""
    table = page.get_by_test_id("offline-builder").get_by_test_id("offline-table")
    if table.input_value() != "other":
        table.select_option("other")
        expect(page.get_by_test_id("offline-table-name")).to_be_visible()
        settled(page)
    box = page.get_by_test_id("offline-table-name")
    box.fill(name)
    box.dispatch_event("change")
    settled(page)


def _condition(page: Page, column: str) -> None:
    """The first condition on `column`: its value input comes with the redraw."""
    page.get_by_test_id("offline-field-0").select_option(column)
    arrive(page, "offline-value-0")


def test_an_offline_filter_of_a_table_typed_by_logical_name(
    alice_page: Page, alice_app: LiveApp
) -> None:
    """The wizard's offline builder in the browser: an unknown table is said beside the name
    box; a known one shows its fields (read from the CRM's definitions); the added filter
    appears ticked with its live count and size estimate."""
    page = alice_page
    page.goto(f"{alice_app.base_url}/setup/choices?lang=en")
    builder = page.get_by_test_id("offline-builder")
    expect(builder.get_by_test_id("offline-field-0")).to_be_visible()  # contacts, on load
    _table_by_logical_name(page, "nosuch")
    expect(page.get_by_test_id("offline-filter-error")).to_contain_text("no table named nosuch")
    _table_by_logical_name(page, "account")
    expect(page.get_by_test_id("offline-table-found")).to_contain_text("account")
    page.get_by_test_id("offline-filter-name").fill("Active accounts")
    _condition(page, "statecode")
    screenshot(page, f"{SHOTS}-wizard-builder")
    page.get_by_test_id("add-offline-filter-submit").click()
    added = page.locator("#offline-filter-rows label").filter(has_text="Active accounts")
    expect(added).to_be_visible()
    expect(added.locator("input[type=checkbox]")).to_be_checked()
    expect(added.locator("[data-testid^=estimate-]")).to_contain_text("to download")
    screenshot(page, f"{SHOTS}-wizard-added")


def test_an_offline_filter_name_typed_while_the_builder_redraws_stays(
    alice_page: Page, alice_app: LiveApp
) -> None:
    """The table changed, then the name typed while the redraw reads the table's definitions
    from the CRM: the redraw keeps what was typed."""
    page = alice_page
    page.goto(f"{alice_app.base_url}/setup/choices?lang=en")
    table = page.get_by_test_id("offline-builder").get_by_test_id("offline-table")
    with holding(page, "**/offline/filters/builder") as redraw:
        table.select_option("accounts")
        redraw.wait()
        page.get_by_test_id("offline-filter-name").fill("Typed meanwhile")
        redraw.release("offline-builder")
    expect(page.get_by_test_id("offline-table")).to_have_value("accounts")
    expect(page.get_by_test_id("offline-filter-name")).to_have_value("Typed meanwhile")


def test_add_right_after_the_logical_name_is_not_undone_by_its_redraw(
    alice_page: Page, alice_app: LiveApp
) -> None:
    """Changing a table's logical name and pressing "Add offline filter" at once: leaving the
    box asks for a redraw (slow: the CRM's definitions), the add goes too. The add wins; the
    redraw must not land afterwards and show the builder as it was before the add."""
    page = alice_page
    page.goto(f"{alice_app.base_url}/setup/choices?lang=en")
    _table_by_logical_name(page, "account")
    expect(page.get_by_test_id("offline-table-found")).to_contain_text("account")
    page.get_by_test_id("offline-filter-name").fill("Every account")
    _condition(page, "statecode")
    with holding(page, "**/offline/filters/builder") as redraw:
        page.get_by_test_id("offline-table-name").dispatch_event("change")  # as leaving it does
        redraw.wait()
        page.get_by_test_id("add-offline-filter-submit").click()
        added = page.locator("#offline-filter-rows label").filter(has_text="Every account")
        expect(added).to_be_visible()
    settled(page)  # a redraw let go by `holding` would land now
    page.wait_for_timeout(500)
    expect(page.get_by_test_id("offline-filter-name")).to_have_value("")  # the fresh builder
    expect(page.get_by_test_id("offline-table-name")).to_have_value("")
