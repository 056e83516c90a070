"""The command line as a user runs it: serve, sync --once, status --json, sandbox --json."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, csrf_token_from, stop_process


def _spawn(*args: str, data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _read_until(process: subprocess.Popen[str], pattern: str, timeout: float = 60) -> re.Match[str]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(seen)}")


@pytest.fixture
def served(data_dir: Path) -> Iterator[str]:
    """`run.py serve --port 0`, as the README's run command starts it; yields the sign-in link."""
    process = _spawn("serve", "--port", "0", data_dir=data_dir)
    try:
        yield _read_until(process, r"Open (http://127\.0\.0\.1:\d+/login\?token=\S+)").group(1)
    finally:
        stop_process(process)


def test_serve_binds_loopback_and_sync_now_records_a_run(served: str, data_dir: Path) -> None:
    base = served.split("/login")[0]
    with httpx.Client(base_url=base, follow_redirects=True, timeout=10) as browser:
        assert browser.get("/").url.path == "/welcome"  # no link, no page
        page = browser.get(served)  # a new user lands on the setup wizard …
        assert page.status_code == 200 and "/setup/" in str(page.url)
        page = browser.get("/?setup=later")  # … and may look at the dashboard first
        assert page.status_code == 200 and 'data-testid="finish-setup"' in page.text
        before = _finished_runs(data_dir)
        token = csrf_token_from(page.text)
        response = browser.post("/sync-now", headers={"X-CSRFToken": token, "HX-Request": "true"})
        assert response.status_code == 200
        deadline = time.monotonic() + 30
        while _finished_runs(data_dir) <= before:
            assert time.monotonic() < deadline, "Sync now recorded no run"
            time.sleep(0.2)
    status = _status(data_dir)
    assert status["runs"][0]["job"] == "messaging"


def _status(data_dir: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "status", "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def _finished_runs(data_dir: Path) -> int:
    return sum(
        1 for run in _status(data_dir)["runs"] if run["job"] == "messaging" and run["finished_at"]
    )


def test_a_second_server_on_the_same_data_dir_refuses_to_start(served: str, data_dir: Path) -> None:
    second = _spawn("serve", "--port", "0", "--no-sandbox", data_dir=data_dir)
    try:
        _read_until(second, r"already running")
        assert second.wait(timeout=20) != 0
    finally:
        if second.poll() is None:
            stop_process(second)


def test_sync_once_records_a_run_and_status_reports_it(data_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "sync", "--once", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Run 1: \w+", result.stdout)
    status = _status(data_dir)
    assert [r["trigger"] for r in status["runs"]] == ["cli"]


def test_sync_once_refuses_an_unknown_kind(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import run

    code = run.main(["sync", "--once", "--kind", "notes", "--data-dir", str(data_dir)])
    assert code == 2
    assert (
        "Unknown kind: notes. Kinds: contacts, appointments, tasks, email, outgoing."
        in capsys.readouterr().err
    )


def test_sandbox_json_prints_urls_and_credentials_that_work_with_curl(data_dir: Path) -> None:
    process = _spawn("sandbox", "--json", data_dir=data_dir)
    try:
        info = json.loads(_read_until(process, r"^\{.*\}$").group(0))
        org = info["organizations"][0]
        user = next(u for u in info["users"] if org["unique_name"] in u["organizations"])
        whoami = subprocess.run(
            [
                "curl",
                "-sS",
                "-f",
                "-H",
                f"Authorization: Bearer {user['token']}",
                org["api_url"] + "WhoAmI",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(whoami.stdout)["UserId"]
        discovery = subprocess.run(
            [
                "curl",
                "-sS",
                "-f",
                "-H",
                f"Authorization: Bearer {user['token']}",
                info["discovery_url"],
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        names = {i["UniqueName"] for i in json.loads(discovery.stdout)["value"]}
        assert set(user["organizations"]) == names
        denied = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", org["api_url"] + "WhoAmI"],
            capture_output=True,
            text=True,
        )
        assert denied.stdout == "401"
        soap = (
            '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
            'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
            '<t:RequestServerVersion Version="Exchange2016"/></s:Header><s:Body><m:GetFolder>'
            "<m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:FolderIds>"
            '<t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder></s:Body></s:Envelope>'
        )
        ews = subprocess.run(
            [
                "curl",
                "-sS",
                "-f",
                "--cacert",
                info["ews_ca_file"],
                "-u",
                f"{user['upn']}:{user['password']}",
                "-H",
                "Content-Type: text/xml; charset=utf-8",
                "--data-binary",
                soap,
                info["ews_url"],
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "NoError" in ews.stdout and "ServerVersionInfo" in ews.stdout
    finally:
        stop_process(process)
