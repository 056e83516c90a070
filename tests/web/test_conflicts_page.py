"""The Conflicts page in people's words (issue 11, point 9; point 10 for its Japanese).

A conflict names the record as the user knows it (a contact's full name), the field by its
label, why the value was kept in sentences (never the engine's "policy"), plural forms right;
the navigation counts the conflicts that are new since the page was last opened.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sync.conflicts import explain, reverse_conflict
from sync.engine.plan import relink_reason
from sync.kinds import CONTACTS
from sync.setup.messages import Msg
from sync.sides import Upsert
from sync.store.models import ConflictRecord


def _database(app: Flask):
    return app.extensions["mailbox_sync.database"]


def _conflict(app: Flask, reason: str = "policy", field: str = "jobtitle") -> int:
    with _database(app).session() as session:
        row = ConflictRecord(
            org="o", kind="contacts", crm_id="c1", mailbox_id="m1",
            title=CONTACTS.title({"firstname": "Ada", "lastname": "Lovelace"}), field=field,
            crm_value="Engineer", mailbox_value="Countess", winner="crm", reason=reason,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def test_a_contact_is_named_by_its_full_name() -> None:
    assert CONTACTS.title({"firstname": "Ada", "middlename": "King", "lastname": "Lovelace"}) == (
        "Ada King Lovelace"
    )
    assert CONTACTS.title({"emailaddress1": "ada@example.com"}) == "ada@example.com"


@pytest.mark.parametrize("newer", [True, False])
def test_every_reason_the_engine_writes_is_explained_in_words(newer: bool) -> None:
    crm = Upsert("c1", "1", {"modifiedon": "2026-12-01T10:00:00Z"})
    later = "2026-12-02T10:00:00Z" if newer else "2026-11-30T10:00:00Z"
    item = Upsert("m1", "k", {"modified": later})
    for reason in ("policy", "direction", relink_reason("policy", crm, item)):
        for winner in ("crm", "mailbox"):
            lines = explain(reason, winner)
            raw = [m.text for m in lines if not m.text[0].isupper()]
            assert lines and raw == [], (reason, raw)
            reversed_ = explain(f"reversed by the user (was: {reason})", winner)
            assert reversed_[0].text.startswith("You chose") and len(reversed_) > 2
    relinked = explain(relink_reason("direction", crm, item), "crm")
    when = next(m for m in relinked if "changed last" in m.text)
    assert when.params["mailbox"].startswith("2026-12-02" if newer else "2026-11-30")
    assert explain("something new", "crm") == [Msg("something new")]


def test_the_page_in_words_and_the_navigation_count(app: Flask, client: FlaskClient) -> None:
    first = _conflict(app)
    dashboard = client.get("/").get_data(as_text=True)
    assert re.search(r'data-testid="nav-conflicts-new"[^>]*>1<', dashboard)
    page = client.get("/conflicts").get_data(as_text=True)
    assert f'data-testid="conflict-{first}-title">Ada Lovelace<' in page
    assert re.search(rf'data-testid="conflict-{first}-field">Job title<', page)
    assert "CRM wins by policy" in page and ">policy<" not in page
    assert f'data-testid="conflict-{first}-new"' in page
    assert "1 conflict recorded." in page
    # opened: nothing is new any more, in the navigation or on the page
    again = client.get("/conflicts").get_data(as_text=True)
    assert 'data-testid="nav-conflicts-new"' not in again
    assert f'data-testid="conflict-{first}-new"' not in again
    second = _conflict(app, "direction", "telephone1")
    page = client.get("/conflicts").get_data(as_text=True)
    assert "2 conflicts recorded." in page and "Business phone" in page
    assert f'data-testid="conflict-{second}-new"' in page
    assert f'data-testid="conflict-{first}-new"' not in page


def test_a_reversal_reads_in_japanese(app: Flask, client: FlaskClient) -> None:
    conflict_id = _conflict(app)
    reverse_conflict(_database(app), conflict_id, lambda _record: None)
    page = client.get("/conflicts?lang=ja").get_data(as_text=True)
    assert "reversed by the user" not in page and "policy" not in page
    assert "役職" in page  # Job title
    assert "あなたが" in page  # "You chose …"
