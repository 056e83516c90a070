"""EwsSide against the sandbox EWS server over HTTPS: reading, writing, errors, throttling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchangelib import Folder

from sandbox.ews import EwsServer
from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry
from sandbox.requestlog import RequestLog
from sync.mailbox import ews_recurrence
from sync.mailbox.ews import BasicAuth, EwsConnection, EwsSide, OAuthToken, trust_ca_file
from sync.sides import (
    AuthError,
    Conflict,
    CreateOp,
    Deleted,
    DeleteOp,
    Invalid,
    MailboxSide,
    NotFound,
    Throttled,
    TokenExpired,
    Unavailable,
    UpdateOp,
    Upsert,
    Written,
)
from tests.mailbox.ews_helpers import ALICE, BOB, CAROL, DAVE, connect, password, read_all


def side_for(server: Any, upn: str, **options: Any) -> EwsSide:
    return EwsSide(connect(server, upn), **options)


def contact(n: int) -> dict[str, Any]:
    return {"given_name": f"Given{n}", "surname": f"Sur{n}", "email_address_1": f"c{n}@x.example"}


def ok(result: Any) -> Written:
    assert isinstance(result, Written), result
    return result


# --- sign-in -----------------------------------------------------------------------------------


def test_wrong_password_is_auth_error(ews: Any) -> None:
    conn = EwsConnection(ews.url, BOB, BasicAuth(BOB, "wrong"), ca_file=ews.ca_file, max_wait=5)
    with pytest.raises(AuthError) as caught:
        conn.verify()
    assert "password" in caught.value.message
    assert ews.log.count(service="ews", status=401) >= 1


def test_token_auth_refreshes_once(ews: Any) -> None:
    tokens = iter(["not-a-token", ews.tokens.static_token(CAROL)])
    asked: list[str] = []

    def provider() -> str:
        asked.append(next(tokens))
        return asked[-1]

    side = EwsSide(EwsConnection(ews.url, CAROL, OAuthToken(provider), ca_file=ews.ca_file))
    assert isinstance(side, MailboxSide)
    written = ok(side.write("tasks", [CreateOp("crm-t1", {"subject": "Call"})])[0])
    assert len(asked) == 2  # the refused token, then the fresh one
    assert side.read("tasks", [written.id])[written.id].fields["subject"] == "Call"


def test_refused_token_after_refresh_is_auth_error(ews: Any) -> None:
    asked: list[int] = []

    def provider() -> str:
        asked.append(1)
        return "sbx.revoked-token"

    conn = EwsConnection(ews.url, CAROL, OAuthToken(provider), ca_file=ews.ca_file, max_wait=5)
    with pytest.raises(AuthError):
        conn.verify()
    assert len(asked) == 2  # the first token, then exactly one refresh


def test_untrusted_certificate_is_unavailable(tmp_path: Any) -> None:
    other = EwsServer(TokenRegistry(), RequestLog(), FaultProfile(), str(tmp_path), demo=False)
    other.start()  # a fresh CA that nobody registered
    try:
        conn = EwsConnection(other.url, BOB, BasicAuth(BOB, password(BOB)), max_wait=5)
        with pytest.raises(Unavailable):
            conn.verify()
        assert len(other.log) == 0  # refused before any request was sent
    finally:
        other.stop()


def test_registered_ca_outlives_its_file(ews: Any, tmp_path: Any) -> None:
    copy = tmp_path / "ca.pem"
    copy.write_bytes(Path(ews.ca_file).read_bytes())
    trust_ca_file(str(copy))
    copy.unlink()  # e.g. a temporary directory cleaned up while the process runs on
    # new credentials, so exchangelib makes new sessions (and TLS contexts) for this connection
    conn = EwsConnection(ews.url, BOB, OAuthToken(lambda: ews.tokens.static_token(BOB)))
    conn.verify()


def test_plain_http_endpoint_is_refused() -> None:
    with pytest.raises(ValueError):
        EwsConnection("http://127.0.0.1:1/EWS/Exchange.asmx", BOB, BasicAuth(BOB, "x"))


# --- reading -----------------------------------------------------------------------------------


def test_sync_1200_changes_in_pages_resumed_after_restart(ews: Any) -> None:
    writer = side_for(ews, DAVE, write_batch=100)
    results = writer.write("contacts", [CreateOp(f"crm-{n}", contact(n)) for n in range(1200)])
    assert all(isinstance(r, Written) for r in results)
    ews.log.clear()

    first = side_for(ews, DAVE, page_size=512)
    pages = first.read_changes("contacts", None)
    page = next(pages)
    assert len(page.changes) == 512 and not page.last and page.token
    seen = {c.id for c in page.changes}
    pages.close()  # the "crash": nothing after the first page was applied

    again = side_for(ews, DAVE, page_size=512)  # new objects, the saved token
    rest, token = read_all(again, "contacts", page.token)
    assert [len(rest)] == [688]
    seen |= {c.id for c in rest}
    assert seen == {r.id for r in results if isinstance(r, Written)}
    assert all(isinstance(c, Upsert) and c.key and c.key.startswith("crm-") for c in rest)
    syncs = [e for e in ews.log if e.target == "SyncFolderItems"]
    assert len(syncs) == 3  # 512 + 512 + 176

    quiet, token2 = read_all(again, "contacts", token)
    assert quiet == [] and token2


def test_bad_sync_state_then_full_read_returns_each_item_once(ews: Any) -> None:
    side = side_for(ews, CAROL)
    side.write("contacts", [CreateOp(f"k-{n}", contact(n)) for n in range(3)])
    with pytest.raises(TokenExpired):
        list(side.read_changes("contacts", "bm90IGEgc3luYyBzdGF0ZQ=="))
    changes, _ = read_all(side, "contacts", None)
    ids = [c.id for c in changes]
    assert len(ids) == len(set(ids)) >= 3


def test_read_and_find_by_key(ews: Any) -> None:
    side = side_for(ews, BOB)
    written = ok(side.write("contacts", [CreateOp("crm-find-1", contact(1))])[0])
    side.write("contacts", [CreateOp("crm-find-2", contact(2))])
    found = side.find_by_key("contacts", ["crm-find-1", "crm-find-2", "crm-none"])
    assert set(found) == {"crm-find-1", "crm-find-2"}
    assert found["crm-find-1"].id == written.id
    assert found["crm-find-1"].fields["given_name"] == "Given1"
    assert side.read("contacts", [written.id, "AAMkAGI2TnonexistentAAA="]).keys() == {written.id}


def test_deletes_show_up_in_changes(ews: Any) -> None:
    side = side_for(ews, BOB)
    written = ok(side.write("tasks", [CreateOp("crm-del", {"subject": "Temp"})])[0])
    _, token = read_all(side, "tasks", None)
    assert ok(side.write("tasks", [DeleteOp(written.id, written.version)])[0]).version is None
    changes, _ = read_all(side, "tasks", token)
    assert changes == [Deleted(written.id)]
    again = side.write("tasks", [DeleteOp(written.id, None)])[0]
    assert isinstance(again, NotFound)


# --- writing -----------------------------------------------------------------------------------


def test_stale_change_key_is_conflict_and_recovers(ews: Any) -> None:
    side = side_for(ews, BOB)
    created = ok(side.write("contacts", [CreateOp("crm-stale", contact(7))])[0])
    first = ok(
        side.write("contacts", [UpdateOp(created.id, created.version, {"job_title": "A"})])[0]
    )
    assert first.version != created.version
    stale = side.write("contacts", [UpdateOp(created.id, created.version, {"job_title": "B"})])[0]
    assert isinstance(stale, Conflict)
    fresh = side.read("contacts", [created.id])[created.id]
    assert fresh.fields["job_title"] == "A"
    retried = ok(
        side.write("contacts", [UpdateOp(created.id, fresh.version, {"job_title": "B"})])[0]
    )
    assert side.read("contacts", [created.id])[created.id].version == retried.version
    assert side.read("contacts", [created.id])[created.id].fields["job_title"] == "B"


def test_update_sends_only_changed_fields_and_keeps_phones(ews: Any) -> None:
    side = side_for(ews, BOB)
    fields = {**contact(8), "business_phone": "1", "mobile_phone": "2", "body": "note"}
    created = ok(side.write("contacts", [CreateOp("crm-phones", fields)])[0])
    ok(side.write("contacts", [UpdateOp(created.id, created.version, {"mobile_phone": "3"})])[0])
    now = side.read("contacts", [created.id])[created.id].fields
    assert (now["business_phone"], now["mobile_phone"], now["body"]) == ("1", "3", "note")


def test_moved_item_is_followed(ews: Any) -> None:
    side = side_for(ews, BOB)
    created = ok(side.write("contacts", [CreateOp("crm-moved", contact(9))])[0])
    account = side.account
    sub = Folder(parent=account.contacts, name="Moved here")
    sub.save()
    item = list(account.fetch(ids=[(created.id, None)]))[0]
    item.move(sub)
    assert side.read("contacts", [created.id]) == {}
    update = UpdateOp(created.id, None, {"job_title": "Moved"}, key="crm-moved")
    result = ok(side.write("contacts", [update])[0])
    assert result.id != created.id
    assert side.read("contacts", [result.id])[result.id].fields["job_title"] == "Moved"
    # without the key (a second copy's removal), a gone id is not followed to another item
    [gone] = side.write("contacts", [DeleteOp(created.id, None)])
    assert isinstance(gone, NotFound)
    assert result.id in side.read("contacts", [result.id])


def test_results_in_order_with_item_errors(ews: Any) -> None:
    side = side_for(ews, BOB)
    a = ok(side.write("tasks", [CreateOp("crm-o1", {"subject": "One"})])[0])
    results = side.write(
        "tasks",
        [
            UpdateOp(a.id, a.version, {"subject": "Uno"}),
            CreateOp("crm-o2", {"subject": "Two"}),
            DeleteOp("AAMkAGI2TnonexistentAAA=", None),
        ],
    )
    assert isinstance(results[0], Written) and isinstance(results[1], Written)
    assert isinstance(results[2], NotFound)
    assert side.read("tasks", [a.id])[a.id].fields["subject"] == "Uno"


def test_bad_item_is_invalid_and_others_are_written(ews: Any) -> None:
    side = side_for(ews, BOB)
    backwards = {**BASE_APPOINTMENT, "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T09:00:00Z"}
    results = side.write(
        "appointments",
        [CreateOp("crm-bad", backwards), CreateOp("crm-good", BASE_APPOINTMENT)],
    )
    assert isinstance(results[0], Invalid) and isinstance(results[1], Written)


def test_server_busy_is_waited_out(ews: Any) -> None:
    side = side_for(ews, CAROL)
    side.read_changes("tasks", None)  # resolve the folder first
    ews.log.clear()
    ews.busy_budget, ews.busy_backoff_ms, ews.busy_window = 2, 200, 30.0
    try:
        for _ in range(3):
            read_all(side, "tasks", None)
    finally:
        ews.busy_budget, ews.busy_window = None, 10.0
    details = [(e.target, e.detail, e.status) for e in ews.log]
    busy = [d for d in details if "ErrorServerBusy" in d[1]]
    assert busy, details
    after = details.index(busy[0]) + 1
    assert any(d[0] == busy[0][0] and "ErrorServerBusy" not in d[1] for d in details[after:])


@pytest.fixture
def quiet_ews(tmp_path: Path) -> Iterator[Any]:
    """A sandbox EWS of its own: no request budget spent by earlier tests (the module's server
    keeps each user's recent requests, so a budget test passed or failed by test order)."""
    server = EwsServer(TokenRegistry(), RequestLog(), FaultProfile(), str(tmp_path), demo=False)
    server.start()
    yield server
    server.stop()


def test_server_busy_beyond_max_wait_is_throttled(quiet_ews: Any) -> None:
    ews = quiet_ews
    # token auth on a server of its own: its own exchangelib protocol, with max_wait=1
    token = ews.tokens.static_token(CAROL)
    side = EwsSide(
        EwsConnection(ews.url, CAROL, OAuthToken(lambda: token), ca_file=ews.ca_file, max_wait=1)
    )
    side.folder("tasks")  # no budget yet: not counted
    ews.busy_budget, ews.busy_backoff_ms = 1, 10_000
    list(side.read_changes("tasks", None))  # the one request the budget allows
    with pytest.raises(Throttled) as caught:
        list(side.read_changes("tasks", None))
    assert caught.value.retry_after >= 1
    results = side.write(
        "tasks", [CreateOp("crm-busy-1", {"subject": "x"}), CreateOp("crm-busy-2", {})]
    )
    assert all(isinstance(r, Throttled) for r in results)


# --- appointments ------------------------------------------------------------------------------

BASE_APPOINTMENT: dict[str, Any] = {
    "subject": "Series",
    "location": "Room 1",
    "start": "2026-03-02T08:00:00Z",
    "end": "2026-03-02T09:00:00Z",
    "timezone": "Europe/Paris",
    "is_all_day": False,
    "show_as": "Busy",
    "required_attendees": ["bob@contoso.example"],
    "optional_attendees": [],
    "reminder_is_set": True,
    "reminder_minutes": 15,
    "categories": ["Work"],
}

PATTERNS = [
    {"type": "daily", "interval": 2},
    {
        "type": "weekly",
        "interval": 1,
        "weekdays": ["Monday", "Thursday"],
        "first_day_of_week": "Monday",
    },
    {"type": "absolute_monthly", "interval": 1, "day_of_month": 2},
    {"type": "relative_monthly", "interval": 1, "weekdays": ["Monday"], "week_index": "First"},
    {"type": "absolute_yearly", "interval": 1, "day_of_month": 2, "month": 3},
    {
        "type": "relative_yearly",
        "interval": 1,
        "weekdays": ["Monday"],
        "week_index": "First",
        "month": 3,
    },
]
RANGES = [
    {"type": "no_end", "start": "2026-03-02"},
    {"type": "end_date", "start": "2026-03-02", "end": "2027-06-30"},
    {"type": "numbered", "start": "2026-03-02", "count": 5},
]


@pytest.fixture(scope="module")
def alice(ews: Any) -> EwsSide:
    return side_for(ews, ALICE)


@pytest.mark.parametrize(
    ("pattern", "rng"),
    [(p, RANGES[i % 3]) for i, p in enumerate(PATTERNS)],
    ids=[p["type"] for p in PATTERNS],
)
def test_recurring_appointment_roundtrip(alice: EwsSide, pattern: Any, rng: Any) -> None:
    fields = {**BASE_APPOINTMENT, "recurrence": {"pattern": pattern, "range": rng}}
    created = ok(alice.write("appointments", [CreateOp(f"crm-{pattern['type']}", fields)])[0])
    got = alice.read("appointments", [created.id])[created.id]
    assert got.key == f"crm-{pattern['type']}"
    for name, value in BASE_APPOINTMENT.items():
        assert got.fields[name] == value, name
    assert got.fields["recurrence"] == ews_recurrence.normalize(fields["recurrence"])


def test_all_day_appointment_roundtrip(alice: EwsSide) -> None:
    fields = {
        **BASE_APPOINTMENT,
        "start": "2026-03-01T23:00:00Z",
        "end": "2026-03-02T23:00:00Z",
        "is_all_day": True,
    }
    created = ok(alice.write("appointments", [CreateOp("crm-allday", fields)])[0])
    got = alice.read("appointments", [created.id])[created.id].fields
    assert (got["start"], got["end"], got["is_all_day"]) == (fields["start"], fields["end"], True)


def test_weekly_series_across_dst_keeps_wall_clock(alice: EwsSide) -> None:
    recurrence = {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "weekdays": ["Monday"],
            "first_day_of_week": "Monday",
        },
        "range": {"type": "numbered", "start": "2026-03-16", "count": 4},
    }
    fields = {
        **BASE_APPOINTMENT,
        "start": "2026-03-16T08:00:00Z",  # 09:00 Paris (winter time)
        "end": "2026-03-16T09:00:00Z",
        "recurrence": recurrence,
        # the occurrence after the change to summer time, moved by one hour: 10:00 Paris
        "modified_occurrences": [
            {
                "original_start": "2026-03-30T07:00:00Z",
                "start": "2026-03-30T08:00:00Z",
                "end": "2026-03-30T09:00:00Z",
            }
        ],
        "deleted_occurrences": ["2026-04-06T07:00:00Z"],
    }
    created = ok(alice.write("appointments", [CreateOp("crm-dst", fields)])[0])
    got = alice.read("appointments", [created.id])[created.id]
    assert got.version == created.version
    assert got.fields["timezone"] == "Europe/Paris"
    assert got.fields["start"] == "2026-03-16T08:00:00Z"
    assert got.fields["recurrence"] == ews_recurrence.normalize(recurrence)
    assert got.fields["deleted_occurrences"] == ["2026-04-06T07:00:00Z"]
    assert got.fields["modified_occurrences"] == fields["modified_occurrences"]
    # writing the same series again changes nothing (no duplicate occurrence operations)
    again = ok(alice.write("appointments", [UpdateOp(created.id, got.version, fields)])[0])
    assert alice.read("appointments", [again.id])[again.id].fields["deleted_occurrences"] == [
        "2026-04-06T07:00:00Z"
    ]


def test_appointment_delete_is_quiet(alice: EwsSide, ews: Any) -> None:
    created = ok(alice.write("appointments", [CreateOp("crm-quiet", BASE_APPOINTMENT)])[0])
    bob_inbox = len(ews.mailbox(BOB).dist("inbox").items)  # bob is an attendee
    ews.log.clear()
    ok(alice.write("appointments", [DeleteOp(created.id, created.version, quiet=True)])[0])
    assert [e.target for e in ews.log] == ["DeleteItem"]
    assert alice.read("appointments", [created.id]) == {}
    assert len(ews.mailbox(BOB).dist("inbox").items) == bob_inbox  # no invitation, no cancellation
