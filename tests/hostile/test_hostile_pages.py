"""Hostile names never reach a page unescaped (issue 13, point 4): a conflict's record title
and values, an alert's title and message (as the engine raises them, with the record's name
inside) and a message's subject, sender and Regarding on the Mail page carry generated text
(RTL, emoji, control-free unicode) around HTML and script; the dashboard, Alerts, Conflicts and
Mail pages render with status 200, hold the escaped markup and never the raw tags."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mail.facade import MessageRow, RecordRef
from sync.runs import raise_alert
from sync.store.db import Database
from sync.store.models import ConflictRecord
from tests.helpers import signed_in
from tests.mail.fake_facade import FakeMailFacade, complete_setup, mail_app

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
RAW = ("<script>alert(1)", "<img src=x onerror")
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PIECES = ["שלום", "مرحبا", "\u202e", "\u200f", "👩‍💻", "🇯🇵", "&amp;", "\"'", "{{ 7*7 }}"]
TEXT = st.lists(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)  # no surrogates
    | st.sampled_from(PIECES),
    max_size=5,
).map("".join)


@pytest.fixture(scope="module")
def facade() -> FakeMailFacade:
    return FakeMailFacade()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, facade: FakeMailFacade) -> Iterator[Flask]:
    data_dir = tmp_path_factory.mktemp("hostile-pages")
    app = mail_app(data_dir, facade)
    complete_setup(app.extensions["mailbox_sync.database"], Path(data_dir))
    yield app
    app.extensions["mailbox_sync.database"].dispose()


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return signed_in(app)  # the sign-in link works once


def hostile(text: str) -> str:
    return f"{text}{SCRIPT}{IMG}{text}"


def store(database: Database, name: str, n: int) -> None:
    with database.session() as session:
        session.add(
            ConflictRecord(
                org="o", kind="contacts", crm_id=f"c{n}", mailbox_id=f"m{n}", title=name,
                field="jobtitle", crm_value=name, mailbox_value=SCRIPT, winner="crm",
                reason="policy",
            )
        )  # fmt: skip
    raise_alert(database, "item-failed", f"An item keeps failing ({name})", name, name,
                severity="error", subject=f"contacts:{n}")  # fmt: skip


def check(html: str, page: str) -> None:
    for raw in RAW:
        assert raw not in html, f"{page}: raw {raw!r} on the page"


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=TEXT)
def test_hostile_names_are_escaped_on_every_page(
    app: Flask, client: FlaskClient, facade: FakeMailFacade, text: str
) -> None:
    name = hostile(text)
    database = app.extensions["mailbox_sync.database"]
    n = len(facade.messages)
    store(database, name, n)
    facade.messages.append(
        MessageRow(
            id=f"hostile-{n}", folder="inbox", subject=name, sender=f"{name} <x@y.example>",
            received="2026-12-04T10:00:00Z", tracked=True, crm_email_id=f"e{n}",
            regarding=RecordRef("contacts", f"r{n}", name),
        )
    )  # fmt: skip
    for page in ("/", "/alerts", "/conflicts", "/mail"):
        answer = client.get(page)
        assert answer.status_code == 200, page
        html = answer.get_data(as_text=True)
        check(html, page)
        if page in ("/conflicts", "/mail", "/alerts"):
            assert ESCAPED in html, f"{page}: the name is not shown (escaped)"
