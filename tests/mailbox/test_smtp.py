"""The SMTP sender and the POP3 side's sending, against a real aiosmtpd server (STARTTLS, AUTH)."""

from __future__ import annotations

import email
import re
from email import policy
from typing import Any

import pytest

from sync.mailbox.mime import KEY_HEADER, Attachment, build_message, parse_message, recipients
from sync.mailbox.pop3 import Pop3Settings
from sync.mailbox.pop3_side import Pop3Side
from sync.mailbox.smtp import SmtpSender, SmtpSettings
from sync.sides import AuthError, CreateOp, DeleteOp, Invalid, Unavailable, UpdateOp, Written
from tests.mailbox.dovecot import free_port

# aiosmtpd warns about AUTH without STARTTLS on the implicit-TLS server, which is TLS throughout
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

REFUSED_DOMAIN = "refused.example"  # the test server refuses this domain (conftest)
REPLY_TO = "<original.123@crm.example>"
FIELDS: dict[str, Any] = {
    "subject": "Angebot für Q3 — Rückfrage",
    "to": ["Bob Buyer <bob@customer.example>"],
    "cc": ["carol@customer.example"],
    "bcc": ["audit@example.test"],
    "in_reply_to": REPLY_TO,
    "references": "<root.1@crm.example> " + REPLY_TO,
    "body": "<p>Hello <b>Bob</b></p>",
    "body_type": "HTML",
}


def settings_for(server: Any, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": server.user,
        "password": server.password,
        "security": "starttls",
        "ca_file": server.ca_file,
        "timeout": 10,
    }
    values.update(overrides)
    return SmtpSettings(**values)


def arrived(server: Any) -> tuple[Any, email.message.EmailMessage]:
    (envelope,) = server.messages()
    return envelope, email.message_from_bytes(envelope.original_content, policy=policy.default)


def test_sent_message_arrives_with_headers_over_starttls(smtp: Any) -> None:
    sent = SmtpSender(settings_for(smtp)).send(FIELDS, key="crm-guid-1")

    envelope, message = arrived(smtp)
    assert message["Message-Id"] == sent.message_id
    assert sent.message_id.startswith("<") and sent.message_id.endswith("@example.test>")
    assert message["From"] == smtp.user
    assert message["To"].addresses[0].addr_spec == "bob@customer.example"
    assert message["Cc"] == "carol@customer.example"
    assert message["Subject"] == FIELDS["subject"]
    assert message["In-Reply-To"] == REPLY_TO
    assert message["References"] == FIELDS["references"]
    assert message[KEY_HEADER] == "crm-guid-1"
    assert message["Bcc"] is None  # Bcc only travels in the envelope
    assert envelope.mail_from == smtp.user
    assert sorted(envelope.rcpt_tos) == [
        "audit@example.test",
        "bob@customer.example",
        "carol@customer.example",
    ]
    assert message.get_body(("html",)).get_content().strip() == FIELDS["body"]
    assert sent.refused == {}


def test_implicit_tls_works(smtps_server: Any) -> None:
    smtps_server.reset()
    sender = SmtpSender(settings_for(smtps_server, security="ssl"))
    sent = sender.send({"to": ["x@example.test"], "subject": "over SMTPS", "body": "hi"})
    _, message = arrived(smtps_server)
    assert message["Message-Id"] == sent.message_id
    assert message["Subject"] == "over SMTPS"


def test_wrong_password_is_auth_error(smtp: Any) -> None:
    with pytest.raises(AuthError) as caught:
        SmtpSender(settings_for(smtp, password="wrong")).send(FIELDS)
    assert "refused the user name or password" in caught.value.message
    assert smtp.user in caught.value.message
    assert smtp.messages() == []
    assert smtp.auth_attempts == [smtp.user]


def test_all_recipients_refused_is_invalid(smtp: Any) -> None:
    fields = {"to": [f"nobody@{REFUSED_DOMAIN}"], "subject": "x", "body": "x"}
    with pytest.raises(Invalid) as caught:
        SmtpSender(settings_for(smtp)).send(fields)
    assert f"nobody@{REFUSED_DOMAIN}" in caught.value.message
    assert "550" in caught.value.message
    assert smtp.messages() == []


def test_some_recipients_refused_still_sends_and_reports_them(smtp: Any) -> None:
    fields = {"to": ["ok@example.test", f"gone@{REFUSED_DOMAIN}"], "subject": "x", "body": "x"}
    sent = SmtpSender(settings_for(smtp)).send(fields)
    envelope, _ = arrived(smtp)
    assert envelope.rcpt_tos == ["ok@example.test"]
    assert list(sent.refused) == [f"gone@{REFUSED_DOMAIN}"]


def test_no_recipients_is_invalid_without_connecting(smtp: Any) -> None:
    with pytest.raises(Invalid):
        SmtpSender(settings_for(smtp)).send({"subject": "nobody", "body": ""})
    assert smtp.auth_attempts == []


def test_untrusted_certificate_is_refused(smtp: Any) -> None:
    # the system CA store does not trust the test CA: certificate checks are on
    with pytest.raises(Unavailable) as caught:
        SmtpSender(settings_for(smtp, ca_file=None)).send(FIELDS)
    assert caught.value.code == "tls"
    assert smtp.auth_attempts == []


def test_server_without_starttls_gets_no_password(smtp_plain_server: Any) -> None:
    smtp_plain_server.reset()
    with pytest.raises(Unavailable) as caught:
        SmtpSender(settings_for(smtp_plain_server)).send(FIELDS)
    assert caught.value.code == "starttls"
    assert smtp_plain_server.auth_attempts == []


def test_nothing_listening_is_unavailable() -> None:
    settings = SmtpSettings(
        host="127.0.0.1", port=free_port(), username="u", password="p", timeout=5
    )
    with pytest.raises(Unavailable) as caught:
        SmtpSender(settings).send(FIELDS)
    assert caught.value.code == "connect"


def _side(smtp_settings: SmtpSettings | None) -> Pop3Side:
    # POP3 is never contacted by write(); an unreachable POP3 server proves it.
    pop3 = Pop3Settings(host="127.0.0.1", port=free_port(), username="u", password="p")
    return Pop3Side(pop3, smtp_settings)


def test_side_write_sends_creates_and_refuses_updates_and_deletes(smtp: Any) -> None:
    side = _side(settings_for(smtp))
    ops = [
        CreateOp(key="crm-1", fields={**FIELDS, "subject": "first"}),
        UpdateOp(id="<x@y>", version=None, fields={"subject": "changed"}),
        CreateOp(key="crm-2", fields={"to": [f"x@{REFUSED_DOMAIN}"], "subject": "bad"}),
        DeleteOp(id="<x@y>", version=None),
        CreateOp(key="crm-3", fields={**FIELDS, "subject": "third"}),
        CreateOp(key="crm-4", fields={"to": ["ok@x.example", f"y@{REFUSED_DOMAIN}"]}),
    ]
    results = side.write("messages", ops)

    assert [type(r) for r in results] == [Written, Invalid, Invalid, Invalid, Written, Written]
    first, third, partial = results[0], results[4], results[5]
    assert isinstance(partial, Written)
    assert list(partial.fields["refused_recipients"]) == [f"y@{REFUSED_DOMAIN}"]
    assert isinstance(first, Written) and isinstance(third, Written)
    received = {
        email.message_from_bytes(e.original_content, policy=policy.default)["Message-Id"]: e
        for e in smtp.messages()
    }
    assert set(received) == {first.id, third.id, partial.id}
    assert first.fields["message_id"] == first.id
    assert first.fields["subject"] == "first"
    assert first.fields["sender"] == smtp.user
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first.fields["sent"])
    by_subject = {
        email.message_from_bytes(e.original_content, policy=policy.default)["Subject"]: e
        for e in smtp.messages()
    }
    keyed = email.message_from_bytes(by_subject["third"].original_content, policy=policy.default)
    assert keyed[KEY_HEADER] == "crm-3"
    assert smtp.auth_attempts == [smtp.user]  # one connection for the whole batch


def test_side_write_wrong_password_gives_auth_error_per_create(smtp: Any) -> None:
    side = _side(settings_for(smtp, password="wrong"))
    ops = [CreateOp(key="a", fields=FIELDS), CreateOp(key="b", fields=FIELDS)]
    results = side.write("messages", ops)
    assert all(isinstance(r, AuthError) for r in results)
    assert smtp.messages() == []


def test_side_write_without_smtp_is_invalid() -> None:
    (result,) = _side(None).write("messages", [CreateOp(key="a", fields=FIELDS)])
    assert isinstance(result, Invalid)


def test_build_and_parse_round_trip() -> None:
    message = build_message(
        FIELDS,
        key="crm-9",
        sender="me@example.test",
        attachments=[Attachment("offer.pdf", b"%PDF-1.4 " * 100, "application/pdf")],
    )
    parsed = parse_message(message.as_bytes())
    assert parsed["message_id"] == message["Message-Id"]
    assert parsed["sender"] == "me@example.test"
    assert parsed["to"] == ["bob@customer.example"]
    assert parsed["cc"] == ["carol@customer.example"]
    assert parsed["bcc"] == []
    assert parsed["subject"] == FIELDS["subject"]
    assert parsed["in_reply_to"] == REPLY_TO
    assert parsed["references"] == FIELDS["references"]
    assert parsed["body_type"] == "HTML"
    assert parsed["body"].strip() == FIELDS["body"]
    assert parsed["attachments"] == [
        {"name": "offer.pdf", "size": 900, "content_type": "application/pdf"}
    ]
    assert parsed["has_attachments"] is True
    assert parsed["key"] == "crm-9"
    assert recipients(FIELDS) == [
        "bob@customer.example",
        "carol@customer.example",
        "audit@example.test",
    ]
    # every message gets its own Message-Id
    assert build_message(FIELDS)["Message-Id"] != build_message(FIELDS)["Message-Id"]


def test_header_injection_is_invalid_and_sends_nothing(smtp: Any) -> None:
    fields = {"to": ["a@example.test\r\nBcc: evil@attacker.example"], "subject": "x"}
    with pytest.raises(Invalid) as caught:
        SmtpSender(settings_for(smtp)).send(fields)
    assert caught.value.code == "mime"
    assert smtp.messages() == []
