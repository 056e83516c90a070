"""The reliability matrix (`pytest -m matrix`): every test in this folder carries the mark.
`MATRIX_LONG=1` (`make matrix-long`) runs the long sizes."""

from __future__ import annotations

import os

import pytest

LONG = os.environ.get("MATRIX_LONG") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "reliability/matrix" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.matrix)
