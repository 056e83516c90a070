"""Messages stored as ids with parameters, translated at render; one date-time format per
language; the port placeholders agree with the encryption shown (issue 11 points 10, 11)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from sync.messages import N_, NP_, from_json, joined, kind_word, render, to_json
from sync.runs import RunRecorder, open_alerts, raise_alert, recent_runs
from sync.service import MESSAGING
from tests.helpers import signed_in
from tests.web.test_i18n_crawl import ja_app  # noqa: F401
from tests.web.test_wizard import (  # noqa: F401
    ALICE,
    Wizard,
    web,
    wizard,
    wizard_app,
    world,
)
from webapp.i18n import DATE_TIME, translate, when


def test_a_message_goes_to_json_and_back_with_its_parameters() -> None:
    problems = joined(
        [
            N_("%(what)s: %(problem)s", what=kind_word("tasks"), problem=N_("sign-in required")),
            N_("%(what)s: %(problem)s", what=kind_word("contacts"), problem="サーバーの言葉"),
            NP_("%(num)d change", "%(num)d changes", 1),
        ]
    )
    assert render(problems) == "tasks: sign-in required; contacts: サーバーの言葉; 1 change"
    stored = to_json(problems)
    assert stored is not None and stored["joined"] is True
    again = from_json(stored)
    assert again is not None and render(again) == render(problems)
    assert str(NP_("%(num)d change", "%(num)d changes", 227)) == "227 changes"
    assert from_json({"no": "id"}) is None and from_json("plain text") is None


def test_alerts_and_runs_keep_english_and_the_ids(ja_app: Flask) -> None:  # noqa: F811
    database = ja_app.extensions["mailbox_sync.database"]
    raise_alert(
        database,
        "item-failed",
        N_("An item keeps failing to sync (%(kind)s)", kind=kind_word("contacts")),
        N_("%(error)s (after %(num)s attempts; it is retried with backoff)", error="x", num=5),
    )
    (alert,) = open_alerts(database)
    assert alert.title == "An item keeps failing to sync (contacts)"
    assert alert.texts["title"]["params"]["kind"] == {"msg": {"id": "contacts"}}
    assert "action" not in alert.texts  # given as plain text: shown as it is
    raise_alert(database, "item-failed", "plain", "text")  # bumped with plain text: no ids left
    (alert,) = open_alerts(database)
    assert alert.count == 2 and alert.texts is None and alert.title == "plain"

    recorder = RunRecorder(database, MESSAGING, "now")
    recorder.finish("ok", NP_("%(num)d change", "%(num)d changes", 3))
    (run,) = recent_runs(database, limit=1)
    assert run.message == "3 changes"
    assert run.message_msg == {
        "id": "%(num)d change",
        "params": {"num": 3},
        "plural": "%(num)d changes",
    }


def test_an_old_plain_alert_is_shown_as_it_was(ja_app: Flask) -> None:  # noqa: F811
    database = ja_app.extensions["mailbox_sync.database"]
    raise_alert(database, "legacy", "Old title in English", "Old words", "Old action")
    html = signed_in(ja_app).get("/alerts?lang=ja").get_data(as_text=True)
    assert "Old title in English" in html and "Old words" in html and "Old action" in html


def test_plural_forms_follow_the_count(ja_app: Flask) -> None:  # noqa: F811
    with ja_app.test_request_context("/?lang=en"):
        assert translate(NP_("%(num)d change", "%(num)d changes", 1)) == "1 change"
        assert translate(NP_("%(num)d change", "%(num)d changes", 2)) == "2 changes"
        # a catalog mistake (a parameter the id does not have) shows the English, not a 500
        assert translate(N_("%(missing)s text")) == "%(missing)s text"


def test_one_date_time_format_per_language(ja_app: Flask) -> None:  # noqa: F811
    moment = datetime(2026, 12, 4, 14, 5)  # stored naive UTC
    with ja_app.test_request_context("/?lang=en&tz=UTC"):
        assert when(moment) == "4 Dec 2026, 14:05"
        assert when(None) == ""
    with ja_app.test_request_context("/?lang=ja&tz=UTC"):
        assert when(moment) == "2026/12/04 14:05"
    with ja_app.test_request_context("/?lang=ja&tz=Asia/Tokyo"):
        assert when(moment) == "2026/12/04 23:05"  # shown in the reader's zone
    assert set(DATE_TIME) == {"en", "ja"}


def test_every_template_shows_date_times_through_the_one_filter() -> None:
    from tests.helpers import ROOT

    # a clock time alone (a chart's axis: timeformat('HH:mm')) is the same in both languages
    ad_hoc = re.compile(r"\|\s*(datetimeformat|dateformat)\b|timeformat\((?!'HH:mm'\))|strftime\(")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "templates").rglob("*.html"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if ad_hoc.search(line) and "lines %}" not in line  # the raw log keeps its seconds
    ]
    assert found == []


def _port_field(html: str, name: str) -> tuple[str, str]:
    """(placeholder of the port field, the encryption option selected) for `name`."""
    placeholder = re.search(rf'name="{name}_port"[^>]*placeholder="(\d+)"', html, re.S)
    select = re.search(rf'name="{name}_security".*?</select>', html, re.S)
    assert placeholder and select, name
    chosen = re.search(r'value="(\w+)"\s+selected', select.group(0))
    assert chosen, name
    return placeholder.group(1), chosen.group(1)


def test_the_port_placeholders_agree_with_the_encryption_shown(wizard: Wizard) -> None:  # noqa: F811
    """The server's defaults (sync.setup.mailbox): POP3 995 with SSL/TLS, SMTP 587 with
    STARTTLS; the form showed SSL/TLS for SMTP beside 587."""
    wizard.organization()
    html = wizard.post("/setup/mailbox/check", {"type": "pop3", "email": ALICE}).get_data(
        as_text=True
    )
    assert _port_field(html, "pop3") == ("995", "ssl")
    assert _port_field(html, "smtp") == ("587", "starttls")


def test_the_japanese_reversed_wording(ja_app: Flask) -> None:  # noqa: F811
    """The Japanese for "reversed" is もう一方の値に切り替え済み (the other value taken), never
    取り消し済み (cancelled)."""
    from tests.web.test_i18n_crawl import _seed_alerts_and_conflicts

    _seed_alerts_and_conflicts(ja_app.extensions["mailbox_sync.database"])
    client: FlaskClient = signed_in(ja_app)
    html = client.get("/conflicts?lang=ja").get_data(as_text=True)
    assert "もう一方の値に切り替え済み" in html and "取り消し" not in html


def test_status_json_keeps_english_and_adds_the_message_ids(data_dir: Path) -> None:
    import subprocess
    import sys

    from sync.store.db import open_database
    from tests.helpers import ROOT

    database = open_database(data_dir)
    try:
        RunRecorder(database, MESSAGING, "now").finish("ok", N_("Nothing changed."))
        raise_alert(database, "auth-failed", N_("Sign-in refused"), "refused", "")
    finally:
        database.dispose()
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "status", "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status = json.loads(done.stdout)
    (run,) = status["runs"]
    assert run["message"] == "Nothing changed."
    assert run["message_id"] == {"id": "Nothing changed."}
    (alert,) = status["alerts"]
    assert alert["title"] == "Sign-in refused" and alert["message"] == "refused"
    assert alert["message_ids"] == {"title": {"id": "Sign-in refused"}}


def test_migration_0005_adds_and_removes_the_columns(data_dir: Path) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from sync.store.db import alembic_config, open_database

    database = open_database(data_dir)  # at head
    try:

        def columns(table: str) -> set[str]:
            return {c["name"] for c in inspect(database.engine).get_columns(table)}

        assert {"message_msg", "progress"} <= columns("runs") and "texts" in columns("alerts")
        command.downgrade(alembic_config(database.engine), "0004")
        assert not {"message_msg", "progress"} & columns("runs")
        assert "texts" not in columns("alerts")
        command.upgrade(alembic_config(database.engine), "0005")
        assert "progress" in columns("runs")
    finally:
        database.dispose()
