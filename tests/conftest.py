"""Fixtures shared by every test folder: a data dir, an app on it, a signed-in client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import ROOT, csrf_token_from, signed_in  # noqa: F401 (re-exported)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def app(data_dir: Path) -> Iterator[Flask]:
    from webapp import create_app

    app = create_app(
        {"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token", "SETUP_REDIRECT": False}
    )
    yield app
    app.extensions["mailbox_sync.database"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client that has opened the one-time sign-in link."""
    return signed_in(app)
