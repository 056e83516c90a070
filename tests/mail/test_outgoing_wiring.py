"""Outgoing CRM email through the messaging job: chosen with `configure --send-crm-email`, run
by `sync --once`, with no browser (issue 8 part 4, and the job's per-run method check).

The stage itself is proven in test_outgoing*.py and tests/reliability/test_outgoing_kill.py;
here the whole path: the profile's choice, the CRM mailbox record's outgoing method (this
client), the email in Pending Send sent once to Bob's sandbox inbox and marked Sent with the
Message-Id the mailbox used (email.md: statuscode 3 Sent).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import run
from tests.sandbox_process import SandboxProcess, set_up_by_cli, start_sandbox_process

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    running = start_sandbox_process(tmp_path_factory.mktemp("sandbox"))
    yield running
    running.stop()


def _pending(sandbox: SandboxProcess, subject: str) -> str:
    with sandbox.crm(ALICE) as crm:
        me = crm.get("WhoAmI").json()["UserId"]
        made = crm.post(
            "emails",
            json={
                "subject": subject,
                "description": f"<p>{subject}</p>",
                "email_activity_parties": [
                    {
                        "participationtypemask": 1,
                        "partyid_systemuser@odata.bind": f"/systemusers({me})",
                    },
                    {"participationtypemask": 2, "addressused": BOB},
                ],
            },
            headers={"Prefer": "return=representation"},
        )
        made.raise_for_status()
        email_id = made.json()["activityid"]
        crm.post(
            f"emails({email_id})/Microsoft.Dynamics.CRM.SendEmail", json={"IssueSend": True}
        ).raise_for_status()
        return str(email_id)


def test_send_crm_email_goes_out_once_from_sync_once(
    sandbox: SandboxProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = tmp_path / "data"
    common = set_up_by_cli(sandbox, data_dir, ALICE, "--send-crm-email")
    subject = f"Quote {time.time_ns()}"
    email_id = _pending(sandbox, subject)

    assert run.main(["sync", "--once", *common]) == 0, capsys.readouterr().err
    assert run.main(["sync", "--once", *common]) == 0  # a second run sends nothing again

    with sandbox.crm(ALICE) as crm:
        row = crm.get(f"emails({email_id})?$select=statuscode,messageid").json()
    assert row["statuscode"] == 3 and row["messageid"]
    inbox = sandbox.mailbox(BOB).inbox
    received = [m for m in inbox.filter(subject__contains=subject)]
    assert len(received) == 1
    assert received[0].message_id == row["messageid"]


def test_kind_chooses_which_stages_run(
    sandbox: SandboxProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`sync --once --kind K` runs only K: `contacts` leaves the CRM email pending; `outgoing`
    sends it and syncs no contacts; `email` (tracking) is accepted as a kind too."""
    from sync.runs import recent_runs
    from sync.store.db import open_database

    data_dir = tmp_path / "data"
    common = set_up_by_cli(sandbox, data_dir, ALICE, "--send-crm-email")
    subject = f"Kind {time.time_ns()}"
    email_id = _pending(sandbox, subject)

    def status() -> int:
        with sandbox.crm(ALICE) as crm:
            return int(crm.get(f"emails({email_id})?$select=statuscode").json()["statuscode"])

    assert run.main(["sync", "--once", *common, "--kind", "contacts"]) == 0
    assert status() == 6  # Pending Send: the outgoing stage did not run
    assert run.main(["sync", "--once", *common, "--kind", "outgoing"]) == 0
    assert status() == 3
    assert run.main(["sync", "--once", *common, "--kind", "email"]) == 0
    database = open_database(data_dir)
    try:
        contacts_run, outgoing_run, email_run = reversed(recent_runs(database, limit=3))
    finally:
        database.dispose()
    assert "contacts" in contacts_run.counts and "outgoing" not in contacts_run.counts
    assert "contacts" not in outgoing_run.counts and "outgoing" in outgoing_run.counts
    assert set(email_run.counts) <= {"email"}, email_run.counts
