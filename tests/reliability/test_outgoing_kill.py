"""Outgoing CRM email with the agent killed outright (SIGKILL) between sending and marking Sent.

A child process (`python -m tests.reliability.outgoing_agent`) runs the outgoing stage against
the sandbox servers: the Dataverse Web API and EWS (sending between sandbox mailboxes) or an
aiosmtpd server. The sandbox holds the request that marks the email Sent (SendEmail with
IssueSend false): the message has gone out, the CRM does not know yet. The child is killed while
it waits, and the held request is then either dropped (the mark never happened) or applied for
a client that no longer exists (the mark happened, its answer was lost). The child is started
again until it exits cleanly, and once more: the recipient has the message exactly once, and
the CRM email is Sent with that message's Message-Id.

The hold is a wrapper around the sandbox's request entry point (as test_kill_restart.py's `Held`
points): the `slow` fault would also delay the request, but only for a fixed time, and cannot
say when the agent is waiting nor drop the write after the kill.
"""

from __future__ import annotations

import email
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import Any

import pytest

from sandbox.dataverse.api import error_answer
from sandbox.dataverse.errors import ODataError
from tests.e2e.harness import ALICE, ORG_ID, SandboxPair, start_pair

ROOT = Path(__file__).resolve().parents[2]
BOB = "bob@contoso.example"
GUARD = 60.0
"""Seconds after which a run or a held request is given up as hung (a guard, not a measure)."""
MARK = re.compile(rb'"IssueSend"\s*:\s*false')
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.mailbox.conftest import _smtp_controller

    controller, state = _smtp_controller(tmp_path_factory.mktemp("smtp"))
    try:
        yield state
    finally:
        controller.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SandboxPair]:
    with start_pair(tmp_path / "sandbox") as running:
        yield running


@dataclass
class HeldMark:
    """Holds the first SendEmail(IssueSend false) in the sandbox Dataverse until released;
    then applies it (`apply`) or answers 503 without applying it."""

    pair: SandboxPair
    apply: bool

    def __post_init__(self) -> None:
        self.held, self.release, self.done = threading.Event(), threading.Event(), threading.Event()
        owner, inner = self.pair.dataverse, self.pair.dataverse.serve
        taken = threading.Lock()

        def gate(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
            if not MARK.search(body) or not taken.acquire(blocking=False):
                return inner(method, target, headers, body)
            try:
                self.held.set()
                self.release.wait(GUARD)
                if self.apply:
                    return inner(method, target, headers, body)
                lost = ODataError(503, "0x80040216", "The service is temporarily unavailable.")
                return error_answer(lost), "dataverse", None, target
            finally:
                self.done.set()

        owner.serve = gate  # type: ignore[method-assign]

    def let_go(self) -> None:
        self.release.set()
        if self.held.is_set():
            assert self.done.wait(GUARD), "the held request never finished"
        del self.pair.dataverse.serve  # the server's own method again


def write_address(pair: SandboxPair, data_dir: Path, path: Path, smtp: Any) -> Path:
    """Where the child finds the sandbox, its token, the SMTP server and its local database."""
    address = {
        "api_url": pair.dataverse.api_url("contoso"),
        "ews_url": pair.ews.url,
        "ews_ca_file": pair.ews.ca_file,
        "token": pair.token,
        "upn": ALICE,
        "me": pair.me,
        "org_id": ORG_ID,
        "data_dir": str(data_dir),
        "smtp": {
            "host": smtp.host,
            "port": smtp.port,
            "username": smtp.user,
            "password": smtp.password,
            "ca_file": smtp.ca_file,
        },
    }
    path.write_text(json.dumps(address))
    path.chmod(0o600)  # a bearer token and a password
    return path


def spawn(address: Path, transport: str, log: Path) -> subprocess.Popen[bytes]:
    with log.with_suffix(".out").open("wb") as out, log.with_suffix(".err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.outgoing_agent", str(address), transport],
            cwd=ROOT,
            stdout=out,
            stderr=err,
        )


def run_killed(address: Path, transport: str, hold: HeldMark, log: Path) -> None:
    child = spawn(address, transport, log)
    try:
        give_up = time.monotonic() + GUARD
        while not hold.held.is_set() and child.poll() is None and time.monotonic() < give_up:
            time.sleep(0.005)
        assert hold.held.is_set(), log.with_suffix(".err").read_text()[-2000:]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=GUARD)
        assert child.returncode == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        hold.let_go()


def run_to_end(address: Path, transport: str, log: Path) -> dict[str, Any]:
    child = spawn(address, transport, log)
    try:
        child.wait(timeout=GUARD)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, log.with_suffix(".err").read_text()[-3000:]
    return dict(json.loads(log.with_suffix(".out").read_text()))


def pending_email(pair: SandboxPair, subject: str) -> str:
    """A draft to Bob, then SendEmail with IssueSend true: Pending Send, as Dynamics makes it."""
    client = pair.crm_client()
    email_id, _, _ = client.create(
        "emails",
        {
            "subject": subject,
            "description": "<p>Please find the offer.</p>",
            "email_activity_parties": [
                {
                    "participationtypemask": 1,
                    "partyid_systemuser@odata.bind": f"/systemusers({pair.me})",
                },
                {"participationtypemask": 2, "addressused": BOB},
            ],
        },
    )
    client.request(
        "POST",
        f"emails({email_id})/Microsoft.Dynamics.CRM.SendEmail",
        json_body={"IssueSend": True},
    )
    return email_id


def delivered_ids(pair: SandboxPair, transport: str, smtp: Any, subject: str) -> list[str]:
    """The Message-Ids of the messages with `subject` the recipient got."""
    if transport == "ews":
        mbx = pair.ews.mailbox(BOB)
        with mbx.lock:
            inbox = mbx.dist("inbox").id
            return [
                str(i.value("InternetMessageId"))
                for i in mbx.items.values()
                if i.folder_id == inbox and i.value("Subject") == subject
            ]
    messages = [
        email.message_from_bytes(e.original_content, policy=policy.default) for e in smtp.messages()
    ]
    return [str(m["Message-Id"]) for m in messages if m["Subject"] == subject]


@pytest.mark.parametrize("transport", ["ews", "smtp"])
@pytest.mark.parametrize("mark_applied", [False, True], ids=["mark-lost", "mark-applied"])
def test_killed_between_send_and_mark_the_recipient_gets_it_once(
    pair: SandboxPair, smtp_server: Any, tmp_path: Path, transport: str, mark_applied: bool
) -> None:
    smtp_server.reset()
    subject = f"Offer via {transport} ({'applied' if mark_applied else 'lost'})"
    email_id = pending_email(pair, subject)
    address = write_address(pair, tmp_path / "agent", tmp_path / "address.json", smtp_server)

    run_killed(address, transport, HeldMark(pair, apply=mark_applied), tmp_path / "run1")
    assert len(delivered_ids(pair, transport, smtp_server, subject)) == 1  # it went out

    nothing = {"sent": 0, "failed": 0, "already_sent": 0, "errors": 0}
    first = run_to_end(address, transport, tmp_path / "run2")
    if mark_applied:  # the email left Pending Send with the lost answer: nothing to do
        assert first == nothing
    else:  # marked, not sent; a further run has nothing left to do
        assert first == {**nothing, "already_sent": 1}
        assert run_to_end(address, transport, tmp_path / "run3") == nothing
    (message_id,) = delivered_ids(pair, transport, smtp_server, subject)
    row = pair.crm_client().get("emails", email_id, select=["statuscode", "messageid"])
    assert (row["statuscode"], row["messageid"]) == (3, message_id)
