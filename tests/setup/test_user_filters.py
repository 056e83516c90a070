"""The user's own sync filters: validation, storage beside the built-in ones, OData, the kinds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync.setup import choices, odata, user_filters
from sync.setup.messages import SetupError
from sync.setup.profile import Profile
from sync.store.db import Database, open_database

ME = "6f1c2d3e-0000-4000-8000-000000000001"
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


@pytest.fixture
def profile(data_dir: Path) -> Iterator[Profile]:
    database: Database = open_database(data_dir)
    yield Profile(database, data_dir)
    database.dispose()


def test_conditions_are_checked_field_by_field() -> None:
    parsed = user_filters.parse_filter(
        "tasks",
        "Due soon",
        [
            ("_ownerid_value", "eq", ""),  # empty owner means me
            ("prioritycode", "eq", "high"),  # an option by its label
            ("scheduledend", "le", "today + 7"),
        ],
    )
    assert parsed == [
        {"field": "_ownerid_value", "op": "eq", "value": "me"},
        {"field": "prioritycode", "op": "eq", "value": 2},
        {"field": "scheduledend", "op": "le", "value": "today+7 days"},
    ]
    with pytest.raises(SetupError, match="Unknown field") as caught:
        user_filters.parse_filter("contacts", "x", [("scheduledend", "le", "today")])
    assert caught.value.field == "field"
    with pytest.raises(SetupError, match="compared that way"):
        user_filters.parse_filter("contacts", "x", [("statecode", "contains", "0")])
    with pytest.raises(SetupError, match="choose one of the offered values"):
        user_filters.parse_filter("contacts", "x", [("statecode", "eq", "maybe")])
    with pytest.raises(SetupError, match="at least one condition"):
        user_filters.parse_filter("contacts", "x", [("", "", "")])
    with pytest.raises(SetupError, match="name"):
        user_filters.parse_filter("contacts", " ", [("jobtitle", "null", "")])


def test_as_odata_for_the_live_count() -> None:
    conditions = user_filters.parse_filter(
        "contacts",
        "Buyers",
        [("_ownerid_value", "eq", "me"), ("jobtitle", "contains", "O'Buyer"),
         ("modifiedon", "ge", "today-30")],
    )  # fmt: skip
    assert odata.to_odata(conditions, ME, NOW, "UTC") == (
        f"_ownerid_value eq {ME} and contains(jobtitle,'O''Buyer') "
        "and modifiedon ge 2026-10-27T00:00:00Z"
    )
    # "today" is the user's: in Tokyo it is 27 November already, so today+1 is 28 November 00:00
    # JST, which is 27 November 15:00 UTC
    late = [{"field": "modifiedon", "op": "lt", "value": "today+1 days"}]
    assert odata.to_odata(late, ME, NOW, "Asia/Tokyo") == "modifiedon lt 2026-11-27T15:00:00Z"
    empty = [{"field": "department", "op": "null", "value": None}]
    assert odata.to_odata(empty, ME, NOW, "UTC") == "department eq null"


def test_stored_beside_the_built_ins_and_deciding_the_kinds(profile: Profile) -> None:
    choices.save_choices(profile, choices.Choices(filters=("my-active-contacts",)))
    assert profile.get("kinds") == ["contacts"]
    conditions = user_filters.parse_filter("tasks", "Mine", [("_ownerid_value", "eq", "me")])
    made = user_filters.add_filter(profile, "tasks", "Mine", conditions)
    assert profile.get("kinds") == ["contacts", "tasks"]  # a new filter syncs its kind
    assert made.slug in choices.current_choices(profile).filters

    # unticked in the wizard: kept, but off; its kind stops syncing
    choices.save_choices(profile, choices.Choices(filters=("my-active-contacts",)))
    assert [f.enabled for f in user_filters.user_filters(profile)] == [False]
    assert profile.get("kinds") == ["contacts"]
    choices.save_choices(profile, choices.Choices(filters=(made.slug,)))
    assert profile.get("kinds") == ["tasks"]

    assert user_filters.delete_filter(profile, made.id)
    assert user_filters.user_filters(profile) == [] and profile.get("kinds") == []
    assert not user_filters.delete_filter(profile, made.id)
