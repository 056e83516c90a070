"""The Mail page (issue 8 part 6) and the email dashboard cards (part 7), over the Flask test
client with the in-memory facade (tests/mail/fake_facade.py).

Each action is checked twice: as htmx sends it (the CSRF token in the `X-CSRFToken` header,
the answer is just the row or panel) and as a plain form post (the token in the form, a 303
back to the page, or the page again with the error beside the row).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import flask_babel
import pytest
from flask import Flask
from flask.testing import FlaskClient

from sync.mail.facade import TRACKED_FOLDERS_MAX, FolderRow
from sync.runs import RunRecorder
from sync.settings import set_setting
from sync.store.db import Database
from tests.helpers import ROOT, csrf_token_from, page_text, signed_in
from tests.mail.fake_facade import DEMO_RECORDS, FakeMailFacade, complete_setup, mail_app
from webapp.mail import dom_id

HTMX = {"HX-Request": "true"}
JA = {"Accept-Language": "ja"}
ADA = DEMO_RECORDS[0]
CONTOSO = DEMO_RECORDS[3]


@pytest.fixture
def facade() -> FakeMailFacade:
    return FakeMailFacade()


@pytest.fixture
def app(data_dir: Path, facade: FakeMailFacade) -> Iterator[Flask]:
    app = mail_app(data_dir, facade)
    complete_setup(app.extensions["mailbox_sync.database"], data_dir)
    yield app
    app.extensions["mailbox_sync.database"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return signed_in(app)


def _token(client: FlaskClient) -> str:
    return csrf_token_from(client.get("/mail").get_data(as_text=True))


def _row(html: str, message_id: str) -> str:
    """The HTML of one message's row on a page."""
    start = html.index(f'id="{dom_id("m", message_id)}"')
    return html[start : html.index("</li>", html.index("</details>", start))]


INBOX = "AAMkAD0000/inbox+id=="  # "Quote for 40 laptops", not tracked
SENT = "AAMkAD0100/sent=="  # tracked, regarding the Adatum lead


# --- the page ------------------------------------------------------------------------------


def test_the_page_lists_the_inbox_with_tracked_state_and_tabs(client: FlaskClient) -> None:
    html = page_text(client.get("/mail"))
    assert html.count('data-testid="message"') == 3
    assert "Quote for 40 laptops" in html and "見積もりのお願い" in html
    # tabs: Inbox (current), Sent Items, the tracked folder; not the untracked one
    assert re.search(r'data-testid="tab-inbox" aria-current="page"', html)
    assert 'data-testid="tab-sentitems"' in html and ">Projects</a>" in html
    assert 'data-testid="tab-folder-news"' not in html
    assert 'data-testid="state-untracked"' in html and 'data-testid="track"' in html
    sent = page_text(client.get("/mail?folder=sentitems"))
    row = _row(sent, SENT)
    assert 'data-testid="state-tracked"' in row and 'data-testid="untrack"' in row
    assert "Regarding: Adatum lead: 40 laptops" in row and "(Lead)" in row
    project = page_text(client.get("/mail?folder=folder-projects"))
    assert "Project kick-off" in project and "Quote for 40 laptops" not in project


def test_the_newest_fifty_messages_are_listed(client: FlaskClient, facade: FakeMailFacade) -> None:
    from tests.mail.fake_facade import MessageRow

    facade.messages = [
        MessageRow(
            f"id-{n}",
            "inbox",
            f"Message {n:03d}",
            "x@y.example",
            f"2025-01-01T00:{n // 60:02d}:{n % 60:02d}Z",
            False,
        )
        for n in range(80)
    ]
    html = page_text(client.get("/mail"))
    assert html.count('data-testid="message"') == 50
    assert "Message 079" in html and "Message 030" in html and "Message 029" not in html


def test_an_unknown_or_untracked_folder_falls_back_to_the_inbox(client: FlaskClient) -> None:
    html = page_text(client.get("/mail?folder=folder-news"))
    assert 'data-testid="mail-note"' in html and "Quote for 40 laptops" in html


def test_the_navigation_offers_mail_once_setup_is_complete(
    data_dir: Path, facade: FakeMailFacade
) -> None:
    app = mail_app(data_dir, facade)
    client = signed_in(app)
    assert 'data-testid="nav-mail"' not in client.get("/settings").get_data(as_text=True)
    complete_setup(app.extensions["mailbox_sync.database"], data_dir)
    settings = client.get("/settings").get_data(as_text=True)
    assert re.search(r'<a href="/mail" data-testid="nav-mail">Mail</a>', settings)
    app.extensions["mailbox_sync.database"].dispose()


def test_without_email_set_up_the_page_says_what_to_do_and_offers_nothing(
    data_dir: Path,
) -> None:
    app = mail_app(data_dir, None)
    client = signed_in(app)
    assert client.get("/mail").headers["Location"] == "/setup/"  # before setup: the wizard
    complete_setup(app.extensions["mailbox_sync.database"], data_dir)
    html = page_text(client.get("/mail"))
    assert 'data-testid="mail-off"' in html and "choose an email tracking option" in html
    assert 'href="/settings"' in html
    for absent in ("track", "untrack", "set-regarding", "folders-panel", "mail-tabs"):
        assert f'data-testid="{absent}"' not in html
    token = csrf_token_from(client.get("/mail").get_data(as_text=True))
    posted = client.post("/mail/track", data={"csrf_token": token, "message_id": INBOX})
    assert posted.status_code == 303 and posted.headers["Location"] == "/mail"
    assert client.get("/mail/search?q=ada").status_code == 404
    app.extensions["mailbox_sync.database"].dispose()


def test_the_page_needs_the_sign_in(app: Flask) -> None:
    anonymous = app.test_client()
    assert anonymous.get("/mail").status_code == 302
    assert anonymous.get("/mail/search?q=a", headers=HTMX).status_code == 401


# --- Track / Untrack ---------------------------------------------------------------------------


def test_track_by_htmx_swaps_just_the_row(client: FlaskClient, facade: FakeMailFacade) -> None:
    token = _token(client)
    answer = client.post(
        "/mail/track",
        data={"message_id": INBOX, "folder": "inbox"},
        headers={**HTMX, "X-CSRFToken": token},
    )
    assert answer.status_code == 200
    html = page_text(answer)
    assert html.startswith(f'<li id="{dom_id("m", INBOX)}"') and html.count("<li") == 1
    assert 'data-testid="state-tracked"' in html and 'data-testid="untrack"' in html
    assert facade.calls == [("track", INBOX)]
    assert facade.messages[0].tracked


def test_track_and_untrack_without_javascript(client: FlaskClient, facade: FakeMailFacade) -> None:
    token = _token(client)
    done = client.post(
        "/mail/track", data={"csrf_token": token, "message_id": INBOX, "folder": "inbox"}
    )
    assert done.status_code == 303
    assert done.headers["Location"] == f"/mail?folder=inbox#{dom_id('m', INBOX)}"
    assert 'data-testid="state-tracked"' in _row(page_text(client.get("/mail")), INBOX)
    client.post("/mail/untrack", data={"csrf_token": token, "message_id": INBOX})
    assert facade.calls == [("track", INBOX), ("untrack", INBOX)]
    assert 'data-testid="state-untracked"' in _row(page_text(client.get("/mail")), INBOX)


def test_every_post_needs_the_csrf_token(client: FlaskClient, facade: FakeMailFacade) -> None:
    for path, data in (
        ("/mail/track", {"message_id": INBOX}),
        ("/mail/untrack", {"message_id": SENT}),
        ("/mail/regarding", {"message_id": INBOX, "record": f"contacts|{ADA.id}|x"}),
        ("/mail/folders/track", {"folder_id": "folder-news", "tracked": "yes"}),
        ("/mail/folders/regarding", {"folder_id": "folder-projects", "clear": "1"}),
    ):
        assert client.post(path, data=data, headers=HTMX).status_code == 400, path
    assert facade.calls == []


def test_a_refused_track_is_shown_beside_its_row(
    client: FlaskClient, facade: FakeMailFacade
) -> None:
    token = _token(client)
    facade.fail_with = "The CRM refused the email: you lack the privilege to create emails."
    answer = client.post(
        "/mail/track",
        data={"message_id": INBOX, "folder": "inbox"},
        headers={**HTMX, "X-CSRFToken": token},
    )
    assert answer.status_code == 200  # htmx swaps only 2xx answers
    html = page_text(answer)
    assert 'role="alert" data-testid="row-error"' in html and "lack the privilege" in html
    assert 'data-testid="state-untracked"' in html
    # without JavaScript: the whole page, the message in that row and nowhere else
    facade.fail_with = "The mailbox is busy; try again in a minute."
    page = client.post(
        "/mail/track", data={"csrf_token": token, "message_id": INBOX, "folder": "inbox"}
    )
    assert page.status_code == 422
    html = page_text(page)
    assert "The mailbox is busy" in _row(html, INBOX) and html.count('data-testid="row-error"') == 1


def test_a_message_gone_from_the_mailbox_is_said_at_the_top(
    client: FlaskClient, facade: FakeMailFacade
) -> None:
    page = client.post(
        "/mail/track", data={"csrf_token": _token(client), "message_id": "gone", "folder": "inbox"}
    )
    assert page.status_code == 422
    html = page_text(page)
    assert re.search(r'data-testid="mail-note">This message is no longer in the mailbox.<', html)


def test_an_unreachable_mail_service_is_said_in_place_of_the_page(data_dir: Path) -> None:
    from sync.mail.facade import MailError

    app = mail_app(data_dir, None)

    def refuse() -> None:
        raise MailError("Your mailbox cannot be reached: check your network, then reload.")

    app.extensions["mail_facade"] = refuse
    complete_setup(app.extensions["mailbox_sync.database"], data_dir)
    answer = signed_in(app).get("/mail")
    html = page_text(answer)
    assert answer.status_code == 503 and 'data-testid="mail-setup-error"' in html
    assert "cannot be reached" in html and "choose an email tracking option" not in html
    app.extensions["mailbox_sync.database"].dispose()


def test_a_post_without_a_message_is_refused(client: FlaskClient, facade: FakeMailFacade) -> None:
    answer = client.post("/mail/track", data={"csrf_token": _token(client)})
    assert answer.status_code == 400 and 'data-testid="mail-bad-form"' in page_text(answer)
    assert facade.calls == []


# --- Set Regarding ---------------------------------------------------------------------------


def test_search_as_you_type_returns_matches_as_buttons_of_the_form(
    client: FlaskClient, facade: FakeMailFacade
) -> None:
    page = page_text(client.get("/mail"))
    row = _row(page, INBOX)
    assert 'hx-trigger="input changed delay:300ms"' in row
    assert 'hx-get="/mail/search"' in row and 'name="q"' in row
    label = re.search(r'<label for="(q-m-[0-9a-f]+)">', row)
    assert label and f'id="{label.group(1)}"' in row  # the search box has its label
    fragment = page_text(client.get("/mail/search?q=con", headers=HTMX))
    assert fragment.count('data-testid="pick-record"') == 2  # Contoso Ltd, Contoso: 200 licences
    assert f'value="accounts|{CONTOSO.id}|Contoso Ltd"' in fragment and "(Account)" in fragment
    assert "(Opportunity)" in fragment
    assert 'data-testid="no-matches"' in page_text(client.get("/mail/search?q=zzz"))
    assert "Type part of a name" in page_text(client.get("/mail/search?q=+"))
    assert facade.searches == ["con", "zzz"]  # nothing asked for an empty box


def test_at_most_twenty_five_matches_are_shown(client: FlaskClient, facade: FakeMailFacade) -> None:
    from sync.mail.facade import RecordRef
    from tests.mail.fake_facade import _guid

    facade.records = [RecordRef("contacts", _guid(f"c{n}"), f"Smith {n:02d}") for n in range(40)]
    fragment = page_text(client.get("/mail/search?q=smith"))
    assert fragment.count('data-testid="pick-record"') == 25
    assert 'data-testid="more-matches"' in fragment


def test_pick_a_record_sets_regarding_and_shows_it_in_the_row(
    client: FlaskClient, facade: FakeMailFacade
) -> None:
    token = _token(client)
    answer = client.post(
        "/mail/regarding",
        data={
            "message_id": INBOX,
            "folder": "inbox",
            "q": "ada",
            "record": f"contacts|{ADA.id}|Ada Lovelace",
        },
        headers={**HTMX, "X-CSRFToken": token},
    )
    html = page_text(answer)
    assert answer.status_code == 200 and html.count("<li id=") == 1
    assert "Regarding: Ada Lovelace" in html and "(Contact)" in html
    assert 'data-testid="state-tracked"' in html  # Set Regarding tracks the message first
    assert facade.calls == [("regarding", (INBOX, ADA))]
    # clear it, without JavaScript
    done = client.post(
        "/mail/regarding",
        data={"csrf_token": token, "message_id": INBOX, "folder": "inbox", "clear": "1"},
    )
    assert done.status_code == 303 and facade.calls[-1] == ("regarding", (INBOX, None))
    assert "Regarding:" not in _row(page_text(client.get("/mail")), INBOX)


def test_search_without_javascript_opens_the_panel_with_the_matches(
    client: FlaskClient, facade: FakeMailFacade
) -> None:
    token = _token(client)
    page = client.post(
        "/mail/regarding",
        data={"csrf_token": token, "message_id": INBOX, "folder": "inbox", "q": "turing"},
    )
    assert page.status_code == 200
    row = _row(page_text(page), INBOX)
    assert '<details class="regarding-panel" open>' in row and 'value="turing"' in row
    assert row.count('data-testid="pick-record"') == 1 and "Alan Turing" in row
    assert facade.calls == []  # a search changes nothing
    # Enter in the search box with htmx: the same, as the row alone
    answer = client.post(
        "/mail/regarding",
        data={"message_id": INBOX, "folder": "inbox", "q": "ada"},
        headers={**HTMX, "X-CSRFToken": token},
    )
    row = page_text(answer)
    assert answer.status_code == 200 and row.count("<li id=") == 1
    assert row.count('data-testid="pick-record"') == 2  # Ada Lovelace, Adatum lead
    assert facade.calls == []


@pytest.mark.parametrize(
    "value",
    [
        "contacts|not-a-guid|x",
        f"systemusers|{ADA.id}|x",  # not a table Set Regarding searches
        f"contacts|{ADA.id})/x|y",
        "garbage",
    ],
)
def test_a_forged_record_is_refused_beside_the_row(
    client: FlaskClient, facade: FakeMailFacade, value: str
) -> None:
    answer = client.post(
        "/mail/regarding",
        data={"message_id": INBOX, "folder": "inbox", "record": value},
        headers={**HTMX, "X-CSRFToken": _token(client)},
    )
    html = page_text(answer)
    assert "Choose a record from the list." in html and 'data-testid="row-error"' in html
    assert facade.calls == []


def test_a_failed_search_is_shown_in_the_results(
    client: FlaskClient, facade: FakeMailFacade
) -> None:
    facade.fail_with = "The CRM did not answer in time."
    fragment = page_text(client.get("/mail/search?q=ada", headers=HTMX))
    assert 'data-testid="search-error"' in fragment and "did not answer in time" in fragment


# --- tracked folders ---------------------------------------------------------------------------


def test_the_folder_panel_lists_folders_with_tracked_state_and_regarding(
    client: FlaskClient,
) -> None:
    html = page_text(client.get("/mail"))
    assert "1 of 25 folders tracked." in html
    assert "Regarding: Contoso Ltd" in html  # the Projects folder's Regarding
    assert html.count('data-testid="folder-track"') == 1  # Newsletters
    assert html.count('data-testid="folder-untrack"') == 1  # Projects
    assert html.count('data-testid="folder-set-regarding"') == 1  # only a tracked folder's


def test_track_a_folder_by_htmx_swaps_the_panel_and_the_tabs(
    client: FlaskClient, facade: FakeMailFacade
) -> None:
    answer = client.post(
        "/mail/folders/track",
        data={"folder_id": "folder-news", "tracked": "yes", "folder": "inbox"},
        headers={**HTMX, "X-CSRFToken": _token(client)},
    )
    html = page_text(answer)
    assert html.startswith('<section id="folders"') and "2 of 25 folders tracked." in html
    assert 'id="mail-tabs"' in html and 'hx-swap-oob="true"' in html
    assert 'data-testid="tab-folder-news"' in html
    assert facade.calls == [("folder", ("folder-news", True, None))]


def test_the_twenty_sixth_folder_is_refused_inline(
    client: FlaskClient, facade: FakeMailFacade
) -> None:
    facade.folder_rows = [
        FolderRow(f"f{n}", f"Folder {n}", True) for n in range(TRACKED_FOLDERS_MAX)
    ]
    facade.folder_rows.append(FolderRow("f-extra", "One too many", False))
    token = _token(client)
    answer = client.post(
        "/mail/folders/track",
        data={"folder_id": "f-extra", "tracked": "yes"},
        headers={**HTMX, "X-CSRFToken": token},
    )
    html = page_text(answer)
    assert answer.status_code == 200 and "25 of 25 folders tracked." in html
    start = html.index(f'id="{dom_id("f", "f-extra")}"')
    assert "At most 25 folders can be tracked." in html[start:]
    assert html.count('data-testid="folder-error"') == 1
    page = client.post(
        "/mail/folders/track", data={"csrf_token": token, "folder_id": "f-extra", "tracked": "yes"}
    )
    assert page.status_code == 422 and "At most 25 folders" in page_text(page)


def test_set_and_clear_a_folders_regarding(client: FlaskClient, facade: FakeMailFacade) -> None:
    token = _token(client)
    done = client.post(
        "/mail/folders/regarding",
        data={
            "csrf_token": token,
            "folder_id": "folder-projects",
            "record": f"contacts|{ADA.id}|Ada Lovelace",
        },
    )
    assert done.status_code == 303 and done.headers["Location"].endswith("#folders")
    assert facade.calls[-1] == ("folder", ("folder-projects", True, ADA))
    assert "Regarding: Ada Lovelace" in page_text(client.get("/mail"))
    answer = client.post(
        "/mail/folders/regarding",
        data={"folder_id": "folder-projects", "clear": "1"},
        headers={**HTMX, "X-CSRFToken": token},
    )
    assert "Regarding:" not in page_text(answer)
    assert facade.calls[-1] == ("folder", ("folder-projects", True, None))


def test_a_folder_search_without_javascript_opens_its_panel(
    client: FlaskClient, facade: FakeMailFacade
) -> None:
    page = client.post(
        "/mail/folders/regarding",
        data={"csrf_token": _token(client), "folder_id": "folder-projects", "q": "fabrikam"},
    )
    assert page.status_code == 200
    html = page_text(page)
    start = html.index(f'id="{dom_id("f", "folder-projects")}"')
    panel = html[start : html.index("</details>", start)]
    assert '<details class="regarding-panel" open>' in panel
    assert "Fabrikam, Inc." in panel and 'data-testid="clear-regarding"' in panel
    assert facade.calls == []


def test_failures_to_read_are_shown_where_the_list_would_be(
    client: FlaskClient, facade: FakeMailFacade
) -> None:
    facade.fail_with = "The mailbox could not be reached."  # folders() is asked first
    html = page_text(client.get("/mail"))
    assert 'data-testid="folders-error"' in html and "could not be reached" in html
    assert html.count('data-testid="message"') == 3  # the messages still listed


# --- Japanese --------------------------------------------------------------------------------


class _Spy:
    """Records every message id the page asks the catalog for that it does not have."""

    def __init__(self, inner: object, misses: set[str]) -> None:
        self.inner, self.misses = inner, misses

    def ugettext(self, message: str) -> str:
        if message and message not in getattr(self.inner, "_catalog", {}):
            self.misses.add(message)
        return str(self.inner.ugettext(message))  # type: ignore[attr-defined]

    gettext = ugettext

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_every_string_of_the_page_and_cards_is_in_the_japanese_catalog(
    client: FlaskClient, app: Flask, facade: FakeMailFacade, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = _token(client)
    misses: set[str] = set()
    original = flask_babel.Domain.get_translations
    monkeypatch.setattr(
        flask_babel.Domain, "get_translations", lambda self: _Spy(original(self), misses)
    )
    database = app.extensions["mailbox_sync.database"]
    _email_runs(database)
    set_setting(database, "tracking_option", "all")
    set_setting(database, "send_crm_email", True)
    pages = [client.get("/mail", headers=JA), client.get("/mail?folder=sentitems", headers=JA)]
    pages.append(client.get("/mail?folder=nope", headers=JA))
    for q in ("con", "zzz", ""):
        pages.append(client.get(f"/mail/search?q={q}", headers=JA))
    facade.fail_with = "x"
    pages.append(
        client.post("/mail/track", data={"csrf_token": token, "message_id": INBOX}, headers=JA)
    )
    pages.append(
        client.post(
            "/mail/regarding",
            data={"csrf_token": token, "message_id": INBOX, "record": "bad"},
            headers=JA,
        )
    )
    pages.append(
        client.post(
            "/mail/regarding",
            data={"csrf_token": token, "message_id": SENT, "folder": "sentitems", "q": "a"},
            headers=JA,
        )
    )
    pages.append(client.post("/mail/track", data={"csrf_token": token}, headers=JA))
    pages.append(client.get("/", headers=JA))
    misses.discard("x")  # the facade's own text
    # a run's text stored as plain English (as older runs were): looked up, shown as stored
    misses.discard("2 messages could not be read.")
    assert all(p.status_code in (200, 400, 422) for p in pages), [p.status_code for p in pages]
    assert misses == set(), f"untranslated: {sorted(misses)}"
    assert "関連: Adatum lead: 40 laptops" in page_text(pages[1])
    off = mail_app(Path(app.config["DATA_DIR"]), None)
    misses.clear()
    assert "メール" in page_text(signed_in(off).get("/mail", headers=JA))
    assert misses == set(), f"untranslated: {sorted(misses)}"
    off.extensions["mailbox_sync.database"].dispose()


# --- dashboard cards and status --json ---------------------------------------------------------


def _email_runs(database: Database) -> None:
    first = RunRecorder(database, "messaging", "schedule")
    first.counts(
        {
            "contacts": {"mailbox": {"created": 2}, "crm": {}},
            "email": {
                "tracked": 5,
                "linked": 1,
                "untracked": 0,
                "attachments_skipped": 1,
                "errors": 0,
            },
            "outgoing": {"sent": 2, "failed": 1, "already_sent": 0, "errors": 0},
        }
    )
    first.finish("ok")
    second = RunRecorder(database, "messaging", "now")
    second.counts(
        {
            "email": {
                "tracked": 3,
                "linked": 0,
                "untracked": 1,
                "attachments_skipped": 0,
                "errors": 2,
                "message": "2 messages could not be read.",
            },
            "outgoing": {"sent": 1, "failed": 0, "already_sent": 1, "errors": 0},
        }
    )
    second.finish("partial")


def test_no_email_cards_while_email_is_off(app: Flask, client: FlaskClient) -> None:
    database = app.extensions["mailbox_sync.database"]
    _email_runs(database)
    set_setting(database, "tracking_option", "none")
    html = page_text(client.get("/"))
    assert 'data-testid="kind-email"' not in html and 'data-testid="kind-outgoing"' not in html
    assert 'data-testid="kind-contacts"' in html


def test_email_cards_show_this_run_totals_and_the_last_run(app: Flask, client: FlaskClient) -> None:
    database = app.extensions["mailbox_sync.database"]
    _email_runs(database)
    set_setting(database, "tracking_option", "replies")
    set_setting(database, "send_crm_email", True)
    html = page_text(client.get("/"))
    card = html[html.index('data-testid="kind-email"') : html.index('data-testid="kind-outgoing"')]
    assert "Email tracking" in card and '<span class="badge partial">partial</span>' in card
    assert 'data-testid="count-email-crm-tracked">3<' in card
    assert 'data-testid="count-email-untracked">1<' in card
    assert (
        'data-testid="total-email-tracked">8<' in card
        and 'data-testid="total-email-linked">1<' in card
    )
    assert 'data-testid="total-email-attachments_skipped">1<' in card
    assert "2 items failed" in card and "2 messages could not be read." in card
    assert "Last run" in card
    outgoing = html[html.index('data-testid="kind-outgoing"') :]
    outgoing = outgoing[: outgoing.index("</article>")]
    assert 'data-testid="count-outgoing-mailbox-sent">1<' in outgoing
    assert 'data-testid="count-outgoing-already_sent">1<' in outgoing and "already sent" in outgoing
    assert 'data-testid="total-outgoing-sent">3<' in outgoing
    assert 'data-testid="total-outgoing-failed">1<' in outgoing and "not sent (refused)" in outgoing
    # the chart counts email work as changes: run 1 = 2 contacts + 5 + 1 tracked + 2 sent
    assert re.search(r"<title>#1 ok: 10 changes", html)


def test_a_tracked_folder_alone_turns_the_email_card_on(app: Flask, client: FlaskClient) -> None:
    database = app.extensions["mailbox_sync.database"]
    set_setting(database, "tracked_folders", [{"id": "f1", "name": "Projects", "regarding": None}])
    html = page_text(client.get("/"))
    assert 'data-testid="kind-email"' in html and 'data-testid="kind-outgoing"' not in html
    assert (
        '<span class="badge never">never</span>' in html[html.index('data-testid="kind-email"') :]
    )


def test_status_json_has_the_two_email_entries(app: Flask, data_dir: Path) -> None:
    database = app.extensions["mailbox_sync.database"]
    _email_runs(database)
    set_setting(database, "tracking_option", "all")
    set_setting(database, "send_crm_email", True)
    database.dispose()
    answer = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "status", "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    kinds = {k["kind"]: k for k in json.loads(answer.stdout)["kinds"]}
    assert list(kinds) == ["contacts", "appointments", "tasks", "email", "outgoing"]
    email, outgoing = kinds["email"], kinds["outgoing"]
    assert email["state"] == "partial" and email["last_run_at"]
    assert email["to_crm"] == {"tracked": 3} and email["other"] == {"untracked": 1}
    assert email["totals"] == {"tracked": 8, "linked": 1, "untracked": 1, "attachments_skipped": 1}
    assert email["errors"] == 2 and email["message"] == "2 messages could not be read."
    assert outgoing["to_mailbox"] == {"sent": 1} and outgoing["other"] == {"already_sent": 1}
    assert outgoing["totals"] == {"sent": 3, "failed": 1, "already_sent": 1}
