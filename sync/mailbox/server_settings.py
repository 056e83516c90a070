"""What POP3 and SMTP accounts have in common: where the server is, how TLS is set up, the login.

Both protocols are offered over TLS only (implicit TLS or STARTTLS), with certificate checks, so
the settings, their validation and the TLS context live here once."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from sync.sides import Unavailable

Security = Literal["ssl", "starttls"]
"""`ssl`: TLS from the first byte (POP3S 995, SMTPS 465); `starttls`: plain connect, then the
protocol's STARTTLS / STLS (POP3 110, submission 587)."""


def client_tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """TLS 1.2 or later with certificate and host name checks; `ca_file` adds trusted CAs.

    With a CA file only that file is trusted (a private or test CA); without, the system store.
    """
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def tls_refused(protocol: str, where: str, error: ssl.SSLError) -> Unavailable:
    """A failed TLS handshake (not a certificate's fault) in words: most often the server
    offers only TLS older than 1.2, which we refuse, so the password is never sent."""
    reason = error.reason or str(error)
    return Unavailable(
        f"the TLS handshake with {protocol} server {where} failed ({reason}): TLS 1.2 or later "
        "is required; ask the mail provider to enable it",
        code="tls",
    )


@dataclass(frozen=True)
class ServerSettings:
    """A mail server account. Subclasses name the protocol and its default ports."""

    PROTOCOL: ClassVar[str] = ""
    SSL_PORT: ClassVar[int] = 0
    STARTTLS_PORT: ClassVar[int] = 0

    host: str
    username: str
    password: str = field(repr=False)
    port: int | None = None
    security: Security = "ssl"
    ca_file: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.security not in ("ssl", "starttls"):
            raise ValueError(
                f"{self.PROTOCOL} security must be 'ssl' or 'starttls', not {self.security!r}"
            )

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return self.SSL_PORT if self.security == "ssl" else self.STARTTLS_PORT

    @property
    def where(self) -> str:
        """`host:port`, as error messages name the server."""
        return f"{self.host}:{self.effective_port}"
