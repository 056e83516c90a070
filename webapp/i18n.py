"""Languages and time zones: Flask-Babel with English and Japanese.

The locale comes from `?lang=` (remembered in a cookie), else the cookie, else the browser's
Accept-Language. Times are stored in UTC and shown in the user's zone: `?tz=` / the cookie,
else the profile's `timezone` setting, else this computer's zone (the app runs on the user's
own computer, so that is almost always right).
"""

from __future__ import annotations

import io
import logging
import struct
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask import Flask, request
from flask_babel import Babel, format_datetime, get_locale, gettext, ngettext
from werkzeug.wrappers import Response

from sync.messages import PluralMsg, from_json, render
from sync.settings import get_setting
from sync.setup.messages import N_, Msg

log = logging.getLogger(__name__)

LANGUAGES = {"en": "English", "ja": "日本語"}
TRANSLATIONS = Path(__file__).resolve().with_name("translations")
COOKIE_AGE = 365 * 24 * 3600

babel = Babel()

# Texts rendered through `tr` in error.html that are written in webapp/errors.py: listed here
# so that extraction puts them in the catalog.
ERROR_TEXTS = (
    N_("The form expired"),
    N_("This page was open too long or came from elsewhere. Reload it and try again."),
    N_("Bad request"),
)
# Values the dashboard's templates translate as `_(value)` (kind labels, states, actions, jobs,
# triggers, outcomes from sync.dashboard_data and the runs table), listed for extraction.
DYNAMIC_TEXTS = (
    N_("Email tracking"),
    N_("Offline data"),
    N_("never"),
    N_("off"),
    N_("running"),
    N_("ok"),
    N_("partial"),
    N_("failed"),
    N_("skipped"),
    N_("interrupted"),
    N_("created"),
    N_("updated"),
    N_("deleted"),
    N_("tracked"),
    N_("sent"),
    N_("messaging"),
    N_("offline"),
    N_("schedule"),
    N_("now"),
    N_("cli"),
)


def _translations(catalog: Catalog) -> tuple[dict[str, str], dict[tuple[Any, Any], Any]]:
    """What a compiled catalog means: its headers (but the Babel version that wrote it) and
    its translations."""
    headers = {k: v for k, v in catalog.mime_headers if k != "Generated-By"}

    def frozen(value: Any) -> Any:  # plural forms come as lists
        return tuple(value) if isinstance(value, list | tuple) else value

    return headers, {(frozen(m.id), m.context): frozen(m.string) for m in catalog if m.id}


def _up_to_date(mo_path: Path, compiled: bytes) -> bool:
    """Whether the .mo on disk already holds what `compiled` holds: compared by meaning, not by
    bytes or times (a fresh clone's file times are arbitrary, and another Babel version writes
    another Generated-By header), so the tracked .mo is not rewritten by a run or a test."""
    if not mo_path.exists():
        return False
    try:
        with mo_path.open("rb") as handle:
            current = read_mo(handle)
    except (OSError, ValueError, struct.error):  # unreadable or not a catalog: compile it
        return False
    return _translations(current) == _translations(read_mo(io.BytesIO(compiled)))


def compile_catalogs(directory: Path = TRANSLATIONS) -> list[Path]:
    """Compile each .po whose .mo is missing or says something else, so a checkout runs
    without a build step; returns the .mo files written."""
    written = []
    for po_path in directory.glob("*/LC_MESSAGES/*.po"):
        mo_path = po_path.with_suffix(".mo")
        with po_path.open("rb") as handle:
            catalog = read_po(handle)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        if _up_to_date(mo_path, buffer.getvalue()):
            continue
        try:
            mo_path.write_bytes(buffer.getvalue())
        except OSError as error:  # a read-only install: the English text still works
            log.warning("could not compile %s: %s", po_path, error)
            continue
        written.append(mo_path)
    return written


def _valid_zone(name: str | None) -> str | None:
    if name and name in _zones():
        return name
    return None


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


def local_zone() -> str:
    """This computer's time zone name (UTC when it cannot be told)."""
    try:
        from tzlocal import get_localzone_name

        return _valid_zone(get_localzone_name()) or "UTC"
    except Exception:  # no tzlocal, or an unusual system setup
        return "UTC"


def select_locale() -> str:
    for candidate in (request.args.get("lang"), request.cookies.get("lang")):
        if candidate in LANGUAGES:
            return candidate
    return request.accept_languages.best_match(list(LANGUAGES)) or "en"


def select_timezone() -> str:
    for candidate in (request.args.get("tz"), request.cookies.get("tz")):
        if _valid_zone(candidate):
            return str(candidate)
    from webapp import state

    stored = _valid_zone(get_setting(state.database(), "timezone"))
    return stored or local_zone()


def remember_choice(response: Response) -> Response:
    """`?lang=` and `?tz=` stick: later pages keep the choice without the query."""
    lang, zone = request.args.get("lang"), request.args.get("tz")
    if lang in LANGUAGES:
        response.set_cookie("lang", lang, max_age=COOKIE_AGE, samesite="Strict", httponly=True)
    if _valid_zone(zone):
        response.set_cookie("tz", str(zone), max_age=COOKIE_AGE, samesite="Strict", httponly=True)
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    return response


def _one(message: Msg, params: dict[str, Any]) -> str:
    """One message in the current language; its English when the translation does not fit
    the parameters (a catalog mistake must not break a page)."""
    try:
        if isinstance(message, PluralMsg):
            num = params.pop("num", 0)
            return str(ngettext(message.text, message.plural, num, **params))
        return str(gettext(message.text, **params)) if params else str(gettext(message.text))
    except (KeyError, ValueError, TypeError):
        log.warning("translation of %r does not fit its parameters", message.text)
        return render(message)


def translate(message: Msg | str) -> str:
    """A `sync` message (or a plain id) in the current language, parameters filled in (each
    translated too when it is a message)."""
    if isinstance(message, Msg):
        return render(message, _one)
    return str(gettext(message))


def stored_text(stored: Any, fallback: str | None = "") -> str:
    """A message stored as JSON (`sync.messages.to_json`) in the current language; rows
    written before messages were stored so, or a plain text, show `fallback` as it is."""
    message = from_json(stored)
    return translate(message) if message is not None else (fallback or "")


def alert_text(alert: Any, part: str) -> str:
    """An alert's `title`, `message` or `action` in the current language."""
    texts = getattr(alert, "texts", None) or {}
    return stored_text(texts.get(part), getattr(alert, part, ""))


def run_message(run: Any) -> str:
    """A run's message in the current language."""
    return stored_text(getattr(run, "message_msg", None), getattr(run, "message", ""))


DATE_TIME = {"en": "d MMM y, HH:mm", "ja": "y/MM/dd HH:mm"}
"""The one date-time format of each language (en: 4 Dec 2026, 14:05; ja: 2026/12/04 14:05)."""


def when(value: Any) -> str:
    """A stored time (naive UTC, or aware) in the user's zone and the language's one format;
    "" for none. Every template shows date-times through this filter."""
    if value is None or value == "":
        return ""
    locale = get_locale()
    pattern = DATE_TIME.get(locale.language if locale else "en", DATE_TIME["en"])
    return str(format_datetime(value, pattern))


def _template_globals() -> dict[str, Any]:
    locale = get_locale()
    return {
        "current_lang": locale.language if locale else "en",
        "languages": LANGUAGES,
    }


def zone_names() -> list[str]:
    return sorted(_zones())


def init_app(app: Flask) -> None:
    """Install Flask-Babel with our selectors, compile catalogs, add `tr` for templates."""
    compile_catalogs()
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    app.after_request(remember_choice)
    app.jinja_env.globals["tr"] = translate
    app.jinja_env.filters["tr"] = translate
    app.jinja_env.filters["stored_text"] = stored_text
    app.jinja_env.filters["alert_text"] = alert_text
    app.jinja_env.filters["run_message"] = run_message
    app.jinja_env.filters["when"] = when
    app.context_processor(_template_globals)
