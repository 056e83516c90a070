"""Friendly error pages: a refused CSRF token or host says what happened and what to do."""

from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import BadRequest


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> tuple[str, int]:
        return render_template(
            "error.html",
            title="The form expired",
            message="This page was open too long or came from elsewhere. Reload it and try again.",
            detail=error.description,
        ), 400

    @app.errorhandler(BadRequest)
    def bad_request(error: BadRequest) -> tuple[str, int]:
        return render_template(
            "error.html", title="Bad request", message=error.description, detail=""
        ), 400
