"""`run.py offline` end to end (issue 12 part 5), with no browser: a data directory set up by
`signin` and `configure` (an offline filter among the messaging ones), then `--go-offline`,
an edit made offline, `--status --json`, and `--go-online`, whose edit reaches the sandbox CRM
(read back over HTTP as a script would)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import run
from sync.offline.connect import offline_service
from sync.sandbox_profile import read_info
from sync.store.db import open_database
from tests.sandbox_process import SandboxProcess, set_up_by_cli, start_sandbox_process

ALICE = "alice@contoso.example"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    running = start_sandbox_process(tmp_path_factory.mktemp("sandbox"))
    yield running
    running.stop()


def test_go_offline_edit_and_go_online_from_the_command_line(
    sandbox: SandboxProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "data"
    common = set_up_by_cli(
        sandbox, data_dir, ALICE, filters="my-active-contacts,offline-my-contacts"
    )
    capsys.readouterr()

    assert run.main(["offline", "--go-offline", *common]) == 0
    capsys.readouterr()
    assert run.main(["offline", "--status", "--json", *common]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["mode"] == "offline" and status["rows"]["contacts"] > 0

    database = open_database(data_dir)
    try:
        service = offline_service(database, data_dir, read_info(sandbox.json_file))
        store = service.store()
        row = store.list("contacts", page_size=1).records[0]
        title = f"Offline {uuid.uuid4().hex[:8]}"
        store.update("contacts", row.id, {"jobtitle": title})
    finally:
        database.dispose()

    assert run.main(["offline", "--go-online", *common]) == 0
    capsys.readouterr()
    assert run.main(["offline", "--status", "--json", *common]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["mode"] == "online" and status["pending"] == 0
    with sandbox.crm(ALICE) as crm:
        answer = crm.get(f"contacts({row.id})", params={"$select": "jobtitle"}).json()
    assert answer["jobtitle"] == title
