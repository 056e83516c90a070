"""The outgoing-email stage in a process of its own, for the kill tests (test_outgoing_kill.py).

    python -m tests.reliability.outgoing_agent ADDRESS_FILE ews|smtp

runs `send_pending` once for the address file's user against the sandbox Dataverse, through the
sandbox EWS or the test's SMTP server, with the local journal in the address file's data
directory, and prints the run's counts as one JSON line. (It imports no sandbox or test code: a
restart costs what the app's own start costs.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sync.crm.client import DataverseClient, RetryPolicy
from sync.crm.outbox import DataverseOutbox
from sync.mail.journal import SendJournal
from sync.mail.outgoing import MailSender, send_pending
from sync.mail.senders import EwsMailSender, SmtpMailSender
from sync.mailbox.ews import EwsConnection, EwsSide, OAuthToken
from sync.mailbox.smtp import SmtpSender, SmtpSettings
from sync.store.db import open_database


def sender_for(address: dict[str, Any], transport: str) -> MailSender:
    token = str(address["token"])
    if transport == "ews":
        connection = EwsConnection(
            address["ews_url"],
            address["upn"],
            OAuthToken(lambda: token),
            ca_file=address["ews_ca_file"],
        )
        return EwsMailSender(EwsSide(connection))
    settings = SmtpSettings(security="starttls", timeout=10, **address["smtp"])
    return SmtpMailSender(SmtpSender(settings))


def main(argv: list[str]) -> int:
    address = json.loads(Path(argv[0]).read_text())
    token = str(address["token"])
    client = DataverseClient(
        address["api_url"], lambda: token, retry=RetryPolicy(backoff=0.05, max_backoff=0.5)
    )
    database = open_database(Path(address["data_dir"]))
    result = send_pending(
        DataverseOutbox(client, address["me"]),
        sender_for(address, argv[1]),
        SendJournal(database, address["org_id"]),
    )
    print(json.dumps(result.as_counts()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
