"""The browser app: a Flask app factory, one blueprint per feature."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from sync.connect import messaging_service
from sync.store.db import default_data_dir, open_database

csrf = CSRFProtect()

LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
ROOT = Path(__file__).resolve().parent.parent


def load_secret_key(data_dir: Path) -> str:
    """The install's random secret key, made once and kept in the data dir with mode 0600."""
    path = data_dir / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    os.chmod(path, 0o600)
    return path.read_text().strip()


def sandbox_info(app: Flask) -> dict[str, Any] | None:
    """The sandbox this app uses: given by run.py (SANDBOX_INFO), or the one it started."""
    info = app.config.get("SANDBOX_INFO")
    if info:
        return dict(info)
    running = app.extensions.get("mailbox_sync.sandbox")
    return dict(running.describe()) if running is not None else None


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app. It never starts the scheduler: `run.py serve` does, once per process."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    config = dict(test_config or {})
    data_dir = Path(config.pop("DATA_DIR", None) or default_data_dir())
    data_dir.mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(
        DATA_DIR=str(data_dir),
        DATABASE_URL=None,
        SECRET_KEY=load_secret_key(data_dir),
        TRUSTED_HOSTS=LOCAL_HOSTS,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        LOGIN_TOKEN=None,
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.config.from_mapping(config)

    database = open_database(data_dir, app.config["DATABASE_URL"])
    app.extensions["mailbox_sync.database"] = database
    if "mailbox_sync.service" not in app.extensions:
        app.extensions["mailbox_sync.service"] = messaging_service(
            database, data_dir, lambda: sandbox_info(app)
        )
    app.extensions.setdefault("mailbox_sync.scheduler", None)

    csrf.init_app(app)

    from webapp import (
        access,
        alerts,
        conflicts,
        dashboard,
        errors,
        i18n,
        mail,
        settings_page,
        signin,
        wizard,
    )

    i18n.init_app(app)

    app.register_blueprint(access.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(conflicts.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(signin.bp)
    app.register_blueprint(wizard.bp)
    app.register_blueprint(settings_page.bp)
    # the Mail page (issue 8): its facade factory is app.extensions["mail_facade"] (None: off)
    from sync.connect import mail_facade_factory
    from sync.setup.profile import Profile

    app.extensions.setdefault(
        mail.FACADE_KEY, mail_facade_factory(Profile(database, data_dir), lambda: sandbox_info(app))
    )
    app.register_blueprint(mail.bp)
    # --- offline (issue 12): the Offline page ---
    from webapp import offline

    app.register_blueprint(offline.bp)
    # --- end offline ---
    errors.register(app)
    return app
