"""Nothing the user can see does nothing (issue 8 point 5, issue 10 point 10).

Offline is not built yet, so its options, cards and status entries are not shown (its stored
settings stay, for when it is built). Email is built (issue 8): its options are offered, and the
wizard points the CRM's email delivery methods at this client only when the user turns email
on (tests/mail/test_email_setup.py), leaving them alone otherwise and saying so; a POP3 mailbox
is offered no contacts, appointments or tasks, with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from sync.runs import RunRecorder
from sync.settings import get_setting
from sync.setup import choices as choices_step
from sync.setup.adapters import DataverseDirectory
from sync.setup.memory import MemoryWorld, demo_world
from sync.setup.ports import MailboxRecord
from sync.setup.profile import Profile
from tests.helpers import ROOT, page_text, signed_in
from tests.web.test_wizard import ALICE, ALICE_PASSWORD, Wizard, make_app


@pytest.fixture
def world() -> MemoryWorld:
    return demo_world()


@pytest.fixture
def wizard_app(data_dir: Path, world: MemoryWorld) -> Iterator[Flask]:
    app = make_app(data_dir, world)
    yield app
    app.extensions["mailbox_sync.database"].dispose()


@pytest.fixture
def wizard(wizard_app: Flask, world: MemoryWorld) -> Wizard:
    return Wizard(signed_in(wizard_app), world)


def _profile(app: Flask, data_dir: Path) -> Profile:
    return Profile(app.extensions["mailbox_sync.database"], data_dir)


# --- A: the email delivery methods are left as they are --------------------------------------


class RecordingClient:
    """Stands in for the Dataverse client: records each update."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, str, dict[str, Any], str | None]] = []

    def update(self, entity_set: str, key: str, body: dict[str, Any], if_match: str | None = None):  # type: ignore[no-untyped-def]
        self.updates.append((entity_set, key, dict(body), if_match))


def test_setting_the_method_writes_only_appointments_contacts_and_tasks() -> None:
    """A PATCH writes what it names: the email methods must not be in it, even unchanged."""
    from sync.setup import mailbox

    client = RecordingClient()
    record = MailboxRecord("mb-1", "user-1", ALICE, incoming=2, outgoing=2, act=1)
    updated = mailbox.set_to_this_client(DataverseDirectory(client), record, consent=True)
    assert client.updates == [("mailboxes", "mb-1", {"actdeliverymethod": 0}, "*")]
    assert (updated.incoming, updated.outgoing, updated.act) == (2, 2, 0)


def test_the_mailbox_step_says_the_email_methods_are_left_alone(
    wizard: Wizard, world: MemoryWorld, wizard_app: Flask, data_dir: Path
) -> None:
    wizard.organization("fabrikam")  # Alice's record there: (2, 2, 1), server-side sync
    page = page_text(wizard.client.get("/setup/mailbox"))
    assert "only when you turn email on" in page  # email: not chosen yet, so left alone
    assert page.count("Left as it is") == 2 and page.count("Not this client") == 1
    assert "I agree to set Appointments, Contacts, and Tasks to this client." in page
    wizard.post("/setup/mailbox/methods", {"consent": "yes"})
    org = world.orgs[wizard.org_id("fabrikam")]
    (mine,) = [m for m in org.mailboxes.values() if m.email == ALICE]
    assert (mine.incoming, mine.outgoing, mine.act) == (2, 2, 0)
    page = page_text(wizard.client.get("/setup/mailbox"))
    assert 'data-testid="set-methods"' not in page  # nothing left for this client to set
    # the email methods are not this client's, yet no alert: email is not on here
    database = wizard_app.extensions["mailbox_sync.database"]
    from sync.runs import open_alerts

    assert [a.code for a in open_alerts(database)] == []


# --- B: offline is not offered (email is) -----------------------------------------------------


def test_offline_filters_are_offered_apart_and_saved_as_ticked(
    wizard: Wizard, wizard_app: Flask, data_dir: Path
) -> None:
    """Issue 12: offline is built, so its filters are offered — in their own fieldset (they
    choose what "Go offline" downloads, not what goes to the mailbox), counted live — and
    saved exactly as ticked (unticking one removes it)."""
    wizard.organization()
    wizard.mailbox()
    wizard.instance("yes")
    profile = _profile(wizard_app, data_dir)
    choices_step.save_choices(
        profile,
        choices_step.Choices(("my-active-contacts", "offline-my-accounts"), tracking="all"),
    )
    page = page_text(wizard.client.get("/setup/choices"))
    assert 'data-testid="tracking-all"' in page and 'data-testid="tracking-email_enabled"' in page
    offline = page[page.index('data-testid="offline-filters"') :]
    for slug in ("offline-my-contacts", "offline-my-accounts", "offline-my-opportunities"):
        assert f'data-testid="filter-{slug}"' in offline
    assert 'value="offline-my-accounts" checked' in offline
    answer = wizard.post(
        "/setup/choices",
        {"filters": ["my-active-contacts", "my-open-tasks", "offline-my-leads"],
         "interval_seconds": "300"},
    )  # fmt: skip
    assert answer.status_code == 303
    stored = choices_step.current_choices(profile)
    assert stored.tracking == "all"
    assert set(stored.filters) == {"my-active-contacts", "my-open-tasks", "offline-my-leads"}
    assert get_setting(profile.database, "kinds") == ["contacts", "tasks"]
    summary = page_text(wizard.client.get("/setup/done"))
    assert "Email tracking" in summary
    assert "My open leads" in summary and "Leads (offline)" in summary  # every choice listed
    assert 'data-testid="settings-tracking"' in page_text(wizard.client.get("/settings"))


def test_the_counts_leave_out_offline_filters(wizard: Wizard) -> None:
    wizard.organization()
    wizard.mailbox()
    wizard.instance("yes")
    fragment = page_text(
        wizard.post(
            "/setup/choices/counts",
            {"filters": ["my-active-contacts", "offline-my-accounts"]},
        )
    )
    assert 'data-testid="total-contacts"' in fragment
    assert "offline" not in fragment.lower()


def test_dashboard_and_status_show_no_email_or_offline_cards(
    wizard_app: Flask, data_dir: Path
) -> None:
    from tests.mail.fake_facade import complete_setup

    database = wizard_app.extensions["mailbox_sync.database"]
    complete_setup(database, data_dir)  # before, the cards' place says "Finish setup"
    RunRecorder(database, "messaging", "now").finish("ok", "Nothing changed.")
    html = page_text(signed_in(wizard_app).get("/"))
    assert 'data-testid="kind-contacts"' in html
    for hidden in ("email", "outgoing", "offline"):
        assert f'data-testid="kind-{hidden}"' not in html
    # the cards (the workloads table names every workload of the mailbox record, "Not run")
    cards = html[html.index('<section class="kinds">') : html.index('id="runs"')]
    assert "Email tracking" not in cards and "Outgoing email" not in cards
    assert "Offline data" not in html
    wizard_app.extensions["mailbox_sync.database"].dispose()
    answer = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "status", "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    kinds = [k["kind"] for k in json.loads(answer.stdout)["kinds"]]
    assert kinds == ["contacts", "appointments", "tasks"]


# --- C: a POP3 mailbox has no contacts, appointments or tasks ----------------------------------


def test_a_pop3_profile_is_offered_no_kinds_and_told_why(
    wizard: Wizard, wizard_app: Flask, data_dir: Path
) -> None:
    wizard.organization()
    answer = wizard.mailbox(
        type="pop3", pop3_host="pop.example", smtp_host="smtp.example", password=ALICE_PASSWORD
    )
    assert answer.status_code == 303
    wizard.instance("yes")
    page = page_text(wizard.client.get("/setup/choices"))
    assert 'data-testid="pop3-note"' in page
    assert "Contacts, appointments and tasks need an Exchange mailbox" in page
    assert 'data-testid="filter-' not in page and 'data-testid="add-filter"' not in page
    assert 'data-testid="interval"' not in page and "direction-" not in page
    # [ui-filters] nothing to sync is refused (issue 11 point 5): POP3 syncs email only
    assert wizard.post("/setup/choices", {}).status_code == 422
    assert wizard.post("/setup/choices", {"tracking": "all"}).status_code == 303
    profile = _profile(wizard_app, data_dir)
    assert get_setting(profile.database, "kinds") == []
    assert profile.is_complete()


def test_configure_sets_only_appointments_contacts_and_tasks_and_says_so(
    data_dir: Path, world: MemoryWorld, wizard_app: Flask
) -> None:
    """`run.py configure --set-methods`: the same rule as the wizard's button, told the same."""
    from sync.setup.configure import ConfigureOptions, configure
    from sync.setup.memory import memory_ports

    done = configure(
        _profile(wizard_app, data_dir),
        memory_ports(world, ALICE),
        ConfigureOptions(
            org="fabrikam",
            mailbox_form={"type": "exchange", "email": ALICE, "auth": "oauth"},
            set_methods=True,
            take_over=True,
        ),
    )
    org = next(o for o in world.orgs.values() if o.info.unique_name == "fabrikam")
    (mine,) = [m for m in org.mailboxes.values() if m.email == ALICE]
    assert (mine.incoming, mine.outgoing, mine.act) == (2, 2, 0)
    lines = [line for line in done if line.startswith("  ")]
    # no --tracking on a first configure: email is off, its methods left as they are
    assert lines[0].endswith("[left as it is: email is off here]")
    assert lines[1].endswith("[left as it is: email is off here]")
    assert lines[2].endswith("[ok]")


def test_a_pop3_mailbox_leaves_every_method_alone(
    wizard: Wizard, world: MemoryWorld, wizard_app: Flask
) -> None:
    """Nothing of appointments, contacts and tasks syncs over POP3: no button takes them from
    server-side sync, and no alert asks for it."""
    from sync.runs import open_alerts

    wizard.organization("fabrikam")  # Alice's record there: (2, 2, 1)
    answer = wizard.mailbox(
        type="pop3", pop3_host="pop.example", smtp_host="smtp.example", password=ALICE_PASSWORD
    )
    assert answer.status_code == 303
    page = page_text(wizard.client.get("/setup/mailbox"))
    assert page.count("Left as it is") == 3 and "Not this client" not in page
    assert 'data-testid="act-needs-exchange"' in page and 'data-testid="set-methods"' not in page
    refused = wizard.post("/setup/mailbox/methods", {"consent": "yes"})
    assert refused.status_code == 422 and "need an Exchange mailbox" in page_text(refused)
    org = world.orgs[wizard.org_id("fabrikam")]
    (mine,) = [m for m in org.mailboxes.values() if m.email == ALICE]
    assert (mine.incoming, mine.outgoing, mine.act) == (2, 2, 1)
    alerts = open_alerts(wizard_app.extensions["mailbox_sync.database"])
    assert "mailbox-method-not-set" not in [a.code for a in alerts]
