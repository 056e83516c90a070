"""The setup wizard through the Flask test client, on in-memory ports (sync.setup.memory).

The real adapters (Dataverse, EWS, POP3) are tested by their own suites; here the ports are
fakes so every rule and page can be driven quickly, including two installs sharing a mailbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sync.runs import open_alerts
from sync.settings import get_setting, set_setting
from sync.setup import instance
from sync.setup.memory import MemoryClaims, MemoryWorld, demo_world, memory_ports
from sync.setup.profile import Profile
from sync.setup.vault import PLAINTEXT_CONSENT
from tests.helpers import csrf_token_from, page_text, signed_in
from webapp import create_app
from webapp.wizard import PORTS_KEY

ALICE = "alice@contoso.example"
ALICE_PASSWORD = "alice-Sandbox-1"


def make_app(data_dir: Path, world: MemoryWorld, upn: str = ALICE) -> Flask:
    app = create_app({"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token"})
    app.extensions[PORTS_KEY] = memory_ports(world, upn)
    set_setting(app.extensions["mailbox_sync.database"], "account_upn", upn)
    # signing in without a keyring records this consent; the vault needs it for passwords
    set_setting(app.extensions["mailbox_sync.database"], PLAINTEXT_CONSENT, True)
    return app


@pytest.fixture
def world() -> MemoryWorld:
    return demo_world()


@pytest.fixture
def wizard_app(data_dir: Path, world: MemoryWorld) -> Iterator[Flask]:
    app = make_app(data_dir, world)
    yield app
    app.extensions["mailbox_sync.database"].dispose()


@pytest.fixture
def web(wizard_app: Flask) -> FlaskClient:
    return signed_in(wizard_app)


class Wizard:
    """Small helpers for posting the steps with the page's CSRF token."""

    def __init__(self, client: FlaskClient, world: MemoryWorld) -> None:
        self.client, self.world = client, world

    def token(self) -> str:
        """The session's CSRF token (the same on every page)."""
        page = self.client.get("/settings")
        return csrf_token_from(page.get_data(as_text=True))

    def post(self, path: str, data: dict[str, object], **kw: object):  # type: ignore[no-untyped-def]
        return self.client.post(path, data={"csrf_token": self.token(), **data}, **kw)

    def org_id(self, name: str) -> str:
        return next(o.info.id for o in self.world.orgs.values() if o.info.unique_name == name)

    def organization(self, name: str = "contoso", connected: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
        return self.post(
            "/setup/organization",
            {"synchronizing": self.org_id(name), "connected": [self.org_id(c) for c in connected]},
        )

    def mailbox(self, **fields: str):  # type: ignore[no-untyped-def]
        data = {"type": "exchange", "email": ALICE, "auth": "oauth", "action": "save", **fields}
        return self.post("/setup/mailbox", data)

    def instance(self, answer: str = "yes"):  # type: ignore[no-untyped-def]
        return self.post("/setup/instance", {"take_over": answer})

    def choices(self, **fields: object):  # type: ignore[no-untyped-def]
        data = {
            "filters": ["my-active-contacts", "my-appointments"],
            "tracking": "replies",
            "interval_seconds": "300",
            **fields,
        }
        return self.post("/setup/choices", data)


@pytest.fixture
def wizard(web: FlaskClient, world: MemoryWorld) -> Wizard:
    return Wizard(web, world)


# --- the flow -----------------------------------------------------------------------------


def test_first_start_sends_the_dashboard_to_the_first_step(web: FlaskClient) -> None:
    response = web.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/setup/organization")


def test_not_signed_in_the_first_step_links_to_sign_in(data_dir: Path, world: MemoryWorld) -> None:
    app = create_app({"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token"})
    app.extensions[PORTS_KEY] = memory_ports(world, ALICE)
    try:
        page = page_text(signed_in(app).get("/setup/organization"))
        assert 'data-testid="signin-link"' in page and 'href="/signin"' in page
        assert 'data-testid="org-list"' not in page
    finally:
        app.extensions["mailbox_sync.database"].dispose()


def test_whole_wizard_then_the_dashboard(wizard: Wizard, wizard_app: Flask) -> None:
    page = page_text(wizard.client.get("/setup/organization"))
    assert 'data-testid="org-contoso"' in page and "Fabrikam Sandbox" in page
    response = wizard.organization("contoso", connected=("fabrikam",))
    assert response.status_code == 303 and response.headers["Location"].endswith("/setup/mailbox")

    page = page_text(wizard.client.get("/setup/mailbox"))
    assert "CRM user: Alice Wong" in page
    assert 'data-testid="method-incoming"' in page and "Set to this client" not in page
    response = wizard.mailbox()
    assert response.status_code == 303 and response.headers["Location"].endswith("/setup/instance")

    page = page_text(wizard.client.get("/setup/instance"))
    assert 'data-state="none"' in page and "No computer is synchronizing yet." in page
    response = wizard.instance("yes")
    assert response.headers["Location"].endswith("/setup/choices")

    page = page_text(wizard.client.get("/setup/choices"))
    assert 'data-testid="filter-my-active-contacts"' in page
    response = wizard.choices(tracking="all", interval_seconds="900")
    assert response.headers["Location"].endswith("/setup/done")

    page = page_text(wizard.client.get("/setup/done"))
    assert "Contoso Sandbox" in page and ALICE in page and "15 min" in page
    response = wizard.post("/setup/done", {})
    assert response.status_code == 303 and response.headers["Location"].endswith("/")
    assert wizard.client.get("/").status_code == 200  # the dashboard now
    database = wizard_app.extensions["mailbox_sync.database"]
    assert get_setting(database, "interval_seconds") == 900
    assert get_setting(database, "messaging_enabled") is True


def test_steps_ahead_of_the_profile_are_not_reachable(wizard: Wizard) -> None:
    response = wizard.client.get("/setup/choices")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/setup/organization")
    assert wizard.client.get("/setup/nonsense").status_code == 302


def test_resumes_at_the_same_step_after_a_restart(
    wizard: Wizard, wizard_app: Flask, data_dir: Path, world: MemoryWorld
) -> None:
    wizard.organization()
    wizard.mailbox()
    assert wizard.client.get("/").headers["Location"].endswith("/setup/instance")
    wizard_app.extensions["mailbox_sync.database"].dispose()

    restarted = make_app(data_dir, world)  # a new process on the same data dir
    try:
        client = signed_in(restarted)
        assert client.get("/").headers["Location"].endswith("/setup/instance")
        assert client.get("/setup/").headers["Location"].endswith("/setup/instance")
        back = page_text(client.get("/setup/mailbox"))  # back to a done step: the stored values
        assert f'value="{ALICE}"' in back
    finally:
        restarted.extensions["mailbox_sync.database"].dispose()


# --- organization step ----------------------------------------------------------------------


def test_organization_must_be_chosen(wizard: Wizard) -> None:
    response = wizard.post("/setup/organization", {})
    assert response.status_code == 422
    assert "Choose the organization to synchronize with." in page_text(response)


def test_changing_the_synchronizing_org_asks_first(wizard: Wizard) -> None:
    wizard.organization("contoso")
    response = wizard.organization("fabrikam")
    assert response.status_code == 409
    page = page_text(response)
    assert 'data-testid="confirm-change"' in page and "starts its sync from scratch" in page
    response = wizard.post(
        "/setup/organization", {"synchronizing": wizard.org_id("fabrikam"), "confirm": "yes"}
    )
    assert response.status_code == 303


def test_htmx_post_gets_an_hx_redirect_or_the_errors_in_place(wizard: Wizard) -> None:
    headers = {"HX-Request": "true"}
    response = wizard.post("/setup/organization", {}, headers=headers)
    assert response.status_code == 200 and "Choose the organization" in page_text(response)
    response = wizard.post(
        "/setup/organization", {"synchronizing": wizard.org_id("contoso")}, headers=headers
    )
    assert response.headers["HX-Redirect"] == "/setup/mailbox"


# --- mailbox step -------------------------------------------------------------------------


def test_mailbox_validation_errors_are_shown_in_place(wizard: Wizard) -> None:
    wizard.organization()
    response = wizard.mailbox(type="pop3", email="not-an-address", pop3_port="0")
    assert response.status_code == 422
    page = page_text(response)
    for field in ("email", "pop3_host", "smtp_host", "pop3_port", "password"):
        assert f'data-testid="error-{field}"' in page
    assert 'aria-invalid="true"' in page

    # htmx: the form is checked on change and redrawn with the POP3 fields
    check = wizard.post(
        "/setup/mailbox/check",
        {"type": "pop3", "email": ALICE, "pop3_port": "x"},
        headers={"HX-Request": "true"},
    )
    fragment = page_text(check)
    assert fragment.startswith('<form id="mailbox-form"')
    assert 'data-testid="pop3-fields"' in fragment and 'data-testid="error-pop3_port"' in fragment
    assert 'data-testid="error-smtp_host"' not in fragment  # untouched fields stay quiet
    assert 'data-testid="back"' in fragment
    # the redraw replaces the fields only, and empties Test's answer (out of band)
    assert 'id="mailbox-fields"' in fragment and 'hx-select="#mailbox-fields"' in fragment
    assert '<div id="test-result-slot" hx-swap-oob="true">' in fragment
    assert 'data-testid="test-result"' not in fragment
    assert 'id="test-result-slot" hx-swap-oob' not in page  # a whole page swaps nothing aside


def test_an_address_of_another_crm_user_is_refused_with_the_clear_message(
    data_dir: Path, world: MemoryWorld
) -> None:
    app = make_app(data_dir, world, upn="bob@contoso.example")
    try:
        wizard = Wizard(signed_in(app), world)
        wizard.organization()
        response = wizard.mailbox(email=ALICE)
        assert response.status_code == 422
        page = page_text(response)
        assert (
            "The mailbox alice@contoso.example is already used by another CRM user, Alice Wong."
            in page
        )
        assert "ask your administrator to change Alice Wong&#39;s mailbox record" in page
        assert 'data-testid="error-email"' in page
        assert get_setting(app.extensions["mailbox_sync.database"], "mailbox") is None
    finally:
        app.extensions["mailbox_sync.database"].dispose()


def test_test_connection_reports_and_a_bad_password_stops_the_step(wizard: Wizard) -> None:
    wizard.organization()
    basic = {"auth": "basic", "username": "alice", "password": "wrong"}
    response = wizard.mailbox(action="test", **basic)
    assert 'data-testid="test-result"' in page_text(
        response
    ) and "refused the sign-in" in page_text(response)
    response = wizard.mailbox(**basic)
    assert response.status_code == 422
    response = wizard.mailbox(
        action="test", auth="basic", username="alice", password=ALICE_PASSWORD
    )
    assert "Connection works." in page_text(response)
    htmx = wizard.post(
        "/setup/mailbox",
        {"type": "exchange", "email": ALICE, "auth": "oauth", "action": "test"},
        headers={"HX-Request": "true"},
    )
    assert page_text(htmx).startswith(
        '<form id="mailbox-form"'
    ) and "Connection works." in page_text(htmx)
    assert 'data-testid="back"' in page_text(htmx)  # the swapped form keeps its Back link
    assert get_setting(wizard_database(wizard), "mailbox") is None  # testing stores nothing
    response = wizard.mailbox(auth="basic", username="alice", password=ALICE_PASSWORD)
    assert response.status_code == 303
    assert ALICE_PASSWORD not in str(get_setting(wizard_database(wizard), "mailbox"))


def wizard_database(wizard: Wizard):  # type: ignore[no-untyped-def]
    return wizard.client.application.extensions["mailbox_sync.database"]


def test_delivery_methods_set_with_consent_only(wizard: Wizard, world: MemoryWorld) -> None:
    wizard.organization("fabrikam")
    page = page_text(wizard.client.get("/setup/mailbox"))
    # only appointments, contacts and tasks are this app's: the email methods are left alone
    assert page.count("Not this client") == 1 and 'data-testid="set-methods"' in page
    assert page.count("Left as it is") == 2 and 'data-testid="email-methods-note"' in page
    refused = wizard.post("/setup/mailbox/methods", {}, headers={"HX-Request": "true"})
    assert 'data-testid="methods-error"' in page_text(refused) and "Tick the box" in page_text(
        refused
    )
    done = wizard.post("/setup/mailbox/methods", {"consent": "yes"}, headers={"HX-Request": "true"})
    fragment = page_text(done)
    assert fragment.startswith('<div id="methods"') and "Not this client" not in fragment
    org = world.orgs[wizard.org_id("fabrikam")]
    assert {
        (m.incoming, m.outgoing, m.act) for m in org.mailboxes.values() if m.email == ALICE
    } == {(2, 2, 0)}
    org.may_edit_mailboxes = False
    for record_id, record in list(org.mailboxes.items()):
        if record.email == ALICE:
            org.mailboxes[record_id] = record.__class__(**{**vars(record), "act": 1})
    admin = wizard.post("/setup/mailbox/methods", {"consent": "yes"})
    assert admin.status_code == 422 and "Ask your administrator to set" in page_text(admin)


# --- instance step ---------------------------------------------------------------------------


def _through_mailbox(wizard: Wizard) -> None:
    assert wizard.organization().status_code == 303
    assert wizard.mailbox().status_code == 303


def test_two_installs_take_over_yes_and_no(
    wizard: Wizard, wizard_app: Flask, world: MemoryWorld, tmp_path: Path
) -> None:
    set_setting(wizard_database(wizard), "instance_name", "desk-pc")
    _through_mailbox(wizard)
    assert wizard.instance().status_code == 303

    laptop_dir = tmp_path / "laptop"
    laptop_dir.mkdir()
    laptop_app = make_app(laptop_dir, world)
    try:
        laptop = Wizard(signed_in(laptop_app), world)
        set_setting(wizard_database(laptop), "instance_name", "laptop")
        _through_mailbox(laptop)
        page = page_text(laptop.client.get("/setup/instance"))
        assert 'data-state="other"' in page
        assert "Another computer (desk-pc) is the synchronizing computer." in page
        assert 'data-testid="take-over-question"' in page

        # No: the laptop works without messaging sync, and says so
        assert laptop.instance("no").status_code == 303
        laptop_db = wizard_database(laptop)
        assert get_setting(laptop_db, "messaging_enabled") is False
        assert get_setting(laptop_db, "messaging_disabled_reason") == (
            "This computer does not synchronize messaging data; desk-pc does."
        )

        # Yes (going back to the step): the laptop takes over, desk-pc stops on its next run
        assert laptop.instance("yes").status_code == 303
        assert get_setting(laptop_db, "messaging_enabled") is True
        desk = Profile(wizard_database(wizard), wizard_app.config["DATA_DIR"])
        assert not instance.ensure_still_synchronizing(desk, MemoryClaims(world, ALICE))
        (alert,) = open_alerts(wizard_database(wizard))
        assert alert.title == "Another computer (laptop) is now the synchronizing computer."
        assert get_setting(wizard_database(wizard), "messaging_enabled") is False
    finally:
        laptop_app.extensions["mailbox_sync.database"].dispose()


def test_instance_question_must_be_answered(wizard: Wizard, world: MemoryWorld) -> None:
    from sync.setup.ports import ClaimInfo

    _through_mailbox(wizard)
    world.claims[ALICE] = ClaimInfo("someone-else", "old-pc")
    response = wizard.post("/setup/instance", {})
    assert response.status_code == 409
    assert "Another computer (old-pc) is the synchronizing computer. Make this" in page_text(
        response
    )


def test_an_empty_computer_name_is_the_host_name_and_the_page_says_so(wizard: Wizard) -> None:
    """Issue 11, point 11: a blank name silently became the host name (or kept an old one)."""
    import socket

    _through_mailbox(wizard)
    page = page_text(wizard.client.get("/setup/instance"))
    assert "Left empty, the computer’s own name is used: " + socket.gethostname() in page
    database = wizard_database(wizard)
    set_setting(database, "instance_name", "old-name")
    assert (
        wizard.post("/setup/instance", {"take_over": "yes", "instance_name": " "}).status_code
        == 303
    )
    assert get_setting(database, "instance_name") is None


# --- choices step -------------------------------------------------------------------------


def test_choices_show_live_counts_and_validate(wizard: Wizard, world: MemoryWorld) -> None:
    _through_mailbox(wizard)
    wizard.instance()
    org = world.orgs[wizard.org_id("contoso")]
    alice_id = next(u.id for u in org.users.values() if u.name == "Alice Wong")
    org.counts[f"contacts?_ownerid_value eq {alice_id} and statecode eq 0"] = 37
    org.counts["contacts?statecode eq 0"] = 120
    union = f"(_ownerid_value eq {alice_id} and statecode eq 0) or (statecode eq 0)"
    org.counts[f"contacts?{union}"] = 120  # a contact in both filters counts once
    page = page_text(wizard.client.get("/setup/choices"))
    assert re.search(r'data-testid="count-my-active-contacts">\s*37 records', page)
    assert 'hx-trigger="change"' in page

    totals = wizard.post(
        "/setup/choices/counts",
        {"filters": ["my-active-contacts", "all-active-contacts"]},
        headers={"HX-Request": "true"},
    )
    assert re.search(r'data-testid="total-contacts">\s*Contacts 120', page_text(totals))

    bad = wizard.choices(interval_seconds="7")
    assert bad.status_code == 422 and "Choose one of the offered intervals." in page_text(bad)
    assert wizard.choices().status_code == 303


# --- security ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/setup/organization",
        "/setup/mailbox",
        "/setup/mailbox/check",
        "/setup/mailbox/methods",
        "/setup/instance",
        "/setup/choices",
        "/setup/choices/counts",
        "/setup/done",
        "/settings/preferences",
    ],
)
def test_every_post_needs_the_csrf_token(web: FlaskClient, path: str) -> None:
    response = web.post(path, data={"synchronizing": "x"})
    assert response.status_code == 400
    assert b"expired" in response.data


def test_wizard_pages_need_the_sign_in_link(wizard_app: Flask) -> None:
    anonymous = wizard_app.test_client()
    for path in ("/setup/organization", "/settings", "/log"):
        response = anonymous.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/welcome")


def test_without_javascript_the_type_switch_redraws_the_form(wizard: Wizard) -> None:
    wizard.organization()
    response = wizard.post("/setup/mailbox", {"type": "pop3", "email": ALICE, "action": "refresh"})
    page = page_text(response)
    assert response.status_code == 200
    assert 'data-testid="pop3-fields"' in page and 'data-testid="exchange-fields"' not in page
    assert 'class="error"' not in page


def test_a_new_interval_reschedules_the_running_scheduler(
    wizard: Wizard, wizard_app: Flask
) -> None:
    calls: list[tuple[str, float]] = []

    class Scheduler:
        def reschedule(self, job: str, seconds: float) -> None:
            calls.append((job, seconds))

        def next_run(self, job: str) -> None:
            return None

    wizard_app.extensions["mailbox_sync.scheduler"] = Scheduler()
    _through_mailbox(wizard)
    wizard.instance()
    assert wizard.choices(interval_seconds="1800").status_code == 303
    assert calls == [("messaging", 1800)]
