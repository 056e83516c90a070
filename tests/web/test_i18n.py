"""English and Japanese: chosen by Accept-Language, switched by ?lang=, a complete catalog,
and times shown in the user's time zone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import flask_babel
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient

from sync.runs import RunRecorder
from sync.settings import set_setting
from sync.setup.memory import MemoryWorld, demo_world, memory_ports
from sync.store.models import Run
from tests.helpers import ROOT, csrf_token_from, page_text, signed_in
from webapp import create_app
from webapp.i18n import TRANSLATIONS, compile_catalogs
from webapp.wizard import PORTS_KEY

ALICE = "alice@contoso.example"
PO_FILE = TRANSLATIONS / "ja" / "LC_MESSAGES" / "messages.po"
JA = {"Accept-Language": "ja,en;q=0.5"}


@pytest.fixture
def world() -> MemoryWorld:
    return demo_world()


@pytest.fixture
def ja_app(data_dir: Path, world: MemoryWorld) -> Iterator[Flask]:
    app = create_app({"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token"})
    app.extensions[PORTS_KEY] = memory_ports(world, ALICE)
    set_setting(app.extensions["mailbox_sync.database"], "account_upn", ALICE)
    yield app
    app.extensions["mailbox_sync.database"].dispose()


@pytest.fixture
def web(ja_app: Flask) -> FlaskClient:
    return signed_in(ja_app)


def test_accept_language_ja_gives_japanese(web: FlaskClient) -> None:
    html = page_text(web.get("/setup/organization", headers=JA))
    assert '<html lang="ja">' in html
    assert "組織の選択" in html and "次へ" in html
    assert "Choose your organizations" not in html
    english = page_text(web.get("/setup/organization", headers={"Accept-Language": "en-US"}))
    assert "Choose your organizations" in english and '<html lang="en">' in english


def test_lang_query_switches_and_is_remembered(web: FlaskClient) -> None:
    response = web.get("/setup/organization?lang=en", headers=JA)
    assert "Choose your organizations" in page_text(response)
    assert "lang=en" in response.headers["Set-Cookie"]
    assert "Choose your organizations" in page_text(web.get("/setup/organization", headers=JA))
    web.get("/settings?lang=ja")
    assert "組織の選択" in page_text(web.get("/setup/organization"))


def test_the_welcome_and_error_pages_are_translated(ja_app: Flask) -> None:
    anonymous = ja_app.test_client()
    assert "サインイン リンクを開いてください" in page_text(anonymous.get("/welcome", headers=JA))
    refused = anonymous.post("/sync-now", headers=JA)  # no sign-in cookie → welcome redirect
    assert refused.status_code in (302, 400)
    client = ja_app.test_client()
    client.get("/login?token=test-login-token")
    expired = client.post("/setup/organization", headers=JA)
    assert expired.status_code == 400
    assert "フォームの有効期限が切れました" in page_text(expired)


def _extracted_ids() -> set[str]:
    method_map = [
        ("webapp/**.py", "python"),
        ("sync/**.py", "python"),
        ("templates/**.html", "jinja2"),
    ]
    keywords = {"_": None, "gettext": None, "N_": None, "NP_": (1, 2), "lazy_gettext": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map=method_map, keywords=keywords
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"%\(\w+\)s", text))


def test_every_message_id_has_a_japanese_translation() -> None:
    with PO_FILE.open("rb") as handle:
        catalog = read_po(handle)
    # a plural message is known by its singular id (as extracted), every form translated
    translated = {
        (m.id if isinstance(m.id, str) else m.id[0]): m
        for m in catalog
        if m.id
        and m.string
        and all(m.string if isinstance(m.string, tuple) else [1])
        and not m.fuzzy
    }
    extracted = _extracted_ids()
    assert len(extracted) > 150  # the extraction itself works
    missing = sorted(extracted - set(translated))
    assert missing == [], f"untranslated message ids (run the catalog update): {missing}"
    for message_id in extracted:
        string = translated[message_id].string
        for form in string if isinstance(string, tuple) else [string]:
            assert _placeholders(str(form)) == _placeholders(message_id), message_id


def test_catalog_compiles(tmp_path: Path) -> None:
    target = tmp_path / "ja" / "LC_MESSAGES"
    target.mkdir(parents=True)
    (target / "messages.po").write_bytes(PO_FILE.read_bytes())
    (compiled,) = compile_catalogs(tmp_path)
    assert compiled.stat().st_size > 1000
    assert compile_catalogs(tmp_path) == []  # up to date: not compiled again


class _Spy:
    """Wraps the request's translations and records every message id not in the catalog."""

    def __init__(self, inner: object, misses: set[str]) -> None:
        self.inner, self.misses = inner, misses

    def _check(self, message: str) -> None:
        catalog = getattr(self.inner, "_catalog", {})
        if message and message not in catalog:
            self.misses.add(message)

    def ugettext(self, message: str) -> str:
        self._check(message)
        return str(self.inner.ugettext(message))  # type: ignore[attr-defined]

    gettext = ugettext

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_the_whole_wizard_in_japanese_has_no_untranslated_message(
    web: FlaskClient, world: MemoryWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    misses: set[str] = set()
    original = flask_babel.Domain.get_translations

    def spying(self: flask_babel.Domain) -> _Spy:
        return _Spy(original(self), misses)

    monkeypatch.setattr(flask_babel.Domain, "get_translations", spying)
    token = csrf_token_from(web.get("/settings", headers=JA).get_data(as_text=True))
    contoso = next(o.info.id for o in world.orgs.values() if o.info.unique_name == "contoso")

    def post(path: str, data: dict[str, object]):  # type: ignore[no-untyped-def]
        return web.post(path, data={"csrf_token": token, **data}, headers=JA)

    pages = [web.get("/setup/organization", headers=JA)]
    pages.append(post("/setup/organization", {}))  # an error message too
    pages.append(post("/setup/organization", {"synchronizing": contoso}))
    pages.append(web.get("/setup/mailbox", headers=JA))
    pages.append(post("/setup/mailbox", {"type": "pop3", "email": "x", "action": "save"}))
    pages.append(post("/setup/mailbox", {"type": "exchange", "email": ALICE, "action": "save"}))
    world.claims[ALICE] = __import__("sync.setup.ports").setup.ports.ClaimInfo("o", "desk-pc")
    pages.append(web.get("/setup/instance", headers=JA))
    pages.append(post("/setup/instance", {"take_over": "no"}))
    pages.append(web.get("/setup/choices", headers=JA))
    pages.append(post("/setup/choices", {"filters": ["my-open-tasks"], "tracking": "all"}))
    pages.append(web.get("/setup/done", headers=JA))
    pages.append(web.get("/settings", headers=JA))
    pages.append(web.get("/log", headers=JA))
    pages.append(web.get("/", headers=JA))
    assert all(p.status_code in (200, 303, 422) for p in pages), [p.status_code for p in pages]
    done = page_text(web.get("/setup/done", headers=JA))
    assert "設定が完了しました" in done and "desk-pc" in done
    assert misses == set(), f"untranslated: {sorted(misses)}"


def test_times_are_shown_in_the_users_time_zone(ja_app: Flask, web: FlaskClient) -> None:
    database = ja_app.extensions["mailbox_sync.database"]
    recorder = RunRecorder(database, "messaging", "now")
    with database.session() as session:
        run = session.get(Run, recorder.run_id)
        assert run is not None
        run.started_at = datetime(2026, 11, 25, 10, 0)  # stored in UTC
    tokyo = page_text(web.get("/log?tz=Asia/Tokyo"))
    assert re.search(r'data-testid="run-started">\s*25 Nov 2026, 19:00', tokyo)
    assert "tz=Asia/Tokyo" in web.get("/log?tz=Asia/Tokyo").headers["Set-Cookie"]
    web.get("/log?tz=UTC")
    set_setting(database, "timezone", "America/New_York")
    web.delete_cookie("tz")
    new_york = page_text(web.get("/log"))
    assert re.search(r'data-testid="run-started">\s*25 Nov 2026, 05:00', new_york)
    # Japanese: the one Japanese format (webapp.i18n.DATE_TIME)
    japanese = page_text(web.get("/log?lang=ja"))
    assert re.search(r'data-testid="run-started">\s*2026/11/25 05:00', japanese)
