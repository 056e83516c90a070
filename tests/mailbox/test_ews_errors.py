"""Issue 10 point 8 (EWS errors) and point 6's NTLM sign-in, against the sandbox EWS.

Microsoft behaviour relied on (office-developer-exchange-docs, docs/web-service-reference/
responsecode.md): ErrorChangeKeyRequiredForWriteOperations "is returned when the change key for
an item is missing or stale. For SendItem, UpdateItem, and UpdateFolder operations, the caller
must pass in a correct and current change key". docs/exchange-web-services/
ews-throttling-in-exchange.md, table 4: "HTTP 200 — Contains an EWS schema-based error response
with an ErrorInternalServerError error code … the client should delay sending additional
requests until a later time". HTTP 403 (EWS turned off, or the app not allowed) and HTTP 429 are
not in the EWS reference: see sandbox/README.md's known differences.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from exchangelib import Folder
from exchangelib.protocol import Protocol
from exchangelib.transport import NTLM
from requests_ntlm import HttpNtlmAuth

from sync.mailbox import claims
from sync.mailbox.ews_connection import (
    FORBIDDEN,
    EwsConnection,
    NtlmAuth,
    side_error,
)
from sync.setup.mailbox import FormErrors, parse_mailbox_form
from sync.sides import AuthError, Conflict, Throttled, Unavailable
from tests.mailbox.ews_helpers import ALICE, BOB, CAROL, DAVE, connect


def fresh(connection: EwsConnection) -> EwsConnection:
    """Forget exchangelib's cached protocol for these credentials, so this connection's retry
    policy (max_wait) is the one in force."""
    with contextlib.suppress(KeyError):
        del Protocol._protocol_cache[Protocol._cache_key(connection.config)]
    return connection


def statuses(ews: Any, upn: str) -> list[tuple[str, int, str]]:
    return [(r.target, r.status, r.detail) for r in ews.log.snapshot() if r.user == upn]


def test_http_403_is_a_clear_refusal_not_an_unreachable_server(ews: Any) -> None:
    ews.ews_blocked.add(CAROL)
    try:
        with pytest.raises(AuthError) as refused:
            fresh(connect(ews, CAROL)).verify()
    finally:
        ews.ews_blocked.discard(CAROL)
    assert not isinstance(refused.value, Unavailable)
    assert refused.value.code == FORBIDDEN == "HTTP 403"
    assert "HTTP 403" in refused.value.message and "allow list" in refused.value.message
    assert "could not be reached" not in refused.value.message


def test_http_429_is_waited_out_within_max_wait(ews: Any) -> None:
    ews.log.clear()
    ews.answer_429(times=1, retry_after=1)
    connection = fresh(connect(ews, BOB, max_wait=30))
    connection.verify()  # the Retry-After is honoured, then the request goes through
    assert [s for _, s, _ in statuses(ews, BOB)][:2] == [429, 200]


def test_http_429_beyond_max_wait_is_throttling(ews: Any) -> None:
    ews.answer_429(times=1, retry_after=120)
    with pytest.raises(Throttled) as throttled:
        fresh(connect(ews, DAVE, max_wait=5)).verify()
    assert throttled.value.retry_after == 120
    assert "throttling" in throttled.value.message
    assert "could not be reached" not in throttled.value.message


def test_error_internal_server_error_is_transient_and_a_read_is_sent_again(ews: Any) -> None:
    ews.log.clear()
    ews.answer_internal_error(times=1)
    connection = connect(ews, ALICE, read_retry_waits=(0.01,))
    connection.verify()
    details = [d for target, _, d in statuses(ews, ALICE) if target == "GetFolder"]
    assert details[:2] == ["ErrorInternalServerError", "NoError"]
    from exchangelib.errors import ErrorInternalServerError

    assert isinstance(side_error(ErrorInternalServerError("busy")), Unavailable)


def test_update_folder_without_a_current_change_key_is_a_conflict(ews: Any) -> None:
    connection = connect(ews, ALICE)
    folder = claims.hidden_folder(connection)
    stale_key = folder.changekey
    setattr(folder, claims.CLAIM_FIELD, '{"org_id": "a"}')
    connection.call(lambda: folder.save(update_fields=[claims.CLAIM_FIELD]))

    def write_with(changekey: str | None) -> None:
        copy = Folder(root=connection.account.root, id=folder.id, changekey=changekey)
        setattr(copy, claims.CLAIM_FIELD, '{"org_id": "b"}')
        copy.save(update_fields=[claims.CLAIM_FIELD])

    for changekey in (stale_key, None):  # stale, then missing
        with pytest.raises(Conflict) as lost:
            connection.call(lambda key=changekey: write_with(key))
        assert lost.value.code == "ErrorChangeKeyRequiredForWriteOperations"
    assert getattr(claims.hidden_folder(connection), claims.CLAIM_FIELD) == '{"org_id": "a"}'


def test_ntlm_reaches_exchangelib_and_no_password_is_sent_in_clear(ews: Any) -> None:
    """exchangelib's NTLM auth type signs in through requests_ntlm. The sandbox speaks no NTLM
    (sandbox/README.md), so it refuses the request, which proves no Basic header was sent."""
    connection = EwsConnection(
        ews.url, ALICE, NtlmAuth("CONTOSO\\alice", "alice-Sandbox-1"), ca_file=ews.ca_file
    )
    assert connection.config.auth_type == NTLM
    assert connection.config.credentials.username == "CONTOSO\\alice"
    session = connection.account.protocol.create_session()
    assert isinstance(session.auth, HttpNtlmAuth) and session.auth.username == "CONTOSO\\alice"
    with pytest.raises(AuthError):
        fresh(connection).verify()
    assert "alice-Sandbox-1" not in repr(connection.auth)


def test_the_mailbox_form_offers_ntlm_with_a_windows_account() -> None:
    config, secrets = parse_mailbox_form(
        {"type": "exchange", "email": ALICE, "auth": "ntlm", "username": "CONTOSO\\alice",
         "password": "pw", "ews_url": "https://mail.contoso.example/EWS/Exchange.asmx"}
    )  # fmt: skip
    assert config.auth == "ntlm" and config.username == "CONTOSO\\alice"
    assert secrets["mailbox_password"] == "pw"
    with pytest.raises(FormErrors) as missing:
        parse_mailbox_form({"type": "exchange", "email": ALICE, "auth": "ntlm"})
    assert set(missing.value.errors) == {"username", "password"}
    with pytest.raises(FormErrors):
        parse_mailbox_form({"type": "exchange", "email": ALICE, "auth": "kerberos"})


def test_a_claim_is_never_written_without_its_change_key(
    ews: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's UpdateFolder must carry the ChangeKey it was read with (responsecode.md:
    "the caller must pass in a correct and current change key"): a folder that came back
    without one is read again rather than written unconditionally."""
    connection = connect(ews, BOB)
    real = claims.hidden_folder

    def keyless(conn: Any, create: bool = True) -> Any:
        folder = real(conn, create)
        if folder is not None:
            folder.changekey = None
        return folder

    monkeypatch.setattr(claims, "hidden_folder", keyless)
    mine = claims.Claim("https://contoso.example", "org-1", "pc-1", "PC one")
    taken = claims.take_claim(connection, mine, claims.read_claim(connection))
    assert taken.same_owner(mine)
    monkeypatch.setattr(claims, "hidden_folder", real)
    assert claims.read_claim(connection) == taken
