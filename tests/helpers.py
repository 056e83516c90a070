"""Helpers shared by test folders (imported as `tests.helpers`: every folder has a conftest.py,
so `from conftest import …` would pick whichever conftest was imported first)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "page has no CSRF meta tag"
    return match.group(1)
