"""The command line refuses bad input with the README's exit codes (2: bad input) and one
line that says what to do, before anything is stored (issue 14, point 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import run
from sync.settings import get_setting, set_setting
from sync.setup import adapters
from sync.setup.memory import demo_world, memory_ports
from sync.store.db import open_database
from tests.helpers import ROOT

ALICE = "alice@contoso.example"
EXCHANGE = ["--org", "contoso", "--mailbox-type", "exchange", "--email", ALICE]


@pytest.fixture
def signed_in(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    world = demo_world()
    monkeypatch.setattr(adapters, "default_ports", lambda profile, info: memory_ports(world, ALICE))
    database = open_database(data_dir)
    set_setting(database, "account_upn", ALICE)
    database.dispose()
    return data_dir


def _setting(data_dir: Path, key: str) -> object:
    database = open_database(data_dir)
    try:
        return get_setting(database, key)
    finally:
        database.dispose()


def test_an_unset_password_variable_is_bad_input(
    signed_in: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MBX_UNSET", raising=False)
    args = ["configure", "--data-dir", str(signed_in), *EXCHANGE, "--auth", "basic"]
    assert run.main([*args, "--username", "alice", "--password-env", "MBX_UNSET"]) == 2
    assert "error: The environment variable MBX_UNSET is not set" in capsys.readouterr().err
    assert _setting(signed_in, "mailbox") is None


def test_an_overlong_instance_name_is_refused_and_not_stored(
    signed_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["configure", "--data-dir", str(signed_in), *EXCHANGE]
    assert run.main([*args, "--instance-name", "x" * 100_000]) == 2
    assert "is one line of at most 100 characters" in capsys.readouterr().err
    assert _setting(signed_in, "instance_name") is None


def test_connecting_the_synchronizing_org_itself_is_refused(
    signed_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["configure", "--data-dir", str(signed_in), *EXCHANGE, "--connect", "contoso"]
    assert run.main(args) == 2
    assert "contoso is the synchronizing organization" in capsys.readouterr().err
    assert _setting(signed_in, "mailbox") is None


@pytest.mark.parametrize(
    "command",
    [
        ["sync", "--once"],
        ["configure", *EXCHANGE],
        ["serve", "--port", "0", "--no-sandbox"],
    ],
)
def test_a_missing_sandbox_description_is_bad_input_and_nothing_is_created(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing, data_dir = tmp_path / "no-such-sandbox.json", tmp_path / "data"
    code = run.main([*command, "--data-dir", str(data_dir), "--sandbox-json", str(missing)])
    assert code == 2
    assert f"error: The sandbox description {missing} does not exist" in capsys.readouterr().err
    assert not data_dir.exists()


def test_a_bad_fault_spec_is_a_usage_error_without_a_traceback(data_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "sandbox", "--faults", "429:every=often"]
        + ["--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=60,
    )
    assert done.returncode == 2
    assert "bad fault spec '429:every=often': every must be a number" in done.stderr
    assert "Traceback" not in done.stderr
