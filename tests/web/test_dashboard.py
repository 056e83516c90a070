"""The dashboard: sign-in link, runs shown, Sync now records a run; CSRF and Host checks."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from sync.runs import recent_runs
from tests.helpers import ROOT, csrf_token_from


def test_pages_need_the_sign_in_link(app: Flask) -> None:
    anonymous = app.test_client()
    response = anonymous.get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/welcome")
    assert b"one-time" in anonymous.get("/welcome").data
    assert anonymous.get("/login?token=wrong").status_code == 403


def test_sign_in_link_works_once(app: Flask) -> None:
    first = app.test_client()
    assert first.get("/login?token=test-login-token").status_code == 302
    assert first.get("/").status_code == 200
    second = app.test_client()
    assert second.get("/login?token=test-login-token").status_code == 403
    assert second.get("/").status_code == 302


def test_sync_now_records_a_run(app: Flask, client: FlaskClient) -> None:
    page = client.get("/")
    assert b"Sync now" in page.data and b"No run yet" in page.data
    token = csrf_token_from(page.get_data(as_text=True))
    response = client.post("/sync-now", headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert response.status_code == 200
    database = app.extensions["mailbox_sync.database"]
    deadline = time.monotonic() + 10
    while not [r for r in recent_runs(database) if r.finished_at]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (run,) = recent_runs(database)
    assert run.trigger == "now" and run.job == "messaging"
    fragment = client.get("/runs", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert f'data-run-id="{run.id}"' in fragment and run.outcome in fragment


def test_post_without_csrf_token_is_refused(client: FlaskClient) -> None:
    response = client.post("/sync-now")
    assert response.status_code == 400
    assert b"expired" in response.data


def test_foreign_host_header_is_refused(client: FlaskClient) -> None:
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200


def test_secret_key_is_private_to_the_user(app: Flask, data_dir: Path) -> None:
    mode = os.stat(data_dir / "secret_key").st_mode & 0o777
    assert mode == 0o600
    assert app.config["SECRET_KEY"] == (data_dir / "secret_key").read_text().strip()


def test_vendored_htmx_is_the_pinned_release(client: FlaskClient) -> None:
    path = ROOT / "static" / "vendor" / "htmx-2.0.11.min.js"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
    assert digest in (ROOT / "static" / "vendor" / "README.md").read_text()
    assert client.get("/static/vendor/htmx-2.0.11.min.js").status_code == 200
