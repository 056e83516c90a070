"""Helpers shared by test folders (imported as `tests.helpers`: every folder has a conftest.py,
so `from conftest import …` would pick whichever conftest was imported first)."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "page has no CSRF meta tag"
    return match.group(1)


LOGIN_TOKEN = "test-login-token"
"""The one-time sign-in token the tests' apps are created with (config LOGIN_TOKEN)."""


def signed_in(app: Any) -> Any:
    """A test client of the Flask `app` that has opened the one-time sign-in link."""
    client = app.test_client()
    assert client.get(f"/login?token={LOGIN_TOKEN}").status_code == 302
    return client


def page_text(response: Any) -> str:
    """A response's HTML with each run of white space as one space, for `in` checks on phrases."""
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def stop_process(process: subprocess.Popen[str]) -> None:
    """SIGTERM (a server shuts down cleanly), then SIGKILL after 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def load_bench(file_name: str, module_name: str) -> Any:
    """A script of bench/ loaded as module `module_name` (bench/ is no package; registered in
    sys.modules, as dataclasses look their module up)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(module_name, ROOT / "bench" / file_name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
