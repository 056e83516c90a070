"""The real CRM ports over HTTP against the sandbox Dataverse: mailbox records, counts, and the
POP3 synchronizing-computer claim in `mbs_syncclaims`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sandbox.dataverse import DataverseServer
from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry, user_by_upn
from sandbox.requestlog import RequestLog
from sync.crm.client import DataverseClient
from sync.setup import mailbox
from sync.setup.adapters import DataverseClaims, DataverseDirectory
from sync.setup.messages import SetupError
from sync.setup.ports import ClaimInfo, ClaimTaken

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"


@pytest.fixture(scope="module")
def server() -> Iterator[DataverseServer]:
    tokens = TokenRegistry()
    server = DataverseServer(tokens, RequestLog(), FaultProfile(), demo_scale=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client_for(server: DataverseServer) -> Iterator[Callable[[str], DataverseClient]]:
    clients: list[DataverseClient] = []

    def make(upn: str, org: str = "contoso") -> DataverseClient:
        token = server.tokens.static_token(upn)
        client = DataverseClient(server.api_url(org), lambda: token)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_mailbox_records_and_the_refusal_name_the_other_user(
    client_for: Callable[[str], DataverseClient],
) -> None:
    directory = DataverseDirectory(client_for(BOB))
    bob = directory.current_user()
    assert bob.name == "Bob Kelly"
    (record,) = directory.mailboxes_with_address(ALICE)
    alice = user_by_upn(ALICE)
    assert alice is not None and record.owner_id == alice.systemuser_id("contoso")
    with pytest.raises(SetupError) as refused:
        mailbox.check_mailbox_owner(directory, bob, ALICE)
    assert "already used by another CRM user, Alice Wong" in str(refused.value.msg)
    own = mailbox.check_mailbox_owner(directory, bob, BOB)
    assert (own.incoming, own.outgoing, own.act) == (2, 2, 1)  # server-side sync in the demo


def test_delivery_methods_are_written_to_the_crm(
    client_for: Callable[[str], DataverseClient],
) -> None:
    directory = DataverseDirectory(client_for(BOB))
    bob = directory.current_user()
    record = directory.mailbox_of_user(bob.id)
    assert record is not None
    mailbox.set_to_this_client(directory, record, consent=True)
    again = directory.mailbox_of_user(bob.id)
    # only appointments, contacts and tasks: server-side sync keeps Bob's email
    assert again is not None and (again.incoming, again.outgoing, again.act) == (2, 2, 0)
    assert [s.is_this_client for s in mailbox.delivery_status(again)] == [False, False, True]


def test_counts_come_from_the_crm(
    server: DataverseServer, client_for: Callable[[str], DataverseClient]
) -> None:
    from sync.setup.choices import count_for

    for n in range(3):
        server.insert("contoso", "contacts", {"lastname": f"Count{n}"}, as_user=ALICE)
    server.insert("contoso", "contacts", {"lastname": "Other"}, as_user=BOB)
    directory = DataverseDirectory(client_for(ALICE))
    me = directory.current_user().id
    assert count_for(directory, "my-active-contacts", me) == 3
    assert count_for(directory, "all-active-contacts", me) == 4


def test_the_pop3_claim_lets_only_one_computer_win(
    client_for: Callable[[str], DataverseClient],
) -> None:
    user_id = DataverseDirectory(client_for(ALICE)).current_user().id
    desk = DataverseClaims(client_for(ALICE), user_id)
    laptop = DataverseClaims(client_for(ALICE), user_id)
    assert desk.read() is None and laptop.read() is None  # both saw it free
    desk.take(ClaimInfo("desk-id", "desk-pc"), None)
    with pytest.raises(ClaimTaken) as lost:  # the laptop's create with the same row id fails
        laptop.take(ClaimInfo("laptop-id", "laptop"), None)
    assert lost.value.current is not None and lost.value.current.instance_name == "desk-pc"

    current = laptop.read()  # take over, knowing who held it
    assert current is not None and current.instance_id == "desk-id"
    laptop.take(ClaimInfo("laptop-id", "laptop"), current)
    holder = desk.read()
    assert holder is not None and holder.instance_name == "laptop"
    with pytest.raises(ClaimTaken):  # desk-pc's view is stale now
        desk.take(ClaimInfo("desk-id", "desk-pc"), current)
