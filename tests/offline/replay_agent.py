"""Go online in a process of its own, killed outright (SIGKILL) at a chosen point of the replay.

    python -m tests.offline.replay_agent ADDRESS_FILE

The address file (JSON) names the sandbox API, a bearer token, the user id, the data dir and
`kill`: [point, n] — the process kills itself at the n-th time the replay reaches `point`
("before-call": the item is journalled "sending", no request sent yet; "after-call": the server
has applied the write, the journal does not know it yet). No `finally`, no lock release, no
commit runs after the kill: what the next process finds is what a power cut leaves.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from sync.crm.client import DataverseClient, RetryPolicy
from sync.offline.service import OfflineConnection, OfflineService
from sync.store.db import Database, sqlite_url
from sync.store.models import OfflineChange


def main(address_file: str) -> int:
    address: dict[str, Any] = json.loads(Path(address_file).read_text())
    token = str(address["token"])
    # the parent made and migrated it: skip the migration check (a child per kill adds up)
    database = Database(sqlite_url(Path(address["data_dir"])))

    def connect() -> OfflineConnection:
        client = DataverseClient(
            address["api_url"], lambda: token, retry=RetryPolicy(backoff=0.01, max_retries=1)
        )
        return OfflineConnection(address["org"], address["me"], client, "UTC", client.close)

    point, nth = address["kill"]
    reached = [0]

    def fault(where: str, _item: OfflineChange) -> None:
        if where == point:
            reached[0] += 1
            if reached[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    OfflineService(database, connect).go_online(fault=fault)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
