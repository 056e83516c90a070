"""The dashboard's content: per-kind counts, live progress, history chart, alerts, conflicts."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from sync.conflicts import ReverseError
from sync.runs import RunRecorder, open_alerts, raise_alert
from sync.store.models import ConflictRecord
from tests.helpers import csrf_token_from

COUNTS = {
    "contacts": {"mailbox": {"created": 12, "updated": 3}, "crm": {"updated": 2}, "conflicts": 1},
    "tasks": {"mailbox": {"deleted": 4}, "crm": {}, "errors": 2},
}


def _database(app: Flask):
    return app.extensions["mailbox_sync.database"]


def test_kind_cards_show_counts_each_way(app: Flask, client: FlaskClient) -> None:
    recorder = RunRecorder(_database(app), "messaging", "schedule")
    recorder.counts(COUNTS)
    recorder.finish("ok")
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'data-testid="count-contacts-mailbox-created">12<', html)
    assert re.search(r'data-testid="count-contacts-crm-updated">2<', html)
    assert re.search(r'data-testid="count-tasks-mailbox-deleted">4<', html)
    assert "2 items failed" in html
    assert 'data-testid="kind-appointments"' in html and "1 conflicts" in html
    # the chart has one bar for the run, labelled with its 21 changes
    assert re.search(r"<rect class=\"ok\"[^>]*><title>#\d+ ok: 21 changes", html)


def test_progress_is_shown_live_while_a_run_is_on(app: Flask, client: FlaskClient) -> None:
    recorder = RunRecorder(_database(app), "messaging", "now")
    recorder.progress(40, 160, phase="contacts")
    fragment = client.get("/status", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in fragment
    assert 'aria-valuenow="40"' in fragment and "40 / 160" in fragment
    # a run without the per-kind model (older callers): the step's counts, heading in percent
    assert 'value="25"' in fragment and "Sync in progress: 25 % — contacts" in fragment
    recorder.finish("ok")
    fragment = client.get("/status").get_data(as_text=True)
    assert 'data-testid="progress"' not in fragment and 'hx-trigger="every 10s"' in fragment


def test_a_poll_that_finds_the_status_unchanged_swaps_nothing(
    app: Flask, client: FlaskClient
) -> None:
    """The poller sends the fingerprint of what it shows; unchanged, the answer is 204 (htmx
    swaps nothing, so a link in the status is never replaced under the user's click)."""
    HX = {"HX-Request": "true"}
    recorder = RunRecorder(_database(app), "messaging", "now")
    recorder.progress(40, 160, phase="contacts")
    first = client.get("/status", headers=HX).get_data(as_text=True)
    seen = re.search(r'hx-get="/status\?seen=([0-9a-f]{16})"', first)
    assert seen, first[:300]
    again = client.get(f"/status?seen={seen[1]}", headers=HX)
    assert again.status_code == 204 and again.get_data() == b""
    recorder.progress(80, 160, phase="contacts")  # the run goes on: a new picture
    moved = client.get(f"/status?seen={seen[1]}", headers=HX)
    assert moved.status_code == 200 and 'aria-valuenow="80"' in moved.get_data(as_text=True)
    assert client.get(f"/status?seen={seen[1]}").status_code == 200  # a plain GET: the page


def test_banner_when_this_computer_does_not_sync(app: Flask, client: FlaskClient) -> None:
    from sync.settings import set_setting

    assert 'data-testid="messaging-disabled"' not in client.get("/").get_data(as_text=True)
    set_setting(_database(app), "messaging_enabled", False)
    set_setting(
        _database(app), "messaging_disabled_reason", "LAPTOP-7 is the synchronizing computer."
    )
    html = client.get("/").get_data(as_text=True)
    assert 'data-testid="messaging-disabled"' in html and "LAPTOP-7 is the" in html


def test_alerts_listed_with_action_and_dismissed(app: Flask, client: FlaskClient) -> None:
    raise_alert(_database(app), "throttled", "Throttled by Dataverse", "Waited 30 s.", "Nothing.")
    page = client.get("/alerts").get_data(as_text=True)
    assert 'data-testid="alert-throttled"' in page and "What to do: Nothing." in page
    (alert,) = open_alerts(_database(app))
    assert client.post(f"/alerts/{alert.id}/dismiss").status_code == 400  # no CSRF token
    token = csrf_token_from(page)
    response = client.post(f"/alerts/{alert.id}/dismiss", data={"csrf_token": token})
    assert response.status_code == 302 and open_alerts(_database(app)) == []


def _conflict(app: Flask) -> int:
    with _database(app).session() as session:
        row = ConflictRecord(
            org="o",
            kind="contacts",
            crm_id="c1",
            mailbox_id="m1",
            title="Ada Lovelace",
            field="jobtitle",
            crm_value="Engineer",
            mailbox_value="Countess",
            winner="crm",
            reason="policy: CRM wins",
        )
        session.add(row)
        session.flush()
        return row.id


def test_reverse_a_conflict_writes_the_other_value(app: Flask, client: FlaskClient) -> None:
    conflict_id = _conflict(app)
    written: list[tuple[str, object]] = []
    app.extensions["mailbox_sync.service"].reverser = lambda c: written.append(
        (c.field, c.mailbox_value if c.winner == "crm" else c.crm_value)
    )
    page = client.get("/conflicts").get_data(as_text=True)
    assert f'data-testid="conflict-{conflict_id}-crm">Engineer<' in page
    assert f'data-testid="conflict-{conflict_id}-mailbox">Countess<' in page
    token = csrf_token_from(page)
    response = client.post(f"/conflicts/{conflict_id}/reverse", data={"csrf_token": token})
    assert response.status_code == 302
    assert written == [("jobtitle", "Countess")]
    page = client.get("/conflicts").get_data(as_text=True)
    assert "the mailbox value is kept now" in page
    assert re.search(rf'data-testid="conflict-{conflict_id}-winner">mailbox', page)
    # a second reversal is refused and writes nothing
    client.post(f"/conflicts/{conflict_id}/reverse", data={"csrf_token": token})
    assert written == [("jobtitle", "Countess")]


def test_a_failed_reversal_changes_nothing(app: Flask, client: FlaskClient) -> None:
    conflict_id = _conflict(app)

    def fail(_: ConflictRecord) -> None:
        raise ReverseError("The CRM refused the value.")

    app.extensions["mailbox_sync.service"].reverser = fail
    token = csrf_token_from(client.get("/conflicts").get_data(as_text=True))
    client.post(f"/conflicts/{conflict_id}/reverse", data={"csrf_token": token})
    page = client.get("/conflicts").get_data(as_text=True)
    assert "The CRM refused the value." in page
    assert re.search(rf'data-testid="conflict-{conflict_id}-winner">CRM', page)


def test_an_emptied_side_is_confirmed_once_from_its_alert(app: Flask, client: FlaskClient) -> None:
    from sync.settings import get_setting

    database = _database(app)
    raise_alert(database, "side-emptied", "The mailbox looks empty (contacts)", "…", "Check…")
    page = client.get("/alerts").get_data(as_text=True)
    assert 'data-testid="confirm-emptied"' in page
    (alert,) = open_alerts(database)
    token = csrf_token_from(page)
    client.post(f"/alerts/{alert.id}/confirm-emptied", data={"csrf_token": token})
    assert get_setting(database, "confirm_emptied") is True and open_alerts(database) == []
