"""Issue 11 points 4 and 5: the own-filter builder swapped alone by htmx, typed per field; no
finishing with nothing to sync; a summary that lists every choice with one way on.

Flask test client on the in-memory ports (sync.setup.memory), as tests/web/test_wizard.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from sync.setup.memory import MemoryWorld, demo_world
from sync.setup.profile import Profile
from sync.setup.user_filters import user_filters
from tests.helpers import page_text, signed_in
from tests.web.test_wizard import Wizard, make_app

HX = {"HX-Request": "true"}


@pytest.fixture
def world() -> MemoryWorld:
    return demo_world()


@pytest.fixture
def wizard_app(data_dir: Path, world: MemoryWorld) -> Iterator[Flask]:
    app = make_app(data_dir, world)
    yield app
    app.extensions["mailbox_sync.database"].dispose()


@pytest.fixture
def wizard(wizard_app: Flask, world: MemoryWorld) -> Wizard:
    return Wizard(signed_in(wizard_app), world)


@pytest.fixture
def at_choices(wizard: Wizard) -> Wizard:
    """Through organization (contoso, fabrikam connected), mailbox and instance."""
    assert wizard.organization("contoso", connected=("fabrikam",)).status_code == 303
    assert wizard.mailbox().status_code == 303
    assert wizard.post("/setup/instance", {"take_over": "yes", "instance_name": "desk-pc"})
    return wizard


def contoso_users(wizard: Wizard) -> dict[str, str]:
    org = wizard.world.orgs[wizard.org_id("contoso")]
    return {u.name: u.id for u in org.users.values()}


def profile_of(wizard_app: Flask) -> Profile:
    return Profile(wizard_app.extensions["mailbox_sync.database"], wizard_app.config["DATA_DIR"])


def builder(wizard: Wizard, **form: object) -> str:
    answer = wizard.post("/setup/choices/filters/builder", form, headers=HX)
    assert answer.status_code == 200
    return page_text(answer)


def options_of(html: str, testid: str) -> list[str]:
    """The option values of the select with this data-testid."""
    found = re.search(rf'<select[^>]*data-testid="{testid}"[^>]*>(.*?)</select>', html, re.S)
    assert found is not None, f"no select {testid}"
    return re.findall(r'<option value="([^"]*)"', found.group(1))


def input_tag(html: str, testid: str) -> str:
    found = re.search(rf'<(input|select)[^>]*data-testid="{testid}"[^>]*>', html)
    assert found is not None, f"no input {testid}"
    return found.group(0)


# --- point 4: the builder ------------------------------------------------------------------


def test_the_builder_is_its_own_fragment_offering_only_the_chosen_kinds_fields(
    at_choices: Wizard,
) -> None:
    html = builder(at_choices, filter_kind="tasks", field_0="")
    assert html.lstrip().startswith('<section class="own-filters" id="filter-builder"')
    assert "<html" not in html and 'data-testid="next"' not in html  # not the page
    fields = options_of(html, "field-0")
    assert fields == ["", "_ownerid_value", "statecode", "prioritycode", "subject",
                      "scheduledend", "percentcomplete"]  # fmt: skip
    assert "jobtitle" not in html
    contacts = options_of(builder(at_choices, filter_kind="contacts"), "field-0")
    assert "jobtitle" in contacts and "prioritycode" not in contacts
    # the kind and the field lines redraw just the builder through htmx
    assert 'hx-post="/setup/choices/filters/builder"' in html
    assert 'hx-target="#filter-builder"' in html and 'hx-swap="outerHTML"' in html


def test_each_field_gets_the_input_of_its_type(at_choices: Wizard) -> None:
    html = builder(at_choices, filter_kind="tasks", field_0="_ownerid_value",
                   field_1="scheduledend", field_2="percentcomplete")  # fmt: skip
    users = contoso_users(at_choices)
    # owner: a user picker, "me" first, then the CRM's users by name
    assert options_of(html, "value-0") == ["me", users["Alice Wong"], users["Bob Kelly"]]
    assert ">Alice Wong</option>" in html and ">Bob Kelly</option>" in html
    assert options_of(html, "op-0") == ["eq", "ne"]
    # date: a date picker, or days from today
    assert 'type="date"' in input_tag(html, "value-1")
    assert 'type="number"' in input_tag(html, "days-1")
    assert options_of(html, "op-1") == ["lt", "le", "gt", "ge", "null", "not_null"]
    # number: a number input with the column's range, compared as numbers
    number = input_tag(html, "value-2")
    assert 'type="number"' in number and 'min="0"' in number and 'max="100"' in number
    assert "is at least" in html and "is less than" in html
    # an option set: a select of its labels
    choice = builder(at_choices, filter_kind="tasks", field_0="prioritycode")
    assert options_of(choice, "value-0") == ["0", "1", "2"] and ">High</option>" in choice


def test_changing_a_lines_field_starts_it_empty_and_a_kind_change_drops_foreign_fields(
    at_choices: Wizard,
) -> None:
    html = builder(at_choices, filter_kind="tasks", field_0="scheduledend",
                   shown_field_0="subject", value_0="Quarterly", op_0="contains")  # fmt: skip
    assert 'value="Quarterly"' not in html
    assert options_of(html, "op-0")[0] == "lt"
    kept = builder(at_choices, filter_kind="tasks", field_0="subject",
                   shown_field_0="subject", value_0="Quarterly", op_0="contains")  # fmt: skip
    assert 'value="Quarterly"' in kept
    moved = builder(at_choices, filter_kind="tasks", filter_name="Mine", field_0="jobtitle",
                    shown_field_0="jobtitle", value_0="Buyer", op_0="eq")  # fmt: skip
    assert 'data-testid="op-0"' not in moved and 'value="Mine"' in moved


def test_an_htmx_add_with_an_error_answers_the_builder_with_the_error_and_what_was_typed(
    at_choices: Wizard, wizard_app: Flask
) -> None:
    answer = at_choices.post("/setup/choices/filters", {
        "filter_kind": "tasks", "filter_name": "Nearly done",
        "field_0": "percentcomplete", "op_0": "ge", "value_0": "150",
    }, headers=HX)  # fmt: skip
    html = page_text(answer)
    assert answer.status_code == 200  # htmx swaps 2xx answers only
    assert html.lstrip().startswith('<section class="own-filters" id="filter-builder"')
    assert 'data-testid="filter-error"' in html
    assert "Percent complete: a whole number from 0 to 100." in html
    assert 'value="Nearly done"' in html and 'value="150"' in html
    # the server stays the authority: another kind's field is refused whatever the page offered
    foreign = at_choices.post("/setup/choices/filters", {
        "filter_kind": "tasks", "filter_name": "x", "field_0": "jobtitle", "op_0": "eq",
        "value_0": "Buyer"}, headers=HX)  # fmt: skip
    assert "Unknown field: jobtitle." in page_text(foreign)
    days = at_choices.post("/setup/choices/filters", {
        "filter_kind": "tasks", "filter_name": "x", "field_0": "scheduledend", "op_0": "le",
        "days_0": "a week"}, headers=HX)  # fmt: skip
    assert "Due: days from today is a whole number" in page_text(days)
    assert user_filters(profile_of(wizard_app)) == []


def test_an_htmx_add_appends_the_ticked_line_to_the_form_and_empties_the_builder(
    at_choices: Wizard, wizard_app: Flask
) -> None:
    users = contoso_users(at_choices)
    bob = users["Bob Kelly"]
    answer = at_choices.post("/setup/choices/filters", {
        "filter_kind": "tasks", "filter_name": "Bob's soon",
        "field_0": "_ownerid_value", "op_0": "eq", "value_0": bob,
        "field_1": "scheduledend", "op_1": "le", "value_1": "", "days_1": "7",
        "field_2": "percentcomplete", "op_2": "lt", "value_2": "50",
    }, headers=HX)  # fmt: skip
    html = page_text(answer)
    assert answer.status_code == 200
    made = user_filters(profile_of(wizard_app))
    assert len(made) == 1
    assert list(made[0].conditions) == [
        {"field": "_ownerid_value", "op": "eq", "value": bob},
        {"field": "scheduledend", "op": "le", "value": "today+7 days"},
        {"field": "percentcomplete", "op": "lt", "value": 50},
    ]
    # the new line goes into the step's form out of band, ticked, its conditions in words
    oob = re.search(r'<div hx-swap-oob="beforeend:#own-filter-rows">(.*?)</div>', html, re.S)
    assert oob is not None
    line = oob.group(1)
    assert f'value="{made[0].slug}" checked' in line
    assert "Owner is Bob Kelly; Due is on or before 7 days from today; " in line
    assert "Percent complete is less than 50" in line
    assert re.search(rf'data-testid="count-{made[0].slug}">\s*\d+ records', line)
    assert answer.headers["HX-Trigger-After-Settle"] == "filters-changed"  # totals recount
    # the builder comes back empty, with the new filter in its list
    builder_part = html[: html.index("hx-swap-oob")]
    assert 'value="Bob&#39;s soon"' not in builder_part and f"delete-{made[0].slug}" in html
    # and the step's page shows it the same way after a reload
    page = page_text(at_choices.client.get("/setup/choices"))
    assert 'id="own-filter-rows"' in page and f'data-testid="filter-{made[0].slug}"' in page


def test_without_javascript_the_builder_still_works_with_whole_pages(at_choices: Wizard) -> None:
    shown = at_choices.post("/setup/choices/filters", {"filter_kind": "appointments",
                                                     "action": "refresh"})  # fmt: skip
    page = page_text(shown)
    assert shown.status_code == 200 and 'data-testid="wizard-choices"' in page
    assert "scheduledstart" in page and "prioritycode" not in page
    refused = at_choices.post("/setup/choices/filters", {"filter_kind": "tasks",
                                                       "filter_name": ""})  # fmt: skip
    assert refused.status_code == 422 and "Give the filter a name" in page_text(refused)
    added = at_choices.post("/setup/choices/filters", {
        "filter_kind": "tasks", "filter_name": "Open", "field_0": "statecode", "op_0": "eq",
        "value_0": "0"})  # fmt: skip
    assert added.status_code == 303 and added.headers["Location"].endswith("/setup/choices")


def test_the_builder_needs_the_csrf_token(at_choices: Wizard) -> None:
    answer = at_choices.client.post("/setup/choices/filters/builder", data={"filter_kind": "tasks"})
    assert answer.status_code == 400


# --- point 5: nothing to sync, the summary ---------------------------------------------------

NOTHING = "Choose at least one thing to sync"


def test_nothing_to_sync_is_refused_beside_the_next_button(
    at_choices: Wizard, wizard_app: Flask
) -> None:
    empty: dict[str, object] = {
        "filters": [],
        "tracking": "none",
        "interval_seconds": "300",
        "email_form": "1",
    }
    refused = at_choices.post("/setup/choices", empty)
    page = page_text(refused)
    assert refused.status_code == 422 and NOTHING in page
    # the message sits right above the Next button the user just pressed
    error_at, next_at = page.index('data-testid="error"'), page.index('data-testid="next"')
    assert page.index('data-testid="email-choices"') < error_at < next_at
    assert '<fieldset class="invalid" data-testid="filters"' in page
    assert not profile_of(wizard_app).step_done("choices")
    # htmx: the same message, in a 200 it swaps in
    swapped = at_choices.post("/setup/choices", empty, headers=HX)
    assert swapped.status_code == 200 and NOTHING in page_text(swapped)
    # one thing is enough: email tracking alone, or one filter alone
    assert at_choices.post("/setup/choices", {**empty, "tracking": "all"}).status_code == 303
    assert (
        at_choices.post("/setup/choices", {**empty, "filters": ["my-open-tasks"]}).status_code
        == 303
    )


def test_the_summary_lists_every_choice_and_has_one_way_to_the_dashboard(
    at_choices: Wizard,
) -> None:
    bob = contoso_users(at_choices)["Bob Kelly"]
    assert at_choices.post("/setup/choices/filters", {
        "filter_kind": "tasks", "filter_name": "Bob's soon",
        "field_0": "_ownerid_value", "op_0": "eq", "value_0": bob,
        "field_1": "scheduledend", "op_1": "le", "days_1": "-3",
    }).status_code == 303  # fmt: skip
    slug = re.search(r'data-testid="filter-(user-\d+)"',
                     page_text(at_choices.client.get("/setup/choices")))  # fmt: skip
    assert slug is not None
    chosen = at_choices.post("/setup/choices", {
        "filters": ["my-active-contacts", "my-appointments", slug.group(1)],
        "tracking": "replies", "interval_seconds": "900", "direction_contacts": "to_mailbox",
        "email_form": "1", "track_days_back": "14", "token_enabled": "1", "token_prefix": "CRM:",
        "send_crm_email": "1",
    })  # fmt: skip
    assert chosen.status_code == 303
    page = page_text(at_choices.client.get("/setup/done"))
    summary = page[page.index('data-testid="summary"') :]
    for expected in (
        "Contoso Sandbox", "Fabrikam Sandbox", "alice@contoso.example", "(Exchange)",
        "This computer (desk-pc)",
        "Contacts, Appointments, Tasks",
        "Contacts: My active contacts", "Owner is me; Status is Active",
        "Appointments: My appointments", "Appointment type is Single",
        "Tasks: Bob&#39;s soon", "Owner is Bob Kelly; Due is on or before 3 days before today",
        "Contact fields: CRM to mailbox only", "Task fields: Both ways",
        "Replies to email tracked in the CRM", "Sent items are not tracked",
        "Also the messages of the last 14 days", "Tracking token in the subject: CRM:",
        "CRM email sent through this mailbox", "15 min",
    ):  # fmt: skip
        assert expected in summary, expected
    assert len(re.findall(r'data-testid="summary-filter"', page)) == 3
    # one way on to the dashboard in the page's content: the Finish button
    content = page[page.index("<main>") :]
    assert 'data-testid="dashboard-first"' not in content
    assert content.count('data-testid="finish"') == 1
    assert 'href="/"' not in content and 'href="/?setup=later"' not in content
    # earlier steps still offer "Look at the dashboard first"
    assert 'data-testid="dashboard-first"' in page_text(at_choices.client.get("/setup/choices"))


def test_the_totals_count_ticked_own_filters_with_the_built_in_ones(
    at_choices: Wizard, wizard_app: Flask
) -> None:
    assert at_choices.post("/setup/choices/filters", {
        "filter_kind": "tasks", "filter_name": "High", "field_0": "prioritycode", "op_0": "eq",
        "value_0": "2"}).status_code == 303  # fmt: skip
    made = user_filters(profile_of(wizard_app))[0]
    alice = contoso_users(at_choices)["Alice Wong"]
    org = at_choices.world.orgs[at_choices.org_id("contoso")]
    union = f"(_ownerid_value eq {alice} and statecode eq 0) or (prioritycode eq 2)"
    org.counts[f"tasks?{union}"] = 12
    totals = at_choices.post("/setup/choices/counts",
                             {"filters": ["my-open-tasks", made.slug]}, headers=HX)  # fmt: skip
    assert re.search(r'data-testid="total-tasks">\s*Tasks 12', page_text(totals))
