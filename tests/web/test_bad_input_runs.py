"""A run whose process was killed mid-way (issue 14, point 4): once start-up has ended it as
"interrupted", the dashboard shows it finished and stops polling every second."""

from __future__ import annotations

import socket
import subprocess
import sys

from flask import Flask
from flask.testing import FlaskClient

from sync.runs import close_interrupted_runs
from sync.store.models import Run


def test_the_dashboard_stops_polling_once_a_killed_run_is_ended(
    app: Flask, client: FlaskClient
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    database = app.extensions["mailbox_sync.database"]
    with database.session() as session:
        session.add(
            Run(
                job="messaging",
                trigger="now",
                outcome="running",
                counts={},
                progress_done=40,
                progress_total=160,
                phase="contacts",
                pid=child.pid,
                host=socket.gethostname(),
            )
        )
    fragment = client.get("/status", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in fragment and 'data-testid="progress"' in fragment

    assert len(close_interrupted_runs(database)) == 1
    fragment = client.get("/status", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 10s"' in fragment and 'data-running="no"' in fragment
    assert 'data-testid="progress"' not in fragment
    assert 'class="run interrupted"' in fragment and "Interrupted: its process" in fragment
