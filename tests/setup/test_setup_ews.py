"""The Exchange ports against the sandbox EWS server: the connection test of the mailbox step
and the synchronizing-computer claim kept in the mailbox (sync.mailbox.claims)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.faults import FaultProfile
from sandbox.identity import USERS, TokenRegistry
from sandbox.requestlog import RequestLog
from sync.mailbox.ews import BasicAuth, EwsConnection
from sync.setup import mailbox
from sync.setup.adapters import AdapterTester, EwsClaims
from sync.setup.messages import SetupError
from sync.setup.ports import ClaimInfo, ClaimTaken, MailboxConfig

ALICE = USERS[0].upn
PASSWORD = USERS[0].password


@pytest.fixture(scope="module")
def ews(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from sandbox.ews import EwsServer

    server = EwsServer(
        TokenRegistry(),
        RequestLog(),
        FaultProfile(),
        str(tmp_path_factory.mktemp("ews")),
        demo=False,
    )
    server.start()
    yield server
    server.stop()


def connection(server: Any, config: MailboxConfig, secrets: dict[str, str]) -> EwsConnection:
    return EwsConnection(
        server.url,
        config.email,
        BasicAuth(config.username, secrets.get("mailbox_password", "")),
        ca_file=server.ca_file,
    )


def config_for(server: Any) -> MailboxConfig:
    return MailboxConfig(
        type="exchange", email=ALICE, ews_url=server.url, auth="basic", username=ALICE
    )


def test_connection_test_passes_and_a_wrong_password_is_explained(ews: Any) -> None:
    tester = AdapterTester(lambda c, s: connection(ews, c, dict(s)), ews.ca_file)
    mailbox.check_connection(tester, config_for(ews), {"mailbox_password": PASSWORD})
    with pytest.raises(SetupError) as refused:
        mailbox.check_connection(tester, config_for(ews), {"mailbox_password": "wrong"})
    assert "refused the sign-in for alice@contoso.example" in str(refused.value.msg)
    assert refused.value.field == "password"


def test_two_computers_race_for_the_claim_and_one_wins(ews: Any) -> None:
    secrets = {"mailbox_password": PASSWORD}
    desk = EwsClaims(connection(ews, config_for(ews), secrets))
    laptop = EwsClaims(connection(ews, config_for(ews), secrets))
    assert desk.read() is None and laptop.read() is None  # both see it free
    won = desk.take(ClaimInfo("desk-id", "desk-pc", "org-1", "https://contoso.example/"), None)
    assert won.instance_name == "desk-pc" and won.claimed_at is not None
    with pytest.raises(ClaimTaken) as lost:
        laptop.take(ClaimInfo("laptop-id", "laptop", "org-1", "https://contoso.example/"), None)
    assert lost.value.current is not None and lost.value.current.instance_name == "desk-pc"

    current = laptop.read()  # the laptop takes over knowingly
    laptop.take(ClaimInfo("laptop-id", "laptop", "org-1", "https://contoso.example/"), current)
    holder = desk.read()
    assert holder is not None and holder.instance_id == "laptop-id"
