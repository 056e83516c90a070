"""The wizard's domain rules without the web: profile, organizations, mailbox, instance, choices."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.redaction import MASK, RedactingFilter
from sync.runs import open_alerts
from sync.setup import choices, instance, mailbox, organizations
from sync.setup import profile as keys
from sync.setup.memory import MemoryClaims, MemoryDirectory, MemoryTester, MemoryWorld, demo_world
from sync.setup.messages import SetupError
from sync.setup.ports import ClaimInfo, MailboxConfig
from sync.setup.profile import Profile
from sync.setup.vault import PLAINTEXT_CONSENT, Vault
from sync.store.db import Database, open_database
from sync.store.models import Link, SyncToken

ALICE = "alice@contoso.example"


@pytest.fixture
def database(data_dir: Path) -> Iterator[Database]:
    db = open_database(data_dir)
    yield db
    db.dispose()


@pytest.fixture
def world() -> MemoryWorld:
    return demo_world()


@pytest.fixture
def profile(database: Database, data_dir: Path) -> Profile:
    p = Profile(database, data_dir)
    p.set(keys.SIGNED_IN_UPN, ALICE)
    p.set(PLAINTEXT_CONSENT, True)  # as signing in without a keyring records it
    return p


def _contoso(world: MemoryWorld) -> organizations.OrgInfo:
    return next(o.info for o in world.orgs.values() if o.info.unique_name == "contoso")


def _fabrikam(world: MemoryWorld) -> organizations.OrgInfo:
    return next(o.info for o in world.orgs.values() if o.info.unique_name == "fabrikam")


def _choose_contoso(profile: Profile, world: MemoryWorld) -> None:
    orgs = list(world.orgs.values())
    organizations.choose(
        profile, [o.info for o in orgs], organizations.OrgChoice(_contoso(world).id)
    )


def _exchange_config(email: str = ALICE) -> MailboxConfig:
    return MailboxConfig(
        type="exchange", email=email, ews_url="https://mail.example/EWS/Exchange.asmx"
    )


# --- profile -------------------------------------------------------------------------------


def test_steps_follow_the_stored_profile_and_survive_a_restart(
    profile: Profile, world: MemoryWorld, data_dir: Path
) -> None:
    assert profile.current_step() == "organization"
    _choose_contoso(profile, world)
    assert profile.current_step() == "mailbox"
    directory = MemoryDirectory(world, _contoso(world).id, ALICE)
    user = directory.current_user()
    mailbox.save_mailbox(profile, directory, MemoryTester(world), user, _exchange_config(), {})
    assert profile.current_step() == "instance"

    database = open_database(data_dir)  # a new process on the same data dir
    try:
        again = Profile(database, data_dir)
        assert again.current_step() == "instance"
        assert again.instance_id == profile.instance_id
        assert again.synchronizing_org() == _contoso(world)
    finally:
        database.dispose()


def test_vault_is_private_and_secrets_are_masked_in_logs(
    data_dir: Path, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    Profile(database, data_dir).set(PLAINTEXT_CONSENT, True)  # as signing in without a keyring
    vault = Vault(data_dir, database)
    vault.set("mailbox_password", "s3cret-Passw0rd")
    if not vault.is_encrypted:
        assert os.stat(vault.path).st_mode & 0o777 == 0o600
    assert Vault(data_dir, database).get("mailbox_password") == "s3cret-Passw0rd"
    logger = logging.getLogger("mailbox_sync.test_vault")
    handler = caplog.handler
    handler.addFilter(RedactingFilter())
    try:
        logger.warning("login with %s failed", "s3cret-Passw0rd")
    finally:
        handler.removeFilter(handler.filters[-1])
    assert "s3cret-Passw0rd" not in caplog.text and MASK in caplog.text


# --- organizations -----------------------------------------------------------------------


def test_discovery_lists_only_the_users_orgs(world: MemoryWorld) -> None:
    from sync.setup.memory import MemoryDiscovery

    names = [o.unique_name for o in organizations.list_organizations(MemoryDiscovery(world, ALICE))]
    assert names == ["contoso", "fabrikam"]
    carol = organizations.list_organizations(MemoryDiscovery(world, "carol@fabrikam.example"))
    assert [o.unique_name for o in carol] == ["fabrikam"]


def test_connected_orgs_are_stored_beside_the_synchronizing_one(
    profile: Profile, world: MemoryWorld
) -> None:
    orgs = [o.info for o in world.orgs.values()]
    organizations.choose(
        profile, orgs, organizations.OrgChoice(_contoso(world).id, (_fabrikam(world).id,))
    )
    assert profile.synchronizing_org() == _contoso(world)
    assert profile.connected_orgs() == [_fabrikam(world)]
    with pytest.raises(SetupError) as error:
        organizations.choose(profile, orgs, organizations.OrgChoice("no-such-id"))
    assert error.value.field == "synchronizing"


def test_the_synchronizing_org_ticked_as_connected_too_is_said_not_dropped(
    profile: Profile, world: MemoryWorld
) -> None:
    """Issue 11, point 11: the page's choice was silently dropped; now it is refused, named."""
    orgs = [o.info for o in world.orgs.values()]
    contoso = _contoso(world)
    both = organizations.OrgChoice(contoso.id, (contoso.id, _fabrikam(world).id))
    with pytest.raises(SetupError) as error:
        organizations.choose(profile, orgs, both)
    assert error.value.field == "connected"
    assert contoso.friendly_name in str(error.value.msg)
    assert profile.synchronizing_org() is None  # nothing stored


def test_changing_the_synchronizing_org_needs_confirmation_and_retires_links(
    profile: Profile, world: MemoryWorld, database: Database
) -> None:
    orgs = [o.info for o in world.orgs.values()]
    contoso, fabrikam = _contoso(world), _fabrikam(world)
    _choose_contoso(profile, world)
    profile.set(keys.INSTANCE_DECIDED, True)
    with database.session() as session:
        session.add(Link(org=contoso.id, kind="contacts", crm_id="c1", mailbox_id="m1"))
        session.add(SyncToken(org=contoso.id, kind="contacts", side="crm", token="delta"))
    with pytest.raises(organizations.NeedsConfirmation) as asked:
        organizations.choose(profile, orgs, organizations.OrgChoice(fabrikam.id))
    assert "Contoso Sandbox" in str(asked.value.msg) and "Fabrikam Sandbox" in str(asked.value.msg)
    assert profile.synchronizing_org() == contoso  # nothing changed yet

    organizations.choose(profile, orgs, organizations.OrgChoice(fabrikam.id), confirmed=True)
    assert profile.synchronizing_org() == fabrikam
    with database.session() as session:
        assert [link.state for link in session.query(Link)] == ["retired"]
        assert session.query(SyncToken).count() == 0
    assert profile.current_step() == "mailbox"  # the mailbox and the claim are asked again


# --- mailbox ------------------------------------------------------------------------------


def test_mailbox_form_errors_name_each_field() -> None:
    with pytest.raises(mailbox.FormErrors) as error:
        mailbox.parse_mailbox_form({"type": "pop3", "email": "nope", "pop3_port": "99999"})
    assert set(error.value.errors) == {"email", "pop3_host", "smtp_host", "pop3_port", "password"}
    with pytest.raises(mailbox.FormErrors) as error:
        mailbox.parse_mailbox_form(
            {"type": "exchange", "email": ALICE, "ews_url": "http://mail.example/EWS"}
        )
    assert set(error.value.errors) == {"ews_url"}
    config, secrets = mailbox.parse_mailbox_form(
        {"type": "exchange", "email": ALICE, "auth": "basic", "username": "alice", "password": "x"}
    )
    assert config.auth == "basic" and secrets == {"mailbox_password": "x"}
    # a stored password is kept when the field is left empty
    config, secrets = mailbox.parse_mailbox_form(
        {"type": "pop3", "email": ALICE, "pop3_host": "pop.example", "smtp_host": "smtp.example"},
        {"mailbox_password": "old"},
    )
    assert (config.pop3_port, config.smtp_port) == (995, 587)


def test_an_address_mapped_to_another_crm_user_is_refused_naming_that_user(
    world: MemoryWorld,
) -> None:
    directory = MemoryDirectory(world, _contoso(world).id, "bob@contoso.example")
    bob = directory.current_user()
    with pytest.raises(SetupError) as error:
        mailbox.check_mailbox_owner(directory, bob, ALICE)
    text = str(error.value.msg)
    assert "already used by another CRM user, Alice Wong" in text
    assert "ask your administrator" in text and error.value.field == "email"


def test_one_mailbox_per_user_and_a_missing_record_is_explained(world: MemoryWorld) -> None:
    directory = MemoryDirectory(world, _contoso(world).id, ALICE)
    alice = directory.current_user()
    with pytest.raises(SetupError) as error:
        mailbox.check_mailbox_owner(directory, alice, "alice.private@example.org")
    assert "Your CRM mailbox record is for alice@contoso.example" in str(error.value.msg)
    org = world.orgs[_contoso(world).id]
    org.mailboxes = {k: m for k, m in org.mailboxes.items() if m.owner_id != alice.id}
    with pytest.raises(SetupError) as error:
        mailbox.check_mailbox_owner(directory, alice, ALICE)
    assert "has no mailbox record" in str(error.value.msg)


def test_delivery_methods_are_set_only_with_consent(world: MemoryWorld) -> None:
    fabrikam = _fabrikam(world)
    directory = MemoryDirectory(world, fabrikam.id, ALICE)
    record = mailbox.check_mailbox_owner(directory, directory.current_user(), ALICE)
    assert [s.is_this_client for s in mailbox.delivery_status(record)] == [False] * 3
    with pytest.raises(SetupError) as error:
        mailbox.set_to_this_client(directory, record, consent=False)
    assert error.value.field == "consent"
    updated = mailbox.set_to_this_client(directory, record, consent=True)
    # appointments, contacts and tasks only: the email methods are never written
    assert [s.is_this_client for s in mailbox.delivery_status(updated)] == [False, False, True]
    assert world.orgs[fabrikam.id].mailboxes[record.id] == updated

    world.orgs[fabrikam.id].may_edit_mailboxes = False
    with pytest.raises(SetupError) as error:
        mailbox.set_to_this_client(directory, record, consent=True)
    assert "Ask your administrator" in str(error.value.msg)


def test_connection_failures_say_what_to_do(profile: Profile, world: MemoryWorld) -> None:
    _choose_contoso(profile, world)
    directory = MemoryDirectory(world, _contoso(world).id, ALICE)
    user = directory.current_user()
    tester = MemoryTester(world)
    pop3 = MailboxConfig(
        type="pop3", email=ALICE, pop3_host="pop.example", smtp_host="smtp.example"
    )
    with pytest.raises(SetupError) as error:
        mailbox.save_mailbox(profile, directory, tester, user, pop3, {"mailbox_password": "bad"})
    assert "refused the sign-in" in str(error.value.msg)
    assert profile.mailbox() is None and profile.vault.get("mailbox_password") is None
    world.unreachable_hosts.add("pop.example")
    with pytest.raises(SetupError) as error:
        mailbox.save_mailbox(
            profile, directory, tester, user, pop3, {"mailbox_password": "alice-Sandbox-1"}
        )
    assert "could not be reached" in str(error.value.msg) and error.value.field == "pop3_host"
    world.unreachable_hosts.clear()
    mailbox.save_mailbox(
        profile, directory, tester, user, pop3, {"mailbox_password": "alice-Sandbox-1"}
    )
    assert profile.mailbox() == pop3 and profile.step_done("mailbox")
    assert profile.vault.get("mailbox_password") == "alice-Sandbox-1"
    assert "alice-Sandbox-1" not in str(profile.get(keys.MAILBOX))


def test_methods_not_this_client_raise_an_alert(profile: Profile, world: MemoryWorld) -> None:
    fabrikam = _fabrikam(world)
    directory = MemoryDirectory(world, fabrikam.id, ALICE)
    user = directory.current_user()
    mailbox.save_mailbox(profile, directory, MemoryTester(world), user, _exchange_config(), {})
    assert [a.code for a in open_alerts(profile.database)] == ["mailbox-method-not-set"]


# --- instance ------------------------------------------------------------------------------


def _second_install(tmp_path: Path, world: MemoryWorld, name: str) -> Profile:
    other_dir = tmp_path / name
    other_dir.mkdir()
    other = Profile(open_database(other_dir), other_dir)
    other.set(keys.INSTANCE_NAME, name)
    _choose_contoso(other, world)
    return other


def test_claim_free_is_taken_and_another_holder_is_asked_about(
    profile: Profile, world: MemoryWorld, tmp_path: Path
) -> None:
    _choose_contoso(profile, world)
    profile.set(keys.INSTANCE_NAME, "desk-pc")
    store = MemoryClaims(world, ALICE)
    assert instance.claim_state(store, profile.instance_id).status == instance.NONE
    state = instance.decide(profile, store, take_over=None)
    assert state.status == instance.MINE and profile.messaging_enabled

    laptop = _second_install(tmp_path, world, "laptop")
    try:
        with pytest.raises(SetupError) as asked:
            instance.decide(laptop, store, take_over=None)
        assert "Another computer (desk-pc)" in str(asked.value.msg)

        state = instance.decide(laptop, store, take_over=False)  # No: works without messaging
        assert state.status == instance.OTHER and not laptop.messaging_enabled
        assert laptop.get(keys.MESSAGING_DISABLED_REASON) == (
            "This computer does not synchronize messaging data; desk-pc does."
        )
        assert laptop.step_done("instance")
        assert instance.ensure_still_synchronizing(profile, store)  # desk-pc keeps it
        assert not instance.ensure_still_synchronizing(laptop, store)
        assert open_alerts(laptop.database) == []  # a chosen "No" is not an alert

        state = instance.decide(laptop, store, take_over=True)  # Yes: the laptop takes over
        assert state.status == instance.MINE and laptop.messaging_enabled
        assert not instance.ensure_still_synchronizing(profile, store)
        (alert,) = open_alerts(profile.database)
        assert alert.code == "instance-claim-lost"
        assert alert.title == "Another computer (laptop) is now the synchronizing computer."
        assert not profile.messaging_enabled
        assert instance.ensure_still_synchronizing(laptop, store)
    finally:
        laptop.database.dispose()


def test_a_claim_changed_between_read_and_write_is_not_overwritten(
    profile: Profile, world: MemoryWorld
) -> None:
    _choose_contoso(profile, world)
    store = MemoryClaims(world, ALICE)

    class RacingStore:
        """Reads nothing, but another computer writes just before our take."""

        def read(self) -> ClaimInfo | None:
            return None

        def take(self, claim: ClaimInfo, expected: ClaimInfo | None) -> ClaimInfo:
            store.take(ClaimInfo("other-id", "fast-pc"), None)
            return store.take(claim, expected)

    with pytest.raises(SetupError) as error:
        instance.decide(profile, RacingStore(), take_over=True)
    assert "fast-pc" in str(error.value.msg)
    assert store.read() == ClaimInfo("other-id", "fast-pc")
    assert not profile.step_done("instance")


# --- choices -------------------------------------------------------------------------------


def test_filters_become_odata_and_counts_come_from_the_crm(world: MemoryWorld) -> None:
    me = "00000001-0000-0000-0000-000000000000"
    conditions = choices.BY_SLUG["my-active-contacts"].conditions
    assert choices.to_odata(conditions, me) == f"_ownerid_value eq {me} and statecode eq 0"
    assert choices.to_odata([("fullname", "eq", "O'Neil")], me) == "fullname eq 'O''Neil'"
    with pytest.raises(ValueError):
        choices.to_odata([("x) or (1", "eq", 1)], me)
    org = world.orgs[_contoso(world).id]
    org.counts[f"contacts?_ownerid_value eq {me} and statecode eq 0"] = 42
    directory = MemoryDirectory(world, org.info.id, ALICE)
    assert choices.count_for(directory, "my-active-contacts", me) == 42
    assert choices.count_for(directory, "all-active-contacts", me) == 0


def test_choices_are_validated_and_stored(profile: Profile) -> None:
    assert choices.current_choices(profile).filters == (
        "my-active-contacts",
        "my-appointments",
        "my-open-tasks",
    )
    with pytest.raises(SetupError) as error:
        choices.parse_choices({"interval_seconds": "7"}, [])
    assert error.value.field == "interval_seconds"
    with pytest.raises(SetupError):
        choices.parse_choices({}, ["no-such-filter"])
    with pytest.raises(SetupError):
        choices.parse_choices({"tracking": "everything"}, [])
    picked = choices.parse_choices(
        {"tracking": "all", "interval_seconds": "900", "direction_tasks": "to_mailbox"},
        ["my-active-contacts", "offline-my-accounts"],
    )
    choices.save_choices(profile, picked)
    stored = choices.current_choices(profile)
    assert stored.filters == ("my-active-contacts", "offline-my-accounts")
    assert stored.tracking == "all" and stored.interval_seconds == 900
    assert stored.directions == {"contacts": "both", "appointments": "both", "tasks": "to_mailbox"}
    assert profile.get("kinds") == ["contacts"]
    assert profile.step_done("choices")
