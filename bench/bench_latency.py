"""How soon a change reaches the other side, and what an idle hour costs (issue 9).

Method: the sandbox servers run in this process (their request log is read here); `run.py serve`
runs for alice in its own process on a data directory set up by `run.py signin` + `configure`
(a Graph mailbox by default), with the schedule at one hour, so only the change watchers can
bring a change within the measurement. After the first run has copied the seeded contacts:
- mailbox → CRM: `changes` times, a synced contact's job title is changed through the mailbox's
  own API (Graph, or EWS with `--mailbox ews`), and the clock runs until the CRM row shows it
  (polled every 0.1 s with a plain GET);
- CRM → mailbox: the same the other way;
- idle: for `idle_minutes` nothing changes; every request the serve process makes is counted
  from the sandbox's request log, by service, and scaled to an hour and to Graph's window of
  10 minutes (10,000 requests per 10 minutes per app and mailbox: throttling.md).
The changes are sequential (one in flight), as a person makes them. The bench's own polling
is not in the idle count (nothing polls then).

Usage: python bench/bench_latency.py [--small] [--mailbox graph|ews] [--changes N]
       [--idle-minutes M]      (prints one JSON object)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.launcher import RunningSandbox, start_sandbox  # noqa: E402

ALICE = "alice@contoso.example"
GRAPH_LIMIT_PER_10_MIN = 10_000
SEEDED = 20


def wait_for(predicate: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError("the change did not arrive in time")
        time.sleep(step)
    return found


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def figures(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "median_s": round(statistics.median(values), 3),
        "p95_s": round(percentile(values, 0.95), 3),
        "max_s": round(max(values), 3),
    }


class Services:
    """Plain HTTP clients on the sandbox, with alice's bearer token (what a script would use)."""

    def __init__(self, info: dict[str, Any]) -> None:
        user = next(u for u in info["users"] if u["upn"] == ALICE)
        auth = {"Authorization": f"Bearer {user['token']}"}
        api = next(o["api_url"] for o in info["organizations"] if o["unique_name"] == "contoso")
        self.crm = httpx.Client(
            base_url=api, headers={**auth, "Accept": "application/json"}, timeout=30
        )
        self.graph = httpx.Client(
            base_url=info["graph_url"] + "/", headers=auth, verify=info["graph_ca_file"], timeout=30
        )
        self.info = info

    def close(self) -> None:
        self.crm.close()
        self.graph.close()


def set_up(data_dir: Path, json_file: Path, info: dict[str, Any], mailbox: str) -> None:
    """`run.py signin` (device code, answered with the sandbox password) and `configure`,
    their output on stderr (stdout is the JSON)."""
    with contextlib.redirect_stdout(sys.stderr):
        _set_up(data_dir, json_file, info, mailbox)


def _set_up(data_dir: Path, json_file: Path, info: dict[str, Any], mailbox: str) -> None:
    import run

    user = next(u for u in info["users"] if u["upn"] == ALICE)
    common = ["--data-dir", str(data_dir), "--sandbox-json", str(json_file)]
    os.environ["MBS_BENCH_PASSWORD"] = user["password"]
    try:
        assert (
            run.main(
                [
                    "signin",
                    *common,
                    "--user",
                    ALICE,
                    "--password-env",
                    "MBS_BENCH_PASSWORD",
                    "--allow-plaintext-cache",
                ]
            )  # fmt: skip
            == 0
        )
    finally:
        del os.environ["MBS_BENCH_PASSWORD"]
    kind = ["--mailbox-type", "graph"] if mailbox == "graph" else [
        "--mailbox-type", "exchange", "--ews-url", info["ews_url"]]  # fmt: skip
    assert (
        run.main(
            [
                "configure",
                *common,
                "--org",
                "contoso",
                *kind,
                "--email",
                ALICE,
                "--filters",
                "my-active-contacts",
                "--take-over",
                "yes",
                "--set-methods",
                "--interval",
                "3600",
            ]
        )  # fmt: skip
        == 0
    )


def serve(data_dir: Path, json_file: Path) -> subprocess.Popen[str]:
    command = [sys.executable, str(ROOT / "run.py"), "serve", "--data-dir", str(data_dir)]
    command += ["--port", "0", "--sandbox-json", str(json_file)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    threading.Thread(target=lambda s=process.stderr: [None for _ in s], daemon=True).start()
    return process


def watching(data_dir: Path) -> bool:
    from sync.runs import recent_runs
    from sync.store.db import open_database
    from sync.watcher import read_status

    database = open_database(data_dir)
    try:
        ran = any(r.finished_at is not None for r in recent_runs(database, job="messaging"))
        states = [read_status(database, n).get("state") for n in ("mailbox", "crm")]
        return ran and states == ["watching", "watching"]
    finally:
        database.dispose()


class Mailbox:
    """The user's own edits in the mailbox, and reading a contact back."""

    def __init__(self, services: Services, kind: str, sandbox: RunningSandbox) -> None:
        self.services, self.kind, self.sandbox = services, kind, sandbox
        self._account: Any = None

    def account(self) -> Any:
        if self._account is None:
            from exchangelib import BASIC, DELEGATE, Account, Configuration, Credentials, Version
            from exchangelib.version import EXCHANGE_2016

            from sandbox.ews.client_tls import trust_ca_for_exchangelib

            info = self.services.info
            user = next(u for u in info["users"] if u["upn"] == ALICE)
            trust_ca_for_exchangelib(info["ews_ca_file"])
            config = Configuration(
                service_endpoint=info["ews_url"],
                credentials=Credentials(ALICE, user["password"]),
                auth_type=BASIC,
                version=Version(build=EXCHANGE_2016),
            )
            self._account = Account(ALICE, config=config, autodiscover=False, access_type=DELEGATE)
        return self._account

    def contacts(self, surname: str) -> list[str]:
        if self.kind == "graph":
            answer = self.services.graph.get("me/contacts", params={"$top": "1000"}).json()
            return [c["id"] for c in answer["value"] if c.get("surname") == surname]
        return [c.id for c in self.account().contacts.filter(surname=surname)]

    def set_title(self, item_id: str, title: str) -> None:
        if self.kind == "graph":
            self.services.graph.patch(f"me/contacts/{item_id}", json={"jobTitle": title})
            return
        item = self.account().contacts.get(id=item_id)
        item.job_title = title
        item.save(update_fields=["job_title"])

    def title(self, item_id: str) -> str | None:
        if self.kind == "graph":
            return self.services.graph.get(f"me/contacts/{item_id}").json().get("jobTitle")
        return self.account().contacts.get(id=item_id).job_title


def crm_contact(services: Services, field: str, value: str) -> list[dict[str, Any]]:
    answer = services.crm.get("contacts", params={"$filter": f"{field} eq '{value}'"})
    return list(answer.json()["value"])


def measure(mailbox_kind: str, changes: int, idle_minutes: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        work = Path(tmp)
        with start_sandbox(work / "sandbox", demo_scale=0) as sandbox:
            info = sandbox.describe()
            json_file = work / "sandbox.json"
            json_file.write_text(json.dumps(info))
            json_file.chmod(0o600)
            services = Services(info)
            surname = f"Latency-{uuid.uuid4().hex[:8]}"
            for i in range(SEEDED):
                services.crm.post(
                    "contacts", json={"firstname": f"L{i}", "lastname": surname}
                ).raise_for_status()
            data_dir = work / "alice"
            set_up(data_dir, json_file, info, mailbox_kind)
            process = serve(data_dir, json_file)
            try:
                wait_for(lambda: watching(data_dir), timeout=180, step=0.5)
                mailbox = Mailbox(services, mailbox_kind, sandbox)
                ids = wait_for(lambda: mailbox.contacts(surname), timeout=120, step=0.5)
                to_crm: list[float] = []
                to_mailbox: list[float] = []
                for n in range(changes):
                    title = f"M{n}-{uuid.uuid4().hex[:6]}"
                    started = time.monotonic()
                    mailbox.set_title(ids[n % len(ids)], title)
                    [row] = wait_for(lambda t=title: crm_contact(services, "jobtitle", t), 120)
                    to_crm.append(time.monotonic() - started)
                    title = f"C{n}-{uuid.uuid4().hex[:6]}"
                    started = time.monotonic()
                    services.crm.patch(
                        f"contacts({row['contactid']})", json={"jobtitle": title}
                    ).raise_for_status()
                    item = ids[n % len(ids)]
                    wait_for(lambda i=item, t=title: mailbox.title(i) == t, 120)
                    to_mailbox.append(time.monotonic() - started)
                time.sleep(15)  # the runs those changes asked for end (and their echo)
                sandbox.log.clear()
                time.sleep(idle_minutes * 60)
                by_service = Counter(entry.service for entry in list(sandbox.log))
            finally:
                from tests.helpers import stop_process

                stop_process(process)
                services.close()
    per_hour = {s: round(n * 60 / idle_minutes) for s, n in sorted(by_service.items())}
    graph_10 = by_service.get("graph", 0) * 10 / idle_minutes
    return {
        "mailbox": mailbox_kind,
        "changes": changes,
        "mailbox_to_crm": figures(to_crm),
        "crm_to_mailbox": figures(to_mailbox),
        "goal_median_s": 5.0,
        "idle": {
            "minutes": idle_minutes,
            "requests": dict(sorted(by_service.items())),
            "per_hour": per_hour,
            "graph_per_10_min": round(graph_10, 1),
            "graph_limit_per_10_min": GRAPH_LIMIT_PER_10_MIN,
            "graph_share_of_limit": round(graph_10 / GRAPH_LIMIT_PER_10_MIN, 4),
        },
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="5 changes, 1 idle minute")
    parser.add_argument("--mailbox", choices=("graph", "ews", "both"), default="graph")
    parser.add_argument("--changes", type=int, default=None)
    parser.add_argument("--idle-minutes", type=float, default=None)
    args = parser.parse_args(argv)
    changes = args.changes or (5 if args.small else 50)
    idle = args.idle_minutes or (1.0 if args.small else 10.0)
    kinds = ("graph", "ews") if args.mailbox == "both" else (args.mailbox,)
    return {kind: measure(kind, changes, idle) for kind in kinds}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
