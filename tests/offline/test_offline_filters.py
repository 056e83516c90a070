"""Issue 12 item 1: offline filters of one's own, for the listed record types and any table typed
by its logical name (checked against `EntityDefinitions`, powerapps-docs
webapi/query-metadata-web-api.md), with a live count and a size estimate before download; and
the wizard's builder for them (htmx partials on the Offline blueprint).

Over real HTTP to the sandbox Dataverse (tests/offline/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from flask import Flask

from sync.crm.client import DataverseClient
from sync.offline import filters as offline_filters
from sync.offline.download import offline_filters as chosen_filters
from sync.offline.download import row_fields
from sync.offline.service import OfflineService
from sync.setup.messages import SetupError
from sync.store.db import Database
from sync.store.models import SyncFilter
from tests.helpers import page_text
from tests.offline.conftest import Sandbox, connected
from tests.web.test_wizard_filters import (  # noqa: F401 (the wizard's fixtures, reused)
    HX,
    at_choices,
    profile_of,
    wizard,
    wizard_app,
    world,
)
from webapp.offline import SERVICE_KEY

pytestmark = pytest.mark.usefixtures("running")


@pytest.fixture
def client(running: Sandbox) -> Iterator[DataverseClient]:
    with running.client() as crm:
        yield crm


def test_a_table_by_logical_name_is_checked_against_the_table_definitions(
    client: DataverseClient, running: Sandbox
) -> None:
    """Unknown → a SetupError on the name box that says to type the logical name; a listed
    entity set and a logical name both resolve; tracking off (EntityMetadata
    ChangeTrackingEnabled false) is said, not refused."""
    found = offline_filters.find_table(client, "account")
    assert (found.logical_name, found.entity_set, found.tracked) == ("account", "accounts", True)
    assert offline_filters.find_table(client, "leads").logical_name == "lead"
    with pytest.raises(SetupError) as unknown:
        offline_filters.find_table(client, "new_project")
    assert unknown.value.field == "table_name" and "no table named new_project" in str(
        unknown.value
    )
    with pytest.raises(SetupError) as odd:
        offline_filters.find_table(client, "Accounts') or (1 eq 1")
    assert odd.value.field == "table_name"
    running.server.security.set_change_tracking("contoso", "accounts", False)
    try:
        assert offline_filters.find_table(client, "account").tracked is False
    finally:
        running.server.security.set_change_tracking("contoso", "accounts", True)


def test_builder_fields_come_from_the_tables_definitions(client: DataverseClient) -> None:
    fields = {f.column: f for f in offline_filters.builder_fields(client, "accounts")}
    assert fields["_ownerid_value"].type == "user"
    assert fields["name"].type == "text"
    assert fields["statecode"].type == "option" and 0 in dict(fields["statecode"].options)
    conditions = offline_filters.parse(
        tuple(fields.values()), "Mine", [("_ownerid_value", "eq", "me"), ("name", "contains", "a")]
    )
    assert conditions == [
        {"field": "_ownerid_value", "op": "eq", "value": "me", "label": "Owner"},
        {"field": "name", "op": "contains", "value": "a", "label": "Account Name"},
    ]  # with the words they were chosen by, for the summary
    [state] = offline_filters.parse(tuple(fields.values()), "Open", [("statecode", "eq", "0")])
    assert state == {"field": "statecode", "op": "eq", "value": 0, "label": "Status",
                     "shown": "Active"}  # fmt: skip
    with pytest.raises(SetupError):
        offline_filters.parse(tuple(fields.values()), "Bad", [("name", "lt", "x")])
    with pytest.raises(SetupError):
        offline_filters.parse(tuple(fields.values()), "Bad", [("nosuch", "eq", "x")])


def test_the_estimate_is_the_live_count_times_the_average_sampled_row(
    client: DataverseClient, me: str
) -> None:
    conditions = [{"field": "statecode", "op": "eq", "value": 0}]
    found = offline_filters.estimate(client, "accounts", conditions, me)
    assert found.count == client.count("accounts", "statecode eq 0") > 0
    sample = next(client.iter_pages("accounts", filter="statecode eq 0", top=20))
    sizes = [len(json.dumps(row_fields(r), separators=(",", ":"))) for r in sample]
    assert found.sampled == len(sample) and found.average_bytes == sum(sizes) // len(sizes)
    assert found.total_bytes == found.count * found.average_bytes * 2


def test_an_own_offline_filter_of_a_typed_table_is_downloaded(
    database: Database, service: OfflineService, client: DataverseClient, me: str
) -> None:
    """The stored filter is an offline one like the built-ins: "Go offline" takes its rows,
    as many as its live count said."""
    table = offline_filters.find_table(client, "account")
    conditions = [{"field": "_ownerid_value", "op": "eq", "value": "me"}]
    made = offline_filters.add(database, table, "My accounts", conditions)
    assert made.slug.startswith("user-") and made.kind == "offline:accounts"
    assert chosen_filters(database)["accounts"] == [conditions]
    expected = offline_filters.estimate(client, "accounts", conditions, me).count
    service.go_offline()
    assert service.store().count("accounts") == expected > 0
    assert [f.name for f in offline_filters.own_filters(database)] == ["My accounts"]


@pytest.fixture
def offline_wizard(wizard_app: Flask, running: Sandbox, me: str) -> Flask:  # noqa: F811
    database: Database = wizard_app.extensions["mailbox_sync.database"]
    wizard_app.extensions[SERVICE_KEY] = connected(database, running, me)
    return wizard_app


def test_the_wizard_builds_an_offline_filter_with_count_and_estimate(
    offline_wizard: Flask,
    at_choices: object,  # noqa: F811
) -> None:
    web = at_choices.client  # type: ignore[attr-defined]
    post = at_choices.post  # type: ignore[attr-defined]
    unknown = page_text(
        post("/offline/filters/builder", {"offline_table": "other", "table_name": "nosuch"},
             headers=HX)
    )  # fmt: skip
    assert 'data-testid="offline-filter-error"' in unknown and "no table named nosuch" in unknown
    drawn = page_text(
        post("/offline/filters/builder", {"offline_table": "other", "table_name": "account",
                                          "offline_field_0": "statecode"}, headers=HX)
    )  # fmt: skip
    assert 'data-testid="offline-table-found"' in drawn and 'data-testid="offline-op-0"' in drawn
    added = post(
        "/offline/filters",
        {"offline_table": "other", "table_name": "account", "offline_name": "Active accounts",
         "offline_field_0": "statecode", "offline_shown_field_0": "statecode", "offline_op_0": "eq",
         "offline_value_0": "0"},
        headers=HX,
    )  # fmt: skip
    html = page_text(added)
    assert added.status_code == 200 and "Active accounts" in html
    database: Database = offline_wizard.extensions["mailbox_sync.database"]
    with database.session() as session:
        row = session.query(SyncFilter).filter_by(name="Active accounts").one()
        slug = f"user-{row.id}"
        assert row.kind == "offline:accounts" and row.enabled
    assert f'value="{slug}" checked' in html and f'data-testid="estimate-{slug}"' in html
    page = page_text(web.get("/setup/choices"))
    assert f'data-testid="count-{slug}"' in page and "records" in page
    assert "Accounts (offline): Active accounts" in page and "(Status is Active)" in page
    # saving the step with only this box and email off is refused: offline is not messaging
    saved = post("/setup/choices", {"filters": [slug], "tracking": "none", "email_form": "1"})
    assert saved.status_code == 422
    ticked = [slug, "my-active-contacts", "offline-my-contacts"]
    saved = post("/setup/choices", {"filters": ticked, "tracking": "none", "email_form": "1"})
    assert saved.status_code == 303
    with database.session() as session:
        assert session.query(SyncFilter).filter_by(name="Active accounts").one().enabled
    assert "contacts" in (profile_of(offline_wizard).get("kinds") or [])
    # a ticked built-in offline filter has its estimate too
    page = page_text(web.get("/setup/choices"))
    assert 'data-testid="estimate-offline-my-contacts"' in page
    assert f'value="{slug}" checked' in page
    assert post(f"/offline/filters/{row.id}/delete", {}).status_code == 303
    with database.session() as session:
        assert session.query(SyncFilter).filter_by(name="Active accounts").count() == 0


def test_the_builder_reads_a_tables_definitions_once_per_language(
    offline_wizard: Flask,
    at_choices: object,  # noqa: F811
    running: Sandbox,
    me: str,
) -> None:
    """The builder draws itself again on every change of its form; the table's definitions
    (eight requests) are read once per table and CRM language, then kept for ten minutes.
    Switching the CRM user's language (usersettings.uilanguageid) reads them again, in it."""
    post = at_choices.post  # type: ignore[attr-defined]
    form = {"offline_table": "other", "table_name": "account", "offline_field_0": "statecode"}

    def definitions() -> int:
        return sum(1 for e in running.server.log.snapshot() if e.target == "EntityDefinitions")

    before = definitions()
    first = page_text(post("/offline/filters/builder", form, headers=HX))
    read_once = definitions() - before
    assert read_once >= 2 and 'data-testid="offline-table-found"' in first
    again = page_text(post("/offline/filters/builder", form, headers=HX))
    assert definitions() - before == read_once  # the second drawing reads none
    assert again == first
    url = running.api + f"usersettingscollection({me})"
    with running.http() as http:
        assert http.patch(url, json={"uilanguageid": 1041}).status_code == 204
        try:
            japanese = page_text(post("/offline/filters/builder", form, headers=HX))
            assert definitions() - before == 2 * read_once
            assert japanese != first  # the CRM's own Japanese labels
        finally:
            assert http.patch(url, json={"uilanguageid": 1033}).status_code == 204
