"""`run.py configure`: the wizard's steps from the command line, same checks and messages."""

from __future__ import annotations

from pathlib import Path

import pytest

import run
from sync.runs import open_alerts
from sync.settings import get_setting, set_setting
from sync.setup import adapters, user_filters
from sync.setup.memory import MemoryWorld, demo_world, memory_ports
from sync.setup.ports import ClaimInfo
from sync.setup.profile import Profile
from sync.setup.vault import PLAINTEXT_CONSENT
from sync.store.db import open_database

ALICE = "alice@contoso.example"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> MemoryWorld:
    world = demo_world()
    monkeypatch.setattr(adapters, "default_ports", lambda profile, info: memory_ports(world, ALICE))
    return world


def sign_in(data_dir: Path, upn: str = ALICE) -> None:
    database = open_database(data_dir)
    set_setting(database, "account_upn", upn)
    set_setting(database, PLAINTEXT_CONSENT, True)  # as signing in without a keyring records it
    database.dispose()


def configure(data_dir: Path, *extra: str) -> int:
    return run.main(["configure", "--data-dir", str(data_dir), *extra])


EXCHANGE = ["--org", "contoso", "--mailbox-type", "exchange", "--email", ALICE]


def test_configure_runs_every_step(
    data_dir: Path, world: MemoryWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    sign_in(data_dir)
    code = configure(
        data_dir,
        *EXCHANGE,
        "--connect",
        "fabrikam",
        "--ews-url",
        "https://mail.contoso.example/EWS/Exchange.asmx",
        "--filters",
        "my-active-contacts,my-open-tasks",
        "--tracking",
        "all",
        "--interval",
        "900",
        "--instance-name",
        "build-box",
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Synchronizing organization: Contoso Sandbox (contoso)" in out
    assert "Synchronizing computer: this one (build-box)" in out
    assert out.rstrip().endswith("Setup complete.")
    database = open_database(data_dir)
    try:
        profile = Profile(database, data_dir)
        assert profile.is_complete()
        assert [o.unique_name for o in profile.connected_orgs()] == ["fabrikam"]
        assert get_setting(database, "interval_seconds") == 900
        assert get_setting(database, "tracking_option") == "all"
        assert world.claims[ALICE].instance_name == "build-box"
    finally:
        database.dispose()


def test_configure_pop3_takes_the_password_from_the_environment(
    data_dir: Path, world: MemoryWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in(data_dir)
    monkeypatch.setenv("MBX_PASSWORD", "alice-Sandbox-1")
    code = configure(
        data_dir,
        "--org",
        "contoso",
        "--mailbox-type",
        "pop3",
        "--email",
        ALICE,
        "--pop3-host",
        "pop.contoso.example",
        "--smtp-host",
        "smtp.contoso.example",
        "--password-env",
        "MBX_PASSWORD",
    )
    assert code == 0
    secrets = (data_dir / "secrets.json").read_text()
    assert "alice-Sandbox-1" in secrets
    database = open_database(data_dir)
    try:
        assert "alice-Sandbox-1" not in str(get_setting(database, "mailbox"))
    finally:
        database.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--org", "nowhere", "--mailbox-type", "exchange", "--email", ALICE],
            "No organization named nowhere is available to you. Available: contoso, fabrikam.",
        ),
        (
            ["--org", "contoso", "--mailbox-type", "exchange", "--email", "bob@contoso.example"],
            "The mailbox bob@contoso.example is already used by another CRM user, Bob Kelly.",
        ),
        (
            [*EXCHANGE, "--ews-url", "http://mail.example/EWS/Exchange.asmx"],
            "The EWS address must start with https://",
        ),
        (
            [*EXCHANGE, "--auth", "basic", "--username", "alice"],
            "Enter the password.",
        ),
        ([*EXCHANGE, "--filters", "everything"], "Unknown filter: everything."),
        ([*EXCHANGE, "--add-filter", "tasks:Soon"], "Write a filter as KIND:NAME:FIELD OP"),
        (
            [*EXCHANGE, "--add-filter", "tasks:Soon:scheduledend le someday"],
            "Due: type a date like 2026-12-31, or today, today+7, today-30.",
        ),
        ([*EXCHANGE, "--interval", "5"], "Choose one of the offered intervals."),
    ],
)
def test_bad_input_exits_2_with_the_wizards_message(
    data_dir: Path,
    world: MemoryWorld,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    sign_in(data_dir)
    assert configure(data_dir, *args) == 2
    assert message in capsys.readouterr().err


def test_not_signed_in_is_refused(
    data_dir: Path, world: MemoryWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    assert configure(data_dir, *EXCHANGE) == 2
    assert "Sign in first" in capsys.readouterr().err


def test_missing_required_option_is_an_argparse_error(data_dir: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        configure(data_dir, "--org", "contoso")
    assert stop.value.code == 2


def test_take_over_must_be_answered_when_another_computer_holds_the_claim(
    data_dir: Path, world: MemoryWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    sign_in(data_dir)
    world.claims[ALICE] = ClaimInfo("other-install", "desk-pc")
    assert configure(data_dir, *EXCHANGE) == 2
    assert "Another computer (desk-pc) is the synchronizing computer." in capsys.readouterr().err

    assert configure(data_dir, *EXCHANGE, "--take-over", "no") == 0
    out = capsys.readouterr().out
    assert "This computer does not synchronize messaging data; desk-pc does." in out
    assert world.claims[ALICE].instance_name == "desk-pc"

    assert configure(data_dir, *EXCHANGE, "--take-over", "yes") == 0
    assert world.claims[ALICE].instance_id != "other-install"
    database = open_database(data_dir)
    try:
        assert get_setting(database, "messaging_enabled") is True
        assert open_alerts(database) == []
    finally:
        database.dispose()


def test_configure_adds_filters_of_ones_own_and_a_rerun_replaces_them(
    data_dir: Path, world: MemoryWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    sign_in(data_dir)
    own = "tasks:Due this week:_ownerid_value eq me;scheduledend le today+7"
    for _again in range(2):
        code = configure(data_dir, *EXCHANGE, "--filters", "my-active-contacts",
                         "--add-filter", own)  # fmt: skip
        assert code == 0, capsys.readouterr().err
    database = open_database(data_dir)
    try:
        profile = Profile(database, data_dir)
        [made] = user_filters.user_filters(profile)
        assert (made.kind, made.name, made.enabled) == ("tasks", "Due this week", True)
        assert made.conditions[1] == {"field": "scheduledend", "op": "le",
                                      "value": "today+7 days"}  # fmt: skip
        assert get_setting(database, "kinds") == ["contacts", "tasks"]
    finally:
        database.dispose()
