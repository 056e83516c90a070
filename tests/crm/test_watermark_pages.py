"""The `modifiedon` reader hands on its changes a page at a time (the rows of a large change set
never sit in its memory at once), and its deletion sweep interval is a profile setting."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sync.crm.side import DataverseSide
from sync.crm.watermark import (
    DEFAULT_SWEEP_EVERY,
    SWEEP_SETTING,
    WatermarkReader,
    WatermarkState,
    sweep_every_setting,
)
from sync.sides import Deleted, Upsert


class PagedClient:
    """`iter_pages` over fixed pages, noting how many pages were handed out so far."""

    def __init__(self, pages: list[list[dict[str, Any]]], ids: list[str]) -> None:
        self.pages = pages
        self.ids = ids
        self.served = 0

    def iter_pages(self, entity_set: str, select: Any = None, **options: Any) -> Iterator[Any]:
        if select == ["contactid"]:  # the sweep's id listing
            yield [{"contactid": i} for i in self.ids]
            return
        for page in self.pages:
            self.served += 1
            yield page


def _row(minute: int) -> dict[str, Any]:
    return {
        "contactid": str(uuid.uuid4()),
        "modifiedon": f"2027-03-15T09:{minute:02d}:00Z",
        "@odata.etag": f'W/"{minute}"',
    }


def test_changes_come_a_page_at_a_time_with_the_token_last() -> None:
    pages = [[_row(1), _row(2)], [_row(3)], [_row(4), _row(5)]]
    kept = str(uuid.uuid4())
    gone = str(uuid.uuid4())
    client = PagedClient(pages, [kept] + [r["contactid"] for p in pages for r in p])
    reader = WatermarkReader(client, "contacts", "contactid", sweep_every=1)
    state = WatermarkState(since=None, ids={kept, gone})
    read = reader.changes(state, dict)
    first = next(read)
    # handed on once the next page came (so it is known not to be the last), before the third
    assert (client.served, first.token, first.last) == (2, None, False)
    assert [u.id for u in first.changes] == [r["contactid"] for r in pages[0]]
    rest = list(read)
    assert [p.last for p in rest] == [False, True] and rest[0].token is None
    assert [type(c) for c in rest[-1].changes] == [Upsert, Upsert, Deleted]
    assert rest[-1].changes[-1] == Deleted(gone)
    token = rest[-1].token
    assert token and WatermarkState.decode(token).ids == set(client.ids)


@pytest.mark.parametrize(
    ("stored", "every"),
    [(None, DEFAULT_SWEEP_EVERY), (3, 3), ("25", 25), (0, DEFAULT_SWEEP_EVERY),
     (-4, DEFAULT_SWEEP_EVERY), ("often", DEFAULT_SWEEP_EVERY), (True, DEFAULT_SWEEP_EVERY),
     (10**9, DEFAULT_SWEEP_EVERY)],
)  # fmt: skip
def test_the_sweep_interval_setting(stored: Any, every: int) -> None:
    assert sweep_every_setting(stored) == every


def test_the_app_builds_its_crm_side_with_the_profiles_sweep_interval(tmp_path: Any) -> None:
    """sync/connect.py: `watermark_sweep_every` from the profile, and the local database as the
    keeper of table definitions."""
    from sync.connect import ProfileConnector
    from sync.setup.profile import Profile
    from sync.store.cache import SettingsCache
    from sync.store.db import open_database

    database = open_database(tmp_path / "data")
    try:
        profile = Profile(database, tmp_path / "data")
        profile.set(SWEEP_SETTING, 4)

        class Provider:
            def token_callable(self, scopes: Any, upn: Any) -> Any:
                return lambda: "token"

        connector = ProfileConnector(profile, lambda: None)
        side, client = connector._crm_side(
            "https://org.example/",
            "https://org.example/api/data/v9.2/",
            "me",
            Provider(),  # type: ignore[arg-type]
        )
        try:
            assert isinstance(side, DataverseSide)
            assert side.sweep_every == 4
            assert isinstance(side.metadata_store, SettingsCache)
        finally:
            client.close()
        profile.set(SWEEP_SETTING, "not a number")
        side, client = connector._crm_side(
            "https://org.example/",
            "https://org.example/api/data/v9.2/",
            "me",
            Provider(),  # type: ignore[arg-type]
        )
        client.close()
        assert isinstance(side, DataverseSide) and side.sweep_every == DEFAULT_SWEEP_EVERY
    finally:
        database.dispose()
