"""The sandbox servers in a process of their own (`run.py sandbox --json`), for the tests that
run the app or the command line as separate processes (browser, command line, reliability)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from tests.helpers import stop_process

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class SandboxProcess:
    """`run.py sandbox --json` in a subprocess: its describe() JSON, saved to `json_file`."""

    process: subprocess.Popen[str]
    json_file: Path
    info: dict[str, Any]

    def user(self, upn: str) -> dict[str, Any]:
        return next(u for u in self.info["users"] if u["upn"] == upn)

    def password(self, upn: str) -> str:
        return str(self.user(upn)["password"])

    def crm(self, upn: str, org: str = "contoso") -> httpx.Client:
        """An HTTP client on the org's Web API with the user's bearer token (as a script would)."""
        api = next(o["api_url"] for o in self.info["organizations"] if o["unique_name"] == org)
        return httpx.Client(
            base_url=api,
            headers={
                "Authorization": f"Bearer {self.user(upn)['token']}",
                "Accept": "application/json",
                "OData-Version": "4.0",
            },
            timeout=30,
        )

    def mailbox(self, upn: str) -> Any:
        """An exchangelib Account on the user's sandbox mailbox (Basic auth, the sandbox CA)."""
        from exchangelib import BASIC, DELEGATE, Account, Configuration, Credentials, Version
        from exchangelib.version import EXCHANGE_2016

        from sandbox.ews.client_tls import trust_ca_for_exchangelib

        trust_ca_for_exchangelib(self.info["ews_ca_file"])
        config = Configuration(
            service_endpoint=self.info["ews_url"],
            credentials=Credentials(upn, self.password(upn)),
            auth_type=BASIC,
            version=Version(build=EXCHANGE_2016),
        )
        return Account(upn, config=config, autodiscover=False, access_type=DELEGATE)

    def stop(self) -> None:
        stop_process(self.process)


def start_sandbox_process(work_dir: Path, timeout: float = 60) -> SandboxProcess:
    """Start the sandbox servers in their own process and read the JSON line it prints."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / "sandbox.log", "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "run.py"),
                "sandbox",
                "--json",
                "--port",
                "0",
                "--data-dir",
                str(work_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert process.stdout is not None
    lines: list[str] = []
    got = threading.Event()

    def read_first_line(stream: IO[str]) -> None:
        lines.append(stream.readline())
        got.set()
        for _ in stream:  # keep draining (nothing more is expected)
            pass

    threading.Thread(target=read_first_line, args=(process.stdout,), daemon=True).start()
    got.wait(timeout)
    if not lines or not lines[0].startswith("{"):
        process.kill()
        process.wait()
        raise AssertionError(
            "the sandbox printed no JSON: " + (work_dir / "sandbox.log").read_text()[-3000:]
        )
    json_file = work_dir / "sandbox.json"
    json_file.write_text(lines[0])
    json_file.chmod(0o600)  # it holds bearer tokens and passwords
    return SandboxProcess(process, json_file, json.loads(lines[0]))


def set_up_by_cli(
    sandbox: SandboxProcess,
    data_dir: Path,
    upn: str = "alice@contoso.example",
    *configure: str,
    filters: str = "my-active-contacts",
) -> list[str]:
    """A data directory set up with no browser, as a script would: `run.py signin` (the device
    code flow, answered with the user's sandbox password) then `run.py configure` (Exchange
    through EWS, this computer synchronizing, `filters`, and `configure`'s extra options).
    Returns the options every later command of that data directory takes."""
    import run

    common = ["--data-dir", str(data_dir), "--sandbox-json", str(sandbox.json_file)]
    variable = "MBS_SET_UP_PASSWORD"
    os.environ[variable] = sandbox.password(upn)
    try:
        signed = run.main(
            ["signin", *common, "--user", upn, "--password-env", variable,
             "--allow-plaintext-cache"]
        )  # fmt: skip
    finally:
        del os.environ[variable]
    assert signed == 0, "run.py signin failed"
    configured = run.main(
        ["configure", *common, "--org", "contoso", "--mailbox-type", "exchange", "--email", upn,
         "--ews-url", sandbox.info["ews_url"], "--filters", filters, "--take-over", "yes",
         "--set-methods", *configure]
    )  # fmt: skip
    assert configured == 0, "run.py configure failed"
    return common
