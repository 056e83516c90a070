"""An agent in a process of its own, against a sandbox pair another process runs.

For what cannot be seen from inside one process: the agent's own CPU time and peak memory (the
benchmark), and a sync killed outright in the middle (the crash tests). The parent writes an
address file with `write_address(pair, data_dir, path)`; the child runs

    python -m tests.e2e.remote_agent ADDRESS_FILE [KIND ...]

syncs the kinds once (all by default) and prints one JSON line: each kind's result, the CPU
seconds and the peak RSS (MiB) of the child.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from sync.crm.client import DataverseClient, RetryPolicy
from sync.crm.side import DataverseSide
from sync.engine import EngineSettings
from sync.mailbox.ews import EwsConnection, EwsSide, OAuthToken
from sync.store.cache import SettingsCache
from sync.store.db import open_database
from tests.e2e.harness import ALICE, FORMATTED, KIND_NAMES, ORG, Agent, SandboxPair


def write_address(pair: SandboxPair, data_dir: Path, path: Path, **settings: Any) -> Path:
    """Where the child finds the sandbox, its token, its local database and engine settings."""
    address = {
        "api_url": pair.dataverse.api_url(ORG),
        "ews_url": pair.ews.url,
        "ews_ca_file": pair.ews.ca_file,
        "token": pair.token,
        "me": pair.me,
        "data_dir": str(data_dir),
        "settings": settings,
    }
    path.write_text(json.dumps(address))
    return path


def agent_at(address: dict[str, Any]) -> Agent:
    token = str(address["token"])
    client = DataverseClient(
        address["api_url"],
        lambda: token,
        retry=RetryPolicy(backoff=0.05, max_backoff=0.5),
        annotations=FORMATTED,
    )
    connection = EwsConnection(
        address["ews_url"], ALICE, OAuthToken(lambda: token), ca_file=address["ews_ca_file"]
    )
    settings = {"me": address["me"], **address.get("settings", {})}
    database = open_database(Path(address["data_dir"]))
    # table definitions kept in the local database, as the app keeps them (sync/connect.py)
    crm = DataverseSide(client, owner_id=address["me"], metadata_store=SettingsCache(database))
    return Agent(crm, EwsSide(connection), database, EngineSettings(**settings))


def peak_rss_mib() -> float:
    """This process's own peak resident memory. VmHWM, not ru_maxrss: a child forked from a
    large parent (the sandbox's process) inherits the parent's ru_maxrss on Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: list[str]) -> int:
    address = json.loads(Path(argv[0]).read_text())
    kinds = argv[1:] or list(KIND_NAMES)
    agent = agent_at(address)
    started = time.perf_counter()
    results = agent.sync(kinds)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "results": {name: r.as_dict() for name, r in results.items()},
                "wall_seconds": round(time.perf_counter() - started, 3),
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
                "peak_rss_mib": peak_rss_mib(),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
