"""The CRM side's two change readers: change tracking where the service allows it, else the
`modifiedon` watermark with an id sweep for deletions; expired delta tokens; switching readers.

Against the strict sandbox Dataverse (Bob reads contoso at business-unit depth, so change
tracking is refused to him, as the service refuses it), and over httpx.MockTransport for the
answers a server rarely gives on demand.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.dataverse.security import BUSINESS_UNIT_READER, ORGANIZATION_READER
from sandbox.identity import user_by_upn
from sync.crm.client import ChangeTrackingRefused, DataverseClient, RetryPolicy
from sync.crm.side import CT_PREFIX, DataverseSide
from sync.crm.watermark import PREFIX as WM_PREFIX
from sync.crm.watermark import WatermarkState
from sync.engine.run import read_all
from sync.sides import Deleted, Page, TokenExpired, Unavailable, Upsert
from tests.crm.conftest import Sandbox

BOB = "bob@contoso.example"
API = "https://org.example/api/data/v9.2/"
EXPIRED = {
    "error": {
        "code": "0x80044352",
        "message": "Version stamp associated with the client has expired. Please perform a full sync.",
    }
}


def bob_id() -> str:
    user = user_by_upn(BOB)
    assert user is not None
    return user.systemuser_id("contoso")


@pytest.fixture
def policy(sandbox: Sandbox) -> Iterator[Any]:
    """The server's security policy, put back as the demo has it after the test."""
    yield sandbox.server.security
    sandbox.server.security.assign("contoso", bob_id(), BUSINESS_UNIT_READER)
    sandbox.server.security.untracked.clear()
    sandbox.server.strict = True
    sandbox.server.expired_token_status = 400


@pytest.fixture
def bob(sandbox: Sandbox) -> Iterator[DataverseClient]:
    with sandbox.client(upn=BOB) as client:
        yield client


def changes(pages: list[Page]) -> list[Upsert | Deleted]:
    return [c for p in pages for c in p.changes]


def settle(client: DataverseClient) -> None:
    """Let the log catch up with `client`'s requests: the server logs a request after answering
    it, before it reads the next one on the same connection (a WhoAmI, not counted)."""
    client.who_am_i()


def contact_reads(sandbox: Sandbox) -> list[int]:
    """The statuses of Bob's GETs of contacts since the log was cleared."""
    found = [e for e in sandbox.log.snapshot() if e.user == BOB and e.target == "contacts"]
    assert all(e.method == "GET" for e in found), found
    return [e.status for e in found]


def new_contact(client: DataverseClient, name: str) -> str:
    return client.create("contacts", {"lastname": name}, id=str(uuid.uuid4()))[0]


# --- the client: refusals and expired tokens ----------------------------------------------------


def test_change_tracking_refusals_are_typed(
    sandbox: Sandbox, bob: DataverseClient, client: DataverseClient, policy: Any
) -> None:
    """use-change-tracking-synchronize-data-external-systems.md: organization-level read and
    tracking enabled on the table are both needed; the two refusals are told apart."""
    with pytest.raises(ChangeTrackingRefused) as no_privilege:
        list(bob.track_changes("contacts", select=["lastname"]))
    assert no_privilege.value.reason == "privilege"
    assert "prvReadContact" in no_privilege.value.message

    policy.set_change_tracking("contoso", "tasks", False)
    with pytest.raises(ChangeTrackingRefused) as untracked:
        list(client.track_changes("tasks", select=["subject"]))
    assert untracked.value.reason == "disabled" and untracked.value.code == "0x80072491"


@pytest.mark.parametrize("status", [400, 500, 503])
@pytest.mark.parametrize("message", [EXPIRED["error"]["message"], "Le tampon de version a expiré."])
def test_expired_token_is_token_expired_at_any_status_and_not_retried(
    status: int, message: str
) -> None:
    """Web service error codes: 0x80044352 ExpiredVersionStamp. The change-tracking page says
    only "the system throws an exception"; the status is not documented, so the code decides
    (whatever the message's wording or language) and a 5xx carrying it is not retried like an
    outage."""
    sleeps: list[float] = []
    body = {"error": {"code": "0x80044352", "message": message}}
    client = DataverseClient(
        API,
        lambda: "tok",
        transport=httpx.MockTransport(lambda r: httpx.Response(status, json=body)),
        sleep=sleeps.append,
    )
    with pytest.raises(TokenExpired):
        list(client.track_changes("contacts", delta_link=API + "contacts?$deltatoken=1"))
    assert client.request_count == 1 and sleeps == []


def test_a_delta_link_that_keeps_failing_is_read_again_instead_of_failing_every_run() -> None:
    """A 5xx without a code on a delta link is retried as any 5xx; once the retries are spent
    the link is given up (TokenExpired → one full read) rather than failing every run on a
    link the service may never serve again. Not for other requests: those stay Unavailable."""
    sleeps: list[float] = []
    client = DataverseClient(
        API,
        lambda: "tok",
        transport=httpx.MockTransport(lambda r: httpx.Response(502, text="bad gateway")),
        sleep=sleeps.append,
        retry=RetryPolicy(max_retries=2, backoff=0.1),
    )
    with pytest.raises(TokenExpired):
        list(client.track_changes("contacts", delta_link=API + "contacts?$deltatoken=1"))
    assert client.request_count == 3 and len(sleeps) == 2
    with pytest.raises(Unavailable):
        list(client.track_changes("contacts", select=["lastname"]))


def test_the_engine_reads_everything_once_when_the_token_expired(
    sandbox: Sandbox, client: DataverseClient, policy: Any
) -> None:
    """An expired delta link (here answered 500, as a real service might) costs one refused
    request and one full read, then a new change-tracking token: no loop, no retry."""
    side = DataverseSide(client)
    _, token = read_all(side, "tasks", None)
    assert token and token.startswith(CT_PREFIX)
    sandbox.server.expire_delta_tokens()
    sandbox.server.expired_token_status = 500
    sandbox.waits.clear()
    settle(client)
    sandbox.log.clear()
    found, again = read_all(side, "tasks", token)
    settle(client)
    assert found.full and again and again.startswith(CT_PREFIX) and again != token
    reads = [(e.status, e.detail) for e in sandbox.log.snapshot() if e.target == "tasks"]
    assert reads == [(500, "0x80044352"), (200, "")] and sandbox.waits == []


# --- the modifiedon reader --------------------------------------------------------------------


def test_without_organization_read_the_side_reads_by_modifiedon(
    sandbox: Sandbox, bob: DataverseClient, client: DataverseClient, policy: Any
) -> None:
    """DESIGN.md §3: without change tracking, a `modifiedon` query and a cheap id-only listing
    every N runs for deletions. Bob's demo role reads at business-unit depth."""
    side = DataverseSide(bob, sweep_every=3)
    full = list(side.read_changes("contacts", None))
    token = full[-1].token
    assert token and token.startswith(WM_PREFIX) and side.readers["contacts"] == "modifiedon"
    assert side.refusals["contacts"].reason == "privilege"
    listed = {c.id for c in changes(full)}
    assert listed == set(sandbox.server.table("contoso", "contacts").rows)
    assert WatermarkState.decode(token).ids == listed

    settle(bob)
    sandbox.log.clear()
    quiet = list(side.read_changes("contacts", token))
    settle(bob)
    assert changes(quiet) == [] and contact_reads(sandbox) == [200]  # one request, no news
    token = quiet[-1].token
    assert token

    made = new_contact(client, "Watermark New")
    edited = next(iter(sorted(listed)))
    client.update("contacts", edited, {"firstname": "Edited"})
    gone = sorted(listed)[1]
    client.delete("contacts", gone)
    seen = list(side.read_changes("contacts", token))  # the 2nd read since the full one
    assert {c.id for c in changes(seen) if isinstance(c, Upsert)} == {made, edited}
    assert not any(isinstance(c, Deleted) for c in changes(seen))  # not a sweep run yet
    token = seen[-1].token
    assert token

    settle(bob)
    sandbox.log.clear()
    swept = list(side.read_changes("contacts", token))  # the 3rd: the sweep lists the ids
    settle(bob)
    assert changes(swept) == [Deleted(gone)]
    # is change tracking allowed now (no: 403), the modifiedon query, the id listing
    assert contact_reads(sandbox) == [403, 200, 200]
    state = WatermarkState.decode(swept[-1].token or "")
    assert state.reads == 0 and made in state.ids and gone not in state.ids


def test_switching_readers_forces_a_full_read(
    sandbox: Sandbox, bob: DataverseClient, client: DataverseClient, policy: Any
) -> None:
    """The token says which reader made it: a token of the other reader is refused, so the
    engine reads everything again with the reader in use."""
    tracked = list(DataverseSide(client).read_changes("contacts", None))[-1].token
    assert tracked and tracked.startswith(CT_PREFIX)
    with pytest.raises(TokenExpired):
        list(DataverseSide(client, reader="modifiedon").read_changes("contacts", tracked))
    legacy = tracked.removeprefix(CT_PREFIX)  # saved before tokens had a prefix
    assert list(DataverseSide(client).read_changes("contacts", legacy))[-1].token

    side = DataverseSide(bob, sweep_every=2)
    watermark = list(side.read_changes("contacts", None))[-1].token
    assert watermark and watermark.startswith(WM_PREFIX)
    with pytest.raises(TokenExpired):
        list(DataverseSide(bob, reader="changes").read_changes("contacts", watermark))

    # the administrator gives Bob organization-level read: at the next sweep run the side
    # notices (one small tracked request) and switches, by a full read
    policy.assign("contoso", bob_id(), ORGANIZATION_READER)
    token = list(side.read_changes("contacts", watermark))[-1].token  # not a sweep run yet
    assert token and token.startswith(WM_PREFIX)
    with pytest.raises(TokenExpired):
        list(side.read_changes("contacts", token))
    _, switched = read_all(side, "contacts", None)
    assert switched and switched.startswith(CT_PREFIX) and side.readers["contacts"] == "changes"

    # and back: the role is narrowed again; the delta link is refused, the full read falls back
    policy.assign("contoso", bob_id(), BUSINESS_UNIT_READER)
    found, fallback = read_all(side, "contacts", switched)
    assert found.full and fallback and fallback.startswith(WM_PREFIX)
    assert side.readers["contacts"] == "modifiedon"
