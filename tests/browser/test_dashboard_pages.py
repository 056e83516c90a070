"""Issue 11 points 6 to 8 in Chromium: the dashboard (progress bar and heading agreeing, every
kind's progress, collapsed quiet runs, the chart's scales and legend, the mailbox workloads),
"Finish setup" before setup is done, and the Log page with its raw log one click away; in English
and Japanese, under the Content-Security-Policy, with a screenshot of each.

The app runs in this process (werkzeug on 127.0.0.1, a free port) over a seeded data dir.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import ARTIFACTS, arrive
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from werkzeug.serving import make_server

from sync.messages import N_
from sync.runs import RunRecorder, raise_alert
from sync.store.models import Run, Setting
from tests.helpers import LOGIN_TOKEN
from tests.mail.fake_facade import complete_setup

CHANGES = {
    "contacts": {"mailbox": {"created": 12, "updated": 3}, "crm": {"updated": 2}},
    "tasks": {"mailbox": {"updated": 4}, "crm": {}, "errors": 1},
}

QUIET = {kind: {"crm": {}, "mailbox": {}} for kind in ("contacts", "appointments", "tasks")}


def _serve(data_dir: Path, seed: bool) -> Iterator[str]:
    from webapp import create_app

    app = create_app(
        {"DATA_DIR": str(data_dir), "LOGIN_TOKEN": LOGIN_TOKEN, "SETUP_REDIRECT": True}
    )
    database = app.extensions["mailbox_sync.database"]
    if seed:
        RunRecorder(database, "messaging", "now").finish("failed", "not set up")  # hidden
        complete_setup(database, data_dir)
        _seed(database)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        database.dispose()


def _seed(database) -> None:  # type: ignore[no-untyped-def]
    """An hour of runs: changes, quiet ones every few minutes, a failure, one running now."""
    start = datetime.utcnow() - timedelta(minutes=58)

    def run(trigger: str, outcome: str, message, counts=None, minute: int = 0) -> None:  # type: ignore[no-untyped-def]
        recorder = RunRecorder(database, "messaging", trigger)
        for kind in ("contacts", "appointments", "tasks"):
            recorder.progress(0, 0, "done", kind=kind)
        if counts:
            recorder.counts(counts)
        recorder.finish(outcome, message)
        with database.session() as session:
            row = session.get(Run, recorder.run_id)
            assert row is not None
            row.started_at = start + timedelta(minutes=minute)
            row.finished_at = row.started_at + timedelta(seconds=4)

    with database.session() as session:  # setup finished before these runs, not the first
        for row in session.query(Run).all():
            row.started_at = start - timedelta(hours=1)
        setting = session.get(Setting, "choices_saved")
        assert setting is not None
        setting.updated_at = start - timedelta(minutes=30)
    run("cli", "ok", N_("%(num)s changes", num=21), CHANGES, 0)
    for minute in range(2, 30, 3):
        run("schedule", "ok", N_("Nothing changed."), QUIET, minute)
    run("now", "failed", N_("Sign-in refused"), {}, 31)
    for minute in range(34, 55, 3):
        run("schedule", "ok", N_("Nothing changed."), QUIET, minute)
    raise_alert(database, "throttled", N_("Throttled by Dataverse"), "Waited 30 s.", "Nothing.")
    live = RunRecorder(database, "messaging", "schedule")
    for kind in ("contacts", "appointments", "recurringappointments", "tasks"):
        live.progress(0, 0, "waiting", kind=kind)
    live.progress(0, 0, "done", kind="contacts")
    live.progress(5, 20, "apply", kind="appointments")


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "data").mkdir()
    yield from _serve(tmp_path / "data", seed=True)


@pytest.fixture
def fresh_url(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "fresh").mkdir()
    yield from _serve(tmp_path / "fresh", seed=False)


def _page(browser: Browser, locale: str) -> tuple[Page, list[str]]:
    context = browser.new_context(locale=locale, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []

    def message(entry: ConsoleMessage) -> None:
        if "Content Security Policy" in entry.text or "htmx:" in entry.text:
            problems.append(entry.text)

    page.on("console", message)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return page, problems


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, caret="initial")


def test_dashboard_and_log_in_english_and_japanese(browser: Browser, base_url: str) -> None:
    page, problems = _page(browser, "en-US")
    page.goto(f"{base_url}/login?token={LOGIN_TOKEN}")  # one-time: one session for both
    for lang in ("en", "ja"):
        page.goto(f"{base_url}/?lang={lang}")
        bar = page.get_by_test_id("progress-bar")
        expect(bar).to_be_visible()
        percent = bar.get_attribute("data-percent")
        assert percent is not None and 0 < int(percent) < 100
        expect(page.get_by_test_id("progress-heading")).to_contain_text(f"{percent} %")
        assert page.locator("[data-testid=progress-bar] progress").get_attribute("value") == percent
        for kind in ("contacts", "appointments", "tasks"):
            expect(page.get_by_test_id(f"progress-{kind}")).to_be_visible()
        expect(page.get_by_test_id("quiet-row")).to_have_count(2)
        arrive(page, "chart-legend")
        assert page.get_by_test_id("y-tick").count() >= 3
        assert page.get_by_test_id("x-tick").count() == 5
        arrive(page, "workloads")
        body = page.locator("body").inner_text()
        assert "recurringappointments" not in body
        if lang == "en":
            expect(page.get_by_test_id("progress-heading")).to_contain_text("Appointments: writing")
            expect(page.get_by_test_id("quiet-row").first).to_contain_text("Quiet since")
            expect(page.get_by_test_id("workload-act-state")).to_have_text("Success")
        else:
            expect(page.get_by_test_id("workload-act-state")).to_have_text("成功")
        _shot(page, f"dashboard-{lang}")

        page.goto(f"{base_url}/log?lang={lang}")
        arrive(page, "log-runs")
        raw = page.get_by_test_id("raw-log")
        expect(
            page.get_by_test_id("log-lines").or_(page.get_by_test_id("log-empty"))
        ).to_be_hidden()
        if lang == "en":
            expect(page.get_by_test_id("log-run").last).to_contain_text("Contacts: 12 created")
        _shot(page, f"log-{lang}")
        raw.locator("summary").click()  # one click to the raw log
        expect(
            page.get_by_test_id("log-lines").or_(page.get_by_test_id("log-empty"))
        ).to_be_visible()
        _shot(page, f"log-raw-{lang}")
    assert problems == [], problems
    page.context.close()


def test_a_link_in_the_polled_status_is_not_replaced_while_nothing_changes(
    browser: Browser, base_url: str
) -> None:
    """A run is on, so the status is polled every second; while its picture does not change,
    each poll is answered 204 and the status (its links too) stays the same element: a click
    on a link is never split between an old link and its new copy."""
    page, problems = _page(browser, "en-US")
    page.goto(f"{base_url}/login?token={LOGIN_TOKEN}")
    page.goto(f"{base_url}/")
    arrive(page, "progress-bar")
    page.evaluate("() => { document.getElementById('status').dataset.kept = '1' }")
    polls: list[int] = []
    page.on("response", lambda r: polls.append(r.status) if "/status?seen=" in r.url else None)
    for _ in range(100):
        if len(polls) >= 3:
            break
        page.wait_for_timeout(100)
    assert polls[:3] == [204, 204, 204], polls
    assert page.evaluate("() => document.getElementById('status').dataset.kept") == "1"
    assert problems == [], problems
    page.context.close()


def test_finish_setup_before_the_setup_is_done(browser: Browser, fresh_url: str) -> None:
    page, problems = _page(browser, "en-US")
    page.goto(f"{fresh_url}/login?token={LOGIN_TOKEN}")
    page.goto(f"{fresh_url}/?setup=later")
    link = page.get_by_test_id("finish-setup-link")
    expect(link).to_be_visible()
    expect(page.get_by_test_id("workloads")).to_have_count(0)
    _shot(page, "dashboard-finish-setup")
    link.click()
    page.wait_for_url("**/setup/**")
    assert problems == [], problems
    page.context.close()
