"""Email tracking in a process of its own, against a sandbox pair another process runs (the
bench's email phase: CPU and peak memory are the tracker's alone).

    python -m bench.mail_agent ADDRESS_FILE

ADDRESS_FILE is `tests.e2e.remote_agent.write_address`'s file plus "user" (the mailbox's UPN).
Runs one `Tracker` under "all" over the Inbox and prints one JSON line: the run's counts, wall
and CPU seconds and the peak RSS (MiB).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from sync.crm.client import DataverseClient, RetryPolicy
from sync.crm.emails import DataverseEmails
from sync.mail.facade import RecordRef
from sync.mail.links import MailLinks
from sync.mail.track_run import Tracker, TrackSettings
from sync.mailbox.ews import EwsConnection, EwsSide, OAuthToken
from sync.mailbox.ews_mail import EwsTrackingMailbox
from sync.store.db import open_database
from tests.e2e.harness import ORG_ID
from tests.e2e.remote_agent import peak_rss_mib


def main(argv: list[str]) -> int:
    address = json.loads(Path(argv[0]).read_text())
    token = str(address["token"])
    user = str(address["user"])
    client = DataverseClient(
        address["api_url"], lambda: token, retry=RetryPolicy(backoff=0.05, max_backoff=0.5)
    )
    connection = EwsConnection(
        address["ews_url"], user, OAuthToken(lambda: token), ca_file=address["ews_ca_file"]
    )
    settings = TrackSettings(
        option="all",
        me=RecordRef("systemusers", address["me"]),
        addresses=frozenset({user.lower()}),
        folders=("inbox",),
    )
    database = open_database(Path(address["data_dir"]))
    started = time.perf_counter()
    try:
        result = Tracker(
            DataverseEmails(client, address["me"]),
            EwsTrackingMailbox(EwsSide(connection)),
            MailLinks(database, ORG_ID),
            settings,
        ).run()
    finally:
        client.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "counts": result.counts(),
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
