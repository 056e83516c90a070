"""GraphClient and GraphSide against the sandbox Graph: retries, throttling, batching, errors."""

from __future__ import annotations

import pytest

from sandbox.faults import Fault
from sync.graph.client import MAX_BATCH
from sync.sides import (
    AuthError,
    Conflict,
    CreateOp,
    DeleteOp,
    Invalid,
    NotFound,
    TokenExpired,
    UpdateOp,
    Written,
)
from tests.graph.conftest import ALICE, GraphWorld


def test_throttled_request_waits_retry_after_then_succeeds(world: GraphWorld) -> None:
    """throttling.md: on 429 wait the Retry-After seconds, then retry (the Dataverse rules)."""
    client = world.client()
    world.waits.clear()
    world.faults.set(Fault.parse("429:times=2,delay=3,match=graph /v1.0/me"))
    try:
        me = client.get("me")
    finally:
        world.faults.clear()
    assert me["userPrincipalName"] == ALICE
    assert world.waits == [3.0, 3.0]
    assert client.request_count == 3


def test_server_errors_are_retried_with_backoff_then_unavailable(world: GraphWorld) -> None:
    client = world.client()
    world.waits.clear()
    world.faults.set(Fault.parse("drop:times=1,match=graph /v1.0/me"))  # a 503 without Retry-After
    try:
        assert client.get("me")["mail"] == ALICE
    finally:
        world.faults.clear()
    assert len(world.waits) == 1


def test_batches_are_chunked_by_twenty_and_keep_order(world: GraphWorld) -> None:
    """json-batching.md: at most 20 requests a batch; answers matched back by id."""
    client = world.client()
    world.log.clear()
    answers = client.batch(
        [
            {"method": "POST", "url": "/me/contacts", "body": {"givenName": f"B{i}"}}
            for i in range(45)
        ]  # fmt: skip
    )
    assert [a["givenName"] for a in answers] == [f"B{i}" for i in range(45)]
    batches = [e for e in world.log if e.target.endswith("/$batch")]
    assert len(batches) == -(-45 // MAX_BATCH)


def test_throttled_batch_parts_are_sent_again(world: GraphWorld) -> None:
    """json-batching.md: parts of a batch are throttled one by one (429 in the part's status);
    only those are sent again, after the Retry-After."""
    client = world.client()
    world.waits.clear()
    world.faults.set(Fault.parse("429:times=2,delay=1,match=graph /v1.0/me/contacts"))
    try:
        answers = client.batch(
            [
                {"method": "POST", "url": "/me/contacts", "body": {"givenName": f"T{i}"}}
                for i in range(4)
            ]  # fmt: skip
        )
    finally:
        world.faults.clear()
    assert [a["givenName"] for a in answers] == ["T0", "T1", "T2", "T3"]
    assert world.waits == [1.0]


def test_typed_errors(world: GraphWorld) -> None:
    """errors.md: 404 → NotFound, 400 → Invalid, 403 → AuthError (a scope is missing)."""
    client = world.client()
    with pytest.raises(NotFound):
        client.get("me/contacts/nope")
    with pytest.raises(Invalid):
        client.post("me/contacts", {"unknownThing": 1})
    scoped = world.tokens.issue(ALICE, scopes=frozenset({"Contacts.Read"}))
    limited = world.client()
    limited.token_provider = lambda: scoped
    with pytest.raises(AuthError) as denied:
        limited.post("me/contacts", {"givenName": "x"})
    assert denied.value.code == "ErrorAccessDenied"


def test_side_write_conflict_delete_and_expired_delta(world: GraphWorld) -> None:
    """A stale version is a Conflict (If-Match, 412); deleting a gone item is done; a delta
    link of an expired epoch raises TokenExpired (410)."""
    side = world.side("bob@contoso.example")
    made = side.write("contacts", [CreateOp("key-c", {"given_name": "Cora"})])[0]
    assert isinstance(made, Written)
    token = [p for p in side.read_changes("contacts", None)][-1].token
    assert token
    side.write("contacts", [UpdateOp(made.id, made.version, {"surname": "One"})])
    stale = side.write("contacts", [UpdateOp(made.id, made.version, {"surname": "Two"})])[0]
    assert isinstance(stale, Conflict)
    assert side.find_by_key("contacts", ["key-c"])["key-c"].fields["surname"] == "One"
    gone = side.write("contacts", [DeleteOp(made.id, None), DeleteOp("missing-id", None)])
    assert all(isinstance(r, Written) for r in gone)
    world.graph.mailbox("bob@contoso.example").expire_tokens()
    with pytest.raises(TokenExpired):
        list(side.read_changes("contacts", token))


def test_untracked_marks_live_on_the_hidden_folder(world: GraphWorld) -> None:
    """extended-properties-overview.md (mailFolder supports single-value extended properties):
    the marks survive a new side (a fresh install) and the folder is hidden."""
    side = world.side("carol@fabrikam.example")
    side.marks_scope = "org-1"
    side.save_untracked("tasks", ["a", "b"])
    side.save_untracked("contacts", ["c"])
    again = world.side("carol@fabrikam.example")
    again.marks_scope = "org-1"
    assert again.load_untracked("tasks") == {"a", "b"}
    assert again.load_untracked("contacts") == {"c"}
    other = world.side("carol@fabrikam.example")
    other.marks_scope = "org-2"
    assert other.load_untracked("tasks") == set()
    visible = world.client("carol@fabrikam.example").all("me/mailFolders")
    assert "Mailbox Sync for Dynamics 365" not in {f["displayName"] for f in visible}
