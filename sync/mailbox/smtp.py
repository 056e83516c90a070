"""Send mail through an SMTP submission server (STARTTLS or implicit TLS, always AUTH).

A POP3 account sends its mail here. Sending returns the new Message-Id: the only reference a
sent message has, used to correlate replies and to recognise the copy if it comes back.
SMTP replies become side errors: a refused password is `AuthError`, refused recipients or a
refused message are `Invalid` (retrying the same data will not help), anything transient or
network-level is `Unavailable`.
"""

from __future__ import annotations

import email.utils
import smtplib
import ssl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, ClassVar

from sync.mailbox.mime import Attachment, build_message, recipients, utc_moment
from sync.mailbox.server_settings import (
    Security,
    ServerSettings,
    client_tls_context,
    tls_refused,
)
from sync.sides import AuthError, Invalid, SideError, Unavailable


@dataclass(frozen=True)
class SmtpSettings(ServerSettings):
    """Where and how to send. Plain-text SMTP is deliberately not offered."""

    PROTOCOL: ClassVar[str] = "SMTP"
    SSL_PORT: ClassVar[int] = 465
    STARTTLS_PORT: ClassVar[int] = 587

    security: Security = "starttls"
    sender: str | None = None
    """The From address; defaults to the user name when that is an address."""

    @property
    def from_address(self) -> str | None:
        if self.sender:
            return self.sender
        return self.username if "@" in self.username else None


@dataclass(frozen=True)
class SentMail:
    """A message the server accepted: its Message-Id and the recipients it refused, if any."""

    message_id: str
    sender: str
    sent: str
    """When the server accepted it (moment, UTC; the Date header carries the same second)."""
    refused: dict[str, str] = field(default_factory=dict)
    """address → server reply, for recipients refused while others were accepted."""


def _reply(error: smtplib.SMTPResponseException) -> str:
    text = error.smtp_error
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{error.smtp_code} {text}".strip()


def _response_error(error: smtplib.SMTPResponseException, where: str) -> SideError:
    if 500 <= error.smtp_code < 600:
        return Invalid(f"SMTP server {where} refused the message: {_reply(error)}", code="smtp")
    return Unavailable(f"SMTP server {where} failed for now: {_reply(error)}", code="smtp")


def _envelope(fields: Mapping[str, Any]) -> list[str]:
    """The addresses to send to (to, cc and bcc); `Invalid` when there are none."""
    envelope = recipients(fields)
    if not envelope:
        raise Invalid("the message has no recipients (to, cc or bcc)", code="no-recipients")
    return envelope


class SmtpSession:
    """One authenticated connection; send several messages on it."""

    def __init__(self, settings: SmtpSettings, conn: smtplib.SMTP) -> None:
        self.settings = settings
        self.conn = conn
        self.where = settings.where

    def send(
        self,
        fields: Mapping[str, Any],
        *,
        key: str | None = None,
        attachments: Sequence[Attachment] = (),
        message_id: str | None = None,
    ) -> SentMail:
        """Build the message from the vocabulary and send it; raises a SideError on failure.

        `message_id`: the Message-Id to send with (outgoing CRM email chooses it before sending,
        so a retry is recognisable); by default a fresh one."""
        envelope = _envelope(fields)
        try:
            message = build_message(
                fields, key=key, attachments=attachments, sender=self.settings.from_address
            )
            if message_id:
                message.replace_header("Message-Id", message_id)
        except (ValueError, TypeError) as error:  # e.g. a line break smuggled into a header
            raise Invalid(f"the message cannot be built: {error}", code="mime") from None
        return self.send_message(message, envelope)

    def send_message(self, message: EmailMessage, envelope: Sequence[str]) -> SentMail:
        """Send a built message to `envelope`; the message must carry From and Message-Id."""
        sender = message["From"]
        if not sender:
            raise Invalid("the message has no sender (From)", code="no-sender")
        from_address = sender.addresses[0].addr_spec if hasattr(sender, "addresses") else sender
        try:
            refused = self.conn.send_message(message, from_address, list(envelope))
        except smtplib.SMTPRecipientsRefused as error:
            detail = "; ".join(
                f"{address}: {code} {reply.decode('utf-8', 'replace')}"
                for address, (code, reply) in error.recipients.items()
            )
            raise Invalid(
                f"SMTP server {self.where} refused every recipient: {detail}", code="recipients"
            ) from None
        except smtplib.SMTPSenderRefused as error:
            raise Invalid(
                f"SMTP server {self.where} refused the sender {from_address}: {_reply(error)}",
                code="sender",
            ) from None
        except smtplib.SMTPResponseException as error:
            raise _response_error(error, self.where) from None
        except (smtplib.SMTPException, OSError) as error:
            raise Unavailable(f"sending through {self.where} failed: {error}") from None
        return SentMail(
            message_id=str(message["Message-Id"]),
            sender=from_address,
            sent=utc_moment(email.utils.parsedate_to_datetime(str(message["Date"]))),
            refused={
                address: f"{code} {reply.decode('utf-8', 'replace')}"
                for address, (code, reply) in refused.items()
            },
        )


class SmtpSender:
    """Opens authenticated TLS sessions to the submission server."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        where = settings.where
        context = client_tls_context(settings.ca_file)
        conn: smtplib.SMTP | None = None
        try:
            if settings.security == "ssl":
                conn = smtplib.SMTP_SSL(
                    settings.host,
                    settings.effective_port,
                    timeout=settings.timeout,
                    context=context,
                )
                conn.ehlo()
            else:
                conn = smtplib.SMTP(
                    settings.host, settings.effective_port, timeout=settings.timeout
                )
                conn.ehlo()
                if not conn.has_extn("starttls"):
                    raise Unavailable(
                        f"SMTP server {where} does not offer STARTTLS, so the password is not sent",
                        code="starttls",
                    )
                conn.starttls(context=context)
                conn.ehlo()
            _authenticate(conn, settings)
            return conn
        except SideError:
            _close(conn)
            raise
        except smtplib.SMTPAuthenticationError as error:
            _close(conn)
            raise AuthError(
                f"SMTP server {where} refused the user name or password for "
                f"{settings.username!r}: {_reply(error)}",
                code="smtp-auth",
            ) from None
        except smtplib.SMTPNotSupportedError as error:
            _close(conn)
            raise AuthError(
                f"SMTP server {where} cannot authenticate us: {error}", code="smtp-auth"
            ) from None
        except ssl.SSLCertVerificationError as error:
            _close(conn)
            raise Unavailable(
                f"the TLS certificate of SMTP server {where} is not trusted: {error.verify_message}",
                code="tls",
            ) from None
        except ssl.SSLError as error:
            _close(conn)
            raise tls_refused("SMTP", where, error) from None
        except smtplib.SMTPResponseException as error:
            _close(conn)
            raise _response_error(error, where) from None
        except (smtplib.SMTPException, OSError) as error:
            _close(conn)
            raise Unavailable(
                f"cannot connect to SMTP server {where}: {error}", code="connect"
            ) from None

    @contextmanager
    def session(self) -> Iterator[SmtpSession]:
        """An authenticated session, closed (QUIT) at the end of the block."""
        conn = self._connect()
        try:
            yield SmtpSession(self.settings, conn)
        finally:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                _close(conn)

    def send(
        self,
        fields: Mapping[str, Any],
        *,
        key: str | None = None,
        attachments: Sequence[Attachment] = (),
        message_id: str | None = None,
    ) -> SentMail:
        """Send one message on its own connection; returns its Message-Id."""
        _envelope(fields)  # before connecting: no recipients is no reason to log in
        with self.session() as session:
            return session.send(fields, key=key, attachments=attachments, message_id=message_id)


def _authenticate(conn: smtplib.SMTP, settings: SmtpSettings) -> None:
    """AUTH with one mechanism (PLAIN, else LOGIN, else CRAM-MD5), never a second try.

    smtplib's `login()` retries every mechanism after a refusal; one wrong password then costs
    several failed attempts, which brings account lock-outs sooner (and some servers stall).
    """
    offered = set(conn.esmtp_features.get("auth", "").upper().split())
    conn.user, conn.password = settings.username, settings.password
    if "PLAIN" in offered:
        conn.auth("PLAIN", conn.auth_plain)
    elif "LOGIN" in offered:
        conn.auth("LOGIN", conn.auth_login, initial_response_ok=False)
    elif "CRAM-MD5" in offered:
        conn.auth("CRAM-MD5", conn.auth_cram_md5, initial_response_ok=False)
    else:
        raise smtplib.SMTPNotSupportedError("the server offers no AUTH mechanism we support")


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        with suppress(OSError):
            conn.close()
