"""Email in the wizard, Settings and `run.py configure`: the five options, Sent Items, the days
back, the tracking token, sending CRM email; the CRM mailbox record's email methods are set to
this client only when the user turns email on, and left alone otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

import run
from sync.mail import settings as email_settings
from sync.mail.settings import EmailSettings, TrackedFolder
from sync.settings import get_setting
from sync.setup import adapters
from sync.setup import choices as choices_step
from sync.setup.memory import MemoryWorld, demo_world, memory_ports
from sync.setup.messages import SetupError
from sync.setup.profile import Profile
from sync.store.db import open_database
from tests.helpers import page_text, signed_in
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


def mine(world: MemoryWorld, wizard: Wizard, org: str) -> tuple[int, int, int]:
    records = world.orgs[wizard.org_id(org)].mailboxes.values()
    (record,) = [m for m in records if m.email == ALICE]
    return record.incoming, record.outgoing, record.act


def profile_of(app: Flask, data_dir: Path) -> Profile:
    return Profile(app.extensions["mailbox_sync.database"], data_dir)


def up_to_choices(wizard: Wizard, org: str = "fabrikam", **mailbox: str) -> None:
    wizard.organization(org)
    assert wizard.mailbox(**mailbox).status_code == 303
    wizard.instance("yes")


EMAIL_FORM = {"email_form": "1", "filters": ["my-active-contacts"], "interval_seconds": "300"}


def test_the_choices_step_offers_the_five_options_and_the_email_settings(
    wizard: Wizard,
) -> None:
    up_to_choices(wizard)
    page = page_text(wizard.client.get("/setup/choices"))
    for option in ("none", "all", "replies", "records", "email_enabled"):
        assert f'data-testid="tracking-{option}"' in page
    assert '<option value="none" data-testid="tracking-none" selected>' in page, "off by default"
    for field in ("track-sent-items", "track-days-back", "token-enabled", "token-prefix",
                  "send-crm-email", "email-methods-effect"):  # fmt: skip
        assert f'data-testid="{field}"' in page


def test_turning_email_on_sets_incoming_email_to_this_client_only(
    wizard: Wizard, world: MemoryWorld, wizard_app: Flask, data_dir: Path
) -> None:
    up_to_choices(wizard)  # Alice's record in fabrikam: (2, 2, 1), server-side sync
    answer = wizard.post("/setup/choices", {**EMAIL_FORM, "tracking": "records",
                         "track_days_back": "7", "token_enabled": "1", "token_prefix": "ACME:"})  # fmt: skip
    assert answer.status_code == 303, page_text(answer)
    assert mine(world, wizard, "fabrikam") == (1, 2, 1), "incoming only: sending is off"
    stored = email_settings.load(profile_of(wizard_app, data_dir))
    assert (stored.option, stored.track_sent_items, stored.track_days_back) == ("records", False, 7)
    assert (stored.token_enabled, stored.token_prefix) == (True, "ACME:")
    assert stored.started_at, "tracking starts when it is first turned on"
    page = page_text(wizard.client.get("/setup/mailbox"))
    assert page.count("Left as it is") == 1  # outgoing; incoming is this client's now
    settings = page_text(wizard.client.get("/settings"))
    assert "Email from CRM contacts, leads and accounts" in settings
    assert (
        "On, prefix ACME:" in settings
        and 'data-testid="settings-sent-items">Not tracked' in settings
    )


def test_sending_crm_email_sets_the_outgoing_method_too(wizard: Wizard, world: MemoryWorld) -> None:
    up_to_choices(wizard)
    answer = wizard.post("/setup/choices", {**EMAIL_FORM, "tracking": "none",
                                            "send_crm_email": "1", "track_sent_items": "1"})  # fmt: skip
    assert answer.status_code == 303
    assert mine(world, wizard, "fabrikam") == (2, 1, 1)


def test_email_off_leaves_the_methods_as_they_are(
    wizard: Wizard, world: MemoryWorld, wizard_app: Flask, data_dir: Path
) -> None:
    up_to_choices(wizard)
    answer = wizard.post("/setup/choices", {**EMAIL_FORM, "tracking": "none"})
    assert answer.status_code == 303
    assert mine(world, wizard, "fabrikam") == (2, 2, 1)
    assert email_settings.load(profile_of(wizard_app, data_dir)).started_at is None


def test_a_user_who_may_not_change_the_record_is_told_and_nothing_is_saved(
    wizard: Wizard, world: MemoryWorld, wizard_app: Flask, data_dir: Path
) -> None:
    up_to_choices(wizard)
    world.orgs[wizard.org_id("fabrikam")].may_edit_mailboxes = False
    answer = wizard.post("/setup/choices", {**EMAIL_FORM, "tracking": "all"})
    assert answer.status_code == 422
    text = page_text(answer)
    assert "You may not change your mailbox record" in text and "Incoming Email" in text
    assert mine(world, wizard, "fabrikam") == (2, 2, 1)
    assert not profile_of(wizard_app, data_dir).step_done("choices")


def test_bad_email_values_are_refused_beside_their_field(wizard: Wizard) -> None:
    up_to_choices(wizard)
    for field, value in (("track_days_back", "-1"), ("token_prefix", "CRM 1"),
                         ("tracking", "everything")):  # fmt: skip
        answer = wizard.post("/setup/choices", {**EMAIL_FORM, "tracking": "all", field: value})
        assert answer.status_code == 422, field


def test_a_pop3_mailbox_is_offered_email_without_sent_items(
    wizard: Wizard, world: MemoryWorld
) -> None:
    up_to_choices(
        wizard, "contoso", type="pop3", pop3_host="pop.example", smtp_host="smtp.example",
        password=ALICE_PASSWORD,
    )  # fmt: skip
    page = page_text(wizard.client.get("/setup/choices"))
    assert 'data-testid="tracking-all"' in page and 'data-testid="track-sent-items"' not in page
    assert wizard.post("/setup/choices", {"email_form": "1", "tracking": "all"}).status_code == 303


def test_the_old_stored_options_read_unchanged(wizard_app: Flask, data_dir: Path) -> None:
    profile = profile_of(wizard_app, data_dir)
    for option in ("none", "replies", "records", "all"):  # what versions before email stored
        profile.set("tracking_option", option)
        assert choices_step.current_choices(profile).tracking == option
        assert email_settings.load(profile).option == option
    profile.set("tracking_option", "bogus")
    assert email_settings.load(profile).option == "none", "never guess a rule"


def test_settings_round_trip_and_the_window(wizard_app: Flask, data_dir: Path) -> None:
    profile = profile_of(wizard_app, data_dir)
    folder = TrackedFolder("f-1", "Deals", None)
    saved = email_settings.save(
        profile,
        EmailSettings(
            option="all",
            track_sent_items=False,
            track_days_back=2,
            token_enabled=False,
            token_prefix="X-",
            send_crm_email=True,
        ),
    )
    email_settings.save_folders(profile, (folder,))
    loaded = email_settings.load(profile)
    assert loaded.tracked_folders == (folder,)
    assert (loaded.option, loaded.track_sent_items, loaded.token_enabled) == ("all", False, False)
    assert loaded.send_crm_email and saved.started_at == loaded.started_at
    start = email_settings.parse_moment(loaded.started_at)
    window = loaded.window_start()
    assert start is not None and window is not None and (start - window).days == 2


def test_configure_email_flags(
    data_dir: Path, world: MemoryWorld, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tests.setup.test_configure_cli import sign_in

    monkeypatch.setattr(adapters, "default_ports", lambda profile, info: memory_ports(world, ALICE))
    sign_in(data_dir)
    base = ["configure", "--data-dir", str(data_dir), "--org", "fabrikam", "--mailbox-type",
            "exchange", "--email", ALICE, "--take-over", "yes"]  # fmt: skip
    assert run.main(base) == 0
    out = capsys.readouterr().out
    assert (
        "Incoming email: Server-Side Synchronization or Email Router [left as it is: email is off here]"
        in out
    )
    org = next(o for o in world.orgs.values() if o.info.unique_name == "fabrikam")
    (record,) = [m for m in org.mailboxes.values() if m.email == ALICE]
    assert (record.incoming, record.outgoing) == (2, 2), "no --tracking: email left alone"
    code = run.main([*base, "--tracking", "email_enabled", "--no-track-sent-items",
                     "--track-days-back", "30", "--send-crm-email"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[ok: email is on]" in out and "sending CRM email: on" in out
    (record,) = [m for m in org.mailboxes.values() if m.email == ALICE]
    assert (record.incoming, record.outgoing) == (1, 1)
    database = open_database(data_dir)
    try:
        assert get_setting(database, "tracking_option") == "email_enabled"
        assert get_setting(database, "track_sent_items") is False
        assert get_setting(database, "track_days_back") == 30
        assert get_setting(database, "send_crm_email") is True
    finally:
        database.dispose()
    with pytest.raises(SystemExit) as usage:  # argparse: a usage error, exit code 2
        run.main([*base, "--tracking", "sometimes"])
    assert usage.value.code == 2


def test_parse_choices_keeps_the_defaults_without_the_email_form() -> None:
    picked = choices_step.parse_choices({"tracking": "all"}, [])
    assert picked.track_sent_items and picked.token_enabled and not picked.send_crm_email
    picked = choices_step.parse_choices({"tracking": "all", "email_form": "1"}, [])
    assert not picked.track_sent_items and not picked.token_enabled
    with pytest.raises(SetupError):
        choices_step.parse_choices({"tracking": "all", "token_prefix": "CRM1"}, [])
