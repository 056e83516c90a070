"""The POP3 reader and side against a real Dovecot (POP3S and STARTTLS), and MIME parsing."""

from __future__ import annotations

import json
import poplib
from pathlib import Path
from typing import Any

import pytest

from sync.mailbox.mime import parse_message
from sync.mailbox.pop3 import Pop3Reader, Pop3Settings, Pop3State
from sync.mailbox.pop3_side import Pop3Side
from sync.mailbox.smtp import SmtpSender, SmtpSettings
from sync.sides import (
    AuthError,
    Invalid,
    MailboxSide,
    Page,
    TokenExpired,
    Unavailable,
    UpdateOp,
    Upsert,
)
from tests.mailbox.dovecot import free_port


def raw_message(number: int, **headers: str) -> bytes:
    values = {
        "From": f"Sender {number} <sender{number}@customer.example>",
        "To": "pop.tester@example.test",
        "Subject": f"Message {number}",
        "Date": "Tue, 24 Nov 2026 10:00:00 +0200",
        "Message-Id": f"<msg-{number}@customer.example>",
    }
    values.update(headers)
    head = "".join(f"{name}: {value}\r\n" for name, value in values.items())
    return (head + f"\r\nBody of message {number}.\r\n.leading dot line\r\n").encode()


def settings_for(server: Any, security: str = "ssl", **overrides: Any) -> Pop3Settings:
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.pop3s_port if security == "ssl" else server.pop3_port,
        "username": server.user,
        "password": server.password,
        "security": security,
        "ca_file": server.tls.ca_file,
        "timeout": 10,
    }
    values.update(overrides)
    return Pop3Settings(**values)


def server_count(server: Any) -> int:
    """STAT through a plain poplib session, independent of the adapter."""
    conn = poplib.POP3_SSL(server.host, server.pop3s_port, context=server.tls.client_context())
    try:
        conn.user(server.user)
        conn.pass_(server.password)
        return int(conn.stat()[0])
    finally:
        conn.quit()


def read_all(side: Pop3Side, token: str | None) -> tuple[list[Upsert], list[Page]]:
    pages = list(side.read_changes("messages", token))
    changes = [c for page in pages for c in page.changes]
    assert all(isinstance(c, Upsert) for c in changes)
    return changes, pages  # type: ignore[return-value]


@pytest.mark.dovecot
@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_new_messages_are_picked_up_by_uidl(dovecot: Any, security: str) -> None:
    side = Pop3Side(settings_for(dovecot, security))
    assert isinstance(side, MailboxSide)
    for number in (1, 2, 3):
        dovecot.deliver(raw_message(number))

    changes, pages = read_all(side, None)
    assert [c.fields["message_id"] for c in changes] == [
        "<msg-1@customer.example>",
        "<msg-2@customer.example>",
        "<msg-3@customer.example>",
    ]
    first = changes[0]
    assert first.fields["subject"] == "Message 1"
    assert first.fields["sender"] == "sender1@customer.example"
    assert first.fields["to"] == ["pop.tester@example.test"]
    assert first.fields["sent"] == "2026-11-24T08:00:00Z"
    assert first.fields["body"].startswith("Body of message 1.")
    assert ".leading dot line" in first.fields["body"]  # POP3 dot-stuffing undone
    assert first.fields["folder"] == "inbox"
    assert len({c.id for c in changes}) == 3  # ids are the UIDLs
    token = pages[-1].token
    assert token is not None and pages[-1].last

    dovecot.deliver(raw_message(4))
    dovecot.deliver(raw_message(5))
    changes, pages = read_all(side, token)
    assert [c.fields["message_id"] for c in changes] == [
        "<msg-4@customer.example>",
        "<msg-5@customer.example>",
    ]

    changes, pages = read_all(side, pages[-1].token)
    assert changes == []
    assert len(pages) == 1 and pages[0].last and pages[0].token is not None


@pytest.mark.dovecot
def test_reading_deletes_nothing_on_the_server(dovecot: Any) -> None:
    for number in range(1, 5):
        dovecot.deliver(raw_message(number))
    files_before = len(dovecot.message_files())
    assert server_count(dovecot) == 4

    side = Pop3Side(settings_for(dovecot))
    changes, _ = read_all(side, None)
    assert len(changes) == 4
    assert side.read("messages", [changes[0].id])[changes[0].id].fields["subject"] == "Message 1"

    assert server_count(dovecot) == 4
    assert len(dovecot.message_files()) == files_before == 4
    log = dovecot.log_file.read_text()
    assert "del=0/" in log and "del=1/" not in log  # Dovecot's own count of DELEs per session


@pytest.mark.dovecot
def test_restart_with_saved_state_does_not_reread(dovecot: Any, tmp_path: Path) -> None:
    for number in (1, 2):
        dovecot.deliver(raw_message(number))
    _, pages = read_all(Pop3Side(settings_for(dovecot)), None)
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps({"token": pages[-1].token}))

    dovecot.deliver(raw_message(3))
    # a new process: new objects, the token read back from disk, STARTTLS this time
    restarted = Pop3Side(settings_for(dovecot, "starttls"))
    saved = json.loads(state_file.read_text())["token"]
    changes, _ = read_all(restarted, saved)
    assert [c.fields["message_id"] for c in changes] == ["<msg-3@customer.example>"]


@pytest.mark.dovecot
def test_pages_resume_after_an_interruption(dovecot: Any) -> None:
    for number in range(1, 6):
        dovecot.deliver(raw_message(number))
    side = Pop3Side(settings_for(dovecot), page_size=2)

    pages = side.read_changes("messages", None)
    first = next(pages)
    pages.close()  # the process dies after applying the first page
    assert [c.fields["subject"] for c in first.changes] == ["Message 1", "Message 2"]
    assert first.token is not None and not first.last

    changes, rest = read_all(side, first.token)
    assert [c.fields["subject"] for c in changes] == ["Message 3", "Message 4", "Message 5"]
    assert [len(p.changes) for p in rest] == [2, 1]
    assert rest[-1].last and not rest[0].last


@pytest.mark.dovecot
def test_state_forgets_messages_gone_from_the_server(dovecot: Any) -> None:
    paths = [dovecot.deliver(raw_message(number)) for number in (1, 2, 3)]
    side = Pop3Side(settings_for(dovecot))
    _, pages = read_all(side, None)
    assert len(Pop3State.from_token(pages[-1].token).seen) == 3

    # another client removes a message; Dovecot moved it from new/ to cur/ on our first read
    gone = next(p for p in dovecot.message_files() if p.name.startswith(paths[0].name))
    gone.unlink()
    changes, pages = read_all(side, pages[-1].token)
    assert changes == []
    assert len(Pop3State.from_token(pages[-1].token).seen) == 2


@pytest.mark.dovecot
@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_wrong_password_is_auth_error(dovecot: Any, security: str) -> None:
    side = Pop3Side(settings_for(dovecot, security, password="not the password"))
    with pytest.raises(AuthError) as caught:
        list(side.read_changes("messages", None))
    assert "refused the user name or password" in caught.value.message
    assert dovecot.user in caught.value.message
    assert "not the password" not in caught.value.message


@pytest.mark.dovecot
def test_untrusted_certificate_is_unavailable(dovecot: Any) -> None:
    side = Pop3Side(settings_for(dovecot, ca_file=None))  # system CAs do not know the test CA
    with pytest.raises(Unavailable) as caught:
        list(side.read_changes("messages", None))
    assert caught.value.code == "tls"


def test_nothing_listening_is_unavailable() -> None:
    settings = Pop3Settings(host="127.0.0.1", port=free_port(), username="u", password="p")
    with pytest.raises(Unavailable) as caught:
        list(Pop3Side(settings).read_changes("messages", None))
    assert caught.value.code == "connect"


@pytest.mark.dovecot
def test_sent_mail_coming_back_carries_its_key(dovecot: Any, smtp: Any) -> None:
    smtp_settings = SmtpSettings(
        host=smtp.host,
        port=smtp.port,
        username=smtp.user,
        password=smtp.password,
        ca_file=smtp.ca_file,
        timeout=10,
    )
    sent = SmtpSender(smtp_settings).send(
        {"to": [dovecot.user], "subject": "to myself", "body": "hi"}, key="crm-guid-7"
    )
    (envelope,) = smtp.messages()
    dovecot.deliver(envelope.original_content)

    (change,), _ = read_all(Pop3Side(settings_for(dovecot)), None)
    assert change.key == "crm-guid-7"
    assert change.fields["message_id"] == sent.message_id
    assert "key" not in change.fields


def test_bad_token_is_token_expired() -> None:
    with pytest.raises(TokenExpired):
        Pop3State.from_token("something else")
    with pytest.raises(TokenExpired):
        Pop3State.from_token("pop3uidl1:!!!not-base64")
    state = Pop3State(frozenset({"00000001abc", "00000002abc"}))
    assert Pop3State.from_token(state.to_token()) == state
    assert Pop3State.from_token(None) == Pop3State()


def test_token_stays_compact() -> None:
    uidls = {f"{n:08X}6b06b904" for n in range(1, 20_001)}
    token = Pop3State(frozenset(uidls)).to_token()
    assert Pop3State.from_token(token).seen == uidls
    assert len(token) < 16 * len(uidls)  # far below the 16+ bytes of raw UIDLs each


def test_side_only_does_messages_and_only_sends() -> None:
    side = Pop3Side(Pop3Settings(host="127.0.0.1", username="u", password="p"))
    with pytest.raises(ValueError):
        list(side.read_changes("contacts", None))
    (result,) = side.write("messages", [UpdateOp(id="1", version=None, fields={"subject": "x"})])
    assert isinstance(result, Invalid)
    assert side.find_by_key("messages", ["crm-1"]) == {}


def test_page_tokens_are_bounded_on_a_big_first_read() -> None:
    class FakeReader(Pop3Reader):
        def new_messages(self, state: Pop3State, batch_size: int = 50) -> Any:
            from sync.mailbox.pop3 import NewBatch, NewMessage

            total = 1000
            for start in range(0, total, batch_size):
                chunk = [
                    NewMessage(f"u{n}", raw_message(n)) for n in range(start, start + batch_size)
                ]
                state = state.with_seen(m.uidl for m in chunk)
                yield NewBatch(chunk, state, start + batch_size >= total, total)

    side = Pop3Side(FakeReader(Pop3Settings("h", "u", "p")), page_size=10)
    pages = list(side.read_changes("messages", None))
    assert len(pages) == 100
    with_token = [p for p in pages if p.token is not None]
    assert 2 <= len(with_token) <= 33 and pages[-1].token is not None
    assert len(Pop3State.from_token(pages[-1].token).seen) == 1000


# --- MIME parsing of what POP3 returns -------------------------------------------------------


MULTIPART = b"""From: =?utf-8?q?Ren=C3=A9e_M=C3=BCller?= <renee@kunde.example>
To: "Support, Team" <support@example.test>, other@example.test
Cc: cc@example.test
Subject: =?utf-8?b?QW5nZWJvdCBmw7xyIFEz?=
Date: Mon, 23 Nov 2026 23:30:00 -0500
Message-ID: <abc.42@kunde.example>
In-Reply-To: <crm.1@example.test>
References: <root@example.test>
 <crm.1@example.test>
Thread-Index: AQHZ1234abcd==
Received: from mx.example by pop.example; Tue, 24 Nov 2026 04:31:02 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8

Hallo
--inner
Content-Type: text/html; charset=utf-8

<p>Hallo</p>
--inner--
--outer
Content-Type: application/pdf; name="angebot.pdf"
Content-Disposition: attachment; filename="angebot.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer--
""".replace(b"\n", b"\r\n")


def test_parse_multipart_message() -> None:
    fields = parse_message(MULTIPART)
    assert fields["subject"] == "Angebot für Q3"
    assert fields["sender"] == "renee@kunde.example"
    assert fields["to"] == ["support@example.test", "other@example.test"]
    assert fields["cc"] == ["cc@example.test"]
    assert fields["message_id"] == "<abc.42@kunde.example>"
    assert fields["in_reply_to"] == "<crm.1@example.test>"
    assert fields["references"] == "<root@example.test> <crm.1@example.test>"
    assert fields["conversation_index"] == "AQHZ1234abcd=="
    assert fields["sent"] == "2026-11-24T04:30:00Z"
    assert fields["received"] == "2026-11-24T04:31:02Z"
    assert fields["body_type"] == "HTML"
    assert fields["body"].strip() == "<p>Hallo</p>"
    assert fields["attachments"] == [
        {"name": "angebot.pdf", "size": 9, "content_type": "application/pdf"}
    ]
    assert fields["has_attachments"] is True


def test_parse_tolerates_broken_headers() -> None:
    raw = (
        b"From: not an address\r\nDate: yesterday-ish\r\nSubject: =?bogus?q?x?=\r\n"
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nbody \xff\r\n"
    )
    fields = parse_message(raw)
    assert fields["sent"] is None and fields["received"] is None
    assert fields["message_id"] is None
    assert fields["to"] == []
    assert fields["body_type"] == "Text"
    assert "body" in fields["body"]
