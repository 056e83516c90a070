"""Browser tests: Playwright for Python driving Debian's Chromium (never a downloaded browser).

`make test` installs the `chromium` package when it is missing (tests/tools/system_deps.sh).
Each test gets the real app (`run.py serve` in a subprocess, its own data dir, a free port) and
saves a screenshot of every page it looks at under `test-artifacts/screenshots/`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Debian's chromium is missing: run `bash tests/tools/system_deps.sh`.")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True
        )
        yield browser
        browser.close()


@dataclass
class LiveApp:
    """A `run.py serve` process: its sign-in link, base URL and everything it printed."""

    process: subprocess.Popen[str]
    data_dir: Path
    link: str
    base_url: str
    output: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_app(data_dir: Path, *extra: str, timeout: float = 90) -> LiveApp:
    """Start the server on a free port and wait for its one-time sign-in link."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "serve", "--data-dir", str(data_dir),
         "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output.append(line)
        match = re.search(r"Open (http://127\.0\.0\.1:\d+)(/login\?token=\S+)", line)
        if match:
            return LiveApp(process, data_dir, match.group(1) + match.group(2), match.group(1), output)
    process.kill()
    raise AssertionError("the server printed no sign-in link:\n" + "".join(output))


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[LiveApp]:
    app = start_app(tmp_path / "data", *os.environ.get("LIVE_APP_ARGS", "").split())
    yield app
    app.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-US", viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as test-artifacts/screenshots/<name>.png (kept for humans to look at)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
