"""Issue 11, point 11: the small things a first-time user trips over."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient


def test_every_page_has_an_icon_served_before_sign_in(app: Flask, client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'rel="icon" href="/static/favicon.svg"' in page
    icon = app.test_client().get("/static/favicon.svg")  # no session: the welcome page has it too
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert b"<svg" in icon.data


def test_every_command_line_option_says_what_it_does() -> None:
    import argparse

    import run

    parser = run.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    silent = [
        f"{name} {' '.join(action.option_strings)}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if action.option_strings and not action.help
    ]
    assert silent == []
    port = next(a for a in parser._actions if "--port" in a.option_strings)
    assert "not used" in str(port.help)  # `status`/`sync` do not listen anywhere


def test_status_shows_moments_to_the_second() -> None:
    from datetime import datetime

    import run

    assert run._iso(datetime(2026, 12, 4, 8, 10, 35, 123456)) == "2026-12-04T08:10:35Z"
