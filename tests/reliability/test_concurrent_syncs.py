"""Issue 14, point 1: syncs of one data directory started at the same time, as processes.

Two `sync --once` from cron, or the server's scheduler and a `sync --once`, once made 100 to
600 extra mailbox copies. Each test here starts real `run.py` processes against one sandbox
process, then counts both sides from the sandbox itself: every CRM contact in the filter has
exactly one mailbox copy, and nothing is lost.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import run
from sync.auth import discovery_scope, provider_from_config
from sync.settings import set_setting
from sync.store.db import open_database
from sync.store.lock import hold, holder_of
from tests.auth.helpers import answer_of, sign_in
from tests.helpers import ROOT, stop_process
from tests.sandbox_process import SandboxProcess, start_sandbox_process

ALICE = "alice@contoso.example"
MARK = "Concurrent"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    running = start_sandbox_process(tmp_path_factory.mktemp("sandbox"))
    yield running
    running.stop()


def set_up(sandbox: SandboxProcess, data_dir: Path) -> None:
    """A data directory signed in as alice (the sandbox's sign-in, scripted) and configured
    with `run.py configure`: contacts only, "my active contacts"."""
    info = sandbox.info
    config = {"provider": "sandbox", "plaintext": True}
    provider = provider_from_config(config, data_dir, info)
    flow = provider.begin(
        "http://127.0.0.1:8765/signin/callback", [discovery_scope(info["discovery_url"])]
    )
    with requests.Session() as browser:
        browser.verify, browser.trust_env = info["identity_ca_file"], False
        answer = sign_in(browser, flow["auth_uri"], ALICE, sandbox.password(ALICE))
        provider.complete(flow, answer_of(answer))
    database = open_database(data_dir)
    set_setting(database, "token_cache_plaintext_consent", True)
    set_setting(database, "account_upn", ALICE)
    set_setting(database, "auth", {**config, "username": ALICE})
    set_setting(database, "mode", "sandbox")
    database.dispose()
    code = run.main(
        [
            "configure",
            "--data-dir",
            str(data_dir),
            "--sandbox-json",
            str(sandbox.json_file),
            "--org",
            "contoso",
            "--mailbox-type",
            "exchange",
            "--email",
            ALICE,
            "--ews-url",
            info["ews_url"],
            "--filters",
            "my-active-contacts",
            "--take-over",
            "yes",
            "--set-methods",
        ]
    )
    assert code == 0


def add_crm_contacts(sandbox: SandboxProcess, prefix: str, n: int) -> None:
    """New active contacts of alice's, as another CRM user's import would make them."""
    with sandbox.crm(ALICE) as crm:
        for i in range(n):
            answer = crm.post("contacts", json={"firstname": prefix, "lastname": f"{MARK} {i}"})
            assert answer.status_code == 204, answer.text


def crm_markers(sandbox: SandboxProcess) -> Counter[str]:
    """firstname + lastname of alice's concurrent-test contacts in the CRM."""
    found: Counter[str] = Counter()
    with sandbox.crm(ALICE) as crm:
        url: str | None = (
            f"contacts?$select=firstname,lastname&$filter=startswith(lastname,'{MARK}')"
        )
        while url:
            page = crm.get(url, headers={"Prefer": "odata.maxpagesize=500"}).json()
            found.update(f"{r['firstname']} {r['lastname']}" for r in page["value"])
            url = page.get("@odata.nextLink")
    return found


def mailbox_markers(sandbox: SandboxProcess) -> Counter[str]:
    """The same names among alice's mailbox contacts (straight from the sandbox EWS)."""
    account = sandbox.mailbox(ALICE)
    query = account.contacts.all().only("given_name", "surname")
    return Counter(
        f"{c.given_name} {c.surname}" for c in query if (c.surname or "").startswith(MARK)
    )


def sync_once(data_dir: Path, sandbox: SandboxProcess, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "sync",
            "--once",
            "--data-dir",
            str(data_dir),
            "--sandbox-json",
            str(sandbox.json_file),
            "--wait",
            "300",
        ],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def assert_one_copy_each(sandbox: SandboxProcess) -> int:
    in_crm, in_mailbox = crm_markers(sandbox), mailbox_markers(sandbox)
    assert all(n == 1 for n in in_crm.values()), "a duplicate in the CRM"
    extra = {name: n for name, n in in_mailbox.items() if n > 1}
    assert not extra, f"mailbox copies made twice: {extra}"
    assert set(in_mailbox) == set(in_crm), set(in_crm) ^ set(in_mailbox)
    return len(in_crm)


def test_concurrent_sync_once_processes_make_one_copy_each(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    """10 rounds: new CRM contacts, then 2 to 4 `sync --once` started with random offsets.
    Each waits for the one writing, then finds nothing left to do."""
    data_dir = tmp_path / "data"
    set_up(sandbox, data_dir)
    rng = random.Random(14)
    log = tmp_path / "syncs.log"
    total = 0
    for round_ in range(10):
        add_crm_contacts(sandbox, f"R{round_}", 5)
        total += 5
        children = []
        for _ in range(2 + round_ % 3):
            children.append(sync_once(data_dir, sandbox, log))
            time.sleep(rng.uniform(0, 0.3))
        codes = [child.wait(timeout=300) for child in children]
        assert codes == [0] * len(children), log.read_text()[-3000:]
    assert assert_one_copy_each(sandbox) == total


def test_serve_and_sync_once_together_make_one_copy_of_a_thousand(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    """The server's first scheduled run and a `sync --once` over 1,000 new CRM contacts."""
    data_dir = tmp_path / "data"
    set_up(sandbox, data_dir)
    before = len(crm_markers(sandbox))
    add_crm_contacts(sandbox, "Big", 1000)
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--sandbox-json",
            str(sandbox.json_file),
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        time.sleep(1.0)
        child = sync_once(data_dir, sandbox, tmp_path / "sync.log")
        assert child.wait(timeout=600) == 0, (tmp_path / "sync.log").read_text()[-3000:]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and holder_of(data_dir, "messaging") is not None:
            time.sleep(0.5)  # the server's run, if it came second
        runs = status_runs(data_dir)
        assert any(r["trigger"] == "cli" and r["outcome"] == "ok" for r in runs), runs
    finally:
        stop_process(server)
    assert assert_one_copy_each(sandbox) == before + 1000


def status_runs(data_dir: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "status", "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    runs: list[dict[str, Any]] = json.loads(out)["runs"]
    return runs


def test_sync_once_exits_4_naming_the_holder_when_the_wait_runs_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    open_database(data_dir).dispose()
    held, done = threading.Event(), threading.Event()

    def other_writer() -> None:  # another thread: the lock is re-entrant for its holder only
        with hold(data_dir, "messaging", what="serve (scheduled sync)"):
            held.set()
            done.wait(30)

    holder = threading.Thread(target=other_writer)
    holder.start()
    try:
        assert held.wait(10)
        code = run.main(["sync", "--once", "--data-dir", str(data_dir), "--wait", "0.3"])
    finally:
        done.set()
        holder.join()
    err = capsys.readouterr().err
    assert code == run.EXIT_BUSY == 4
    assert "serve (scheduled sync)" in err and "waited 0.3 s" in err


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    """A process killed outright (SIGKILL) leaves no stale lock: the kernel drops it."""
    script = (
        "import sys, time; from pathlib import Path; from sync.store.lock import hold\n"
        "with hold(Path(sys.argv[1]), 'messaging', what='a test holder'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        holder = holder_of(tmp_path, "messaging")
        assert holder is not None and (holder.pid, holder.what) == (child.pid, "a test holder")
        from sync.store.lock import Busy

        with pytest.raises(Busy, match="a test holder"), hold(tmp_path, "messaging", wait=0.2):
            pass
    finally:
        child.kill()
        child.wait()
    assert holder_of(tmp_path, "messaging") is None
    with hold(tmp_path, "messaging", wait=0):
        assert holder_of(tmp_path, "messaging") is not None
