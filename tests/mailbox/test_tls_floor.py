"""Every client refuses a server that offers only TLS older than 1.2 (DESIGN.md §3, "TLS").

A local server on 127.0.0.1 speaks TLS 1.0/1.1 only. Python 3.10+ and OpenSSL 3 refuse such a
server by default already (minimum TLS 1.2, security level 2), which would hide a client that
forgot its own floor; so the clients are tried on a platform made lenient for the test (every
new SSL context starts at security level 0 and the lowest protocol, as older Pythons and some
system crypto policies do): only the client's own TLS 1.2 floor can refuse there. A control
client without a floor proves the server really answers over TLS 1.1 on this platform; when
the platform cannot speak TLS 1.1 at all the tests skip, saying so.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.tls import TlsMaterial, make_tls_material
from sync.mailbox.ews_connection import BasicAuth, EwsConnection
from sync.mailbox.pop3 import Pop3Session, Pop3Settings
from sync.mailbox.smtp import SmtpSender, SmtpSettings
from sync.sides import Unavailable

with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point here
    warnings.simplefilter("ignore", DeprecationWarning)
    OLDEST, OLD = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1


def _lenient(context: ssl.SSLContext) -> ssl.SSLContext:
    """Let `context` speak TLS 1.0/1.1 (security level 0, lowest protocol)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = OLDEST
    return context


class OldTlsServer:
    """TCP on 127.0.0.1, TLS 1.0/1.1 only. Before the handshake it may play a plain-text
    `script` (sent first, then one reply per line read: POP3 STLS, SMTP STARTTLS); after a
    handshake it sends `after` and closes. It records each handshake's outcome."""

    def __init__(
        self, material: TlsMaterial, script: Sequence[bytes] = (), after: bytes = b""
    ) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _lenient(context)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.maximum_version = OLD
        context.load_cert_chain(material.cert_file, material.key_file)
        self.context = context
        self.script, self.after = list(script), after
        self.handshakes: list[str] = []
        """The version of each completed handshake, or "refused: <reason>"."""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _address = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._one, args=(raw,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            with raw:
                if self.script:
                    lines = raw.makefile("rb")
                    raw.sendall(self.script[0])
                    for reply in self.script[1:]:
                        lines.readline()
                        raw.sendall(reply)
                try:
                    tls = self.context.wrap_socket(raw, server_side=True)
                except (ssl.SSLError, OSError) as refused:
                    self.handshakes.append(f"refused: {getattr(refused, 'reason', refused)}")
                    return
                with tls:
                    self.handshakes.append(str(tls.version()))
                    tls.sendall(self.after)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(Path(tmp_path_factory.mktemp("old-tls")))


@pytest.fixture
def old_server(material: TlsMaterial) -> Iterator[Any]:
    """A factory of TLS 1.1-only servers, skipped when this platform cannot speak TLS 1.1."""
    servers: list[OldTlsServer] = []

    def make(script: Sequence[bytes] = (), after: bytes = b"") -> OldTlsServer:
        server = OldTlsServer(material, script, after)
        servers.append(server)
        return server

    probe = make()
    control = _lenient(ssl.create_default_context(cafile=material.ca_file))
    try:
        with (
            socket.create_connection(("127.0.0.1", probe.port), timeout=10) as raw,
            control.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            version = tls.version()
    except ssl.SSLError as refused:
        pytest.skip(f"this platform's OpenSSL cannot speak TLS 1.1 even when asked: {refused}")
    assert version in ("TLSv1", "TLSv1.1"), version  # the server is old, and it answers
    try:
        yield make
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def lenient_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SSL context made from now on starts lenient (TLS 1.0 up, security level 0), so
    only a client's own floor can refuse an old server."""
    made = ssl.SSLContext.__new__

    def lenient_new(cls: type[ssl.SSLContext], *args: Any, **kwargs: Any) -> ssl.SSLContext:
        return _lenient(made(cls, *args, **kwargs))

    monkeypatch.setattr(ssl.SSLContext, "__new__", lenient_new)


def _refused(server: OldTlsServer) -> None:
    """The server saw a handshake and no TLS session was made (its thread may record the
    outcome a moment after the client gave up)."""
    deadline = time.monotonic() + 10
    while not server.handshakes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.handshakes, "the client never reached the server"
    assert all(h.startswith("refused") for h in server.handshakes), server.handshakes


def test_the_lenient_platform_lets_a_client_without_a_floor_in(
    old_server: Any, material: TlsMaterial, lenient_platform: None
) -> None:
    """The simulation works: a default context, no floor of its own, speaks TLS 1.1."""
    server = old_server()
    context = ssl.create_default_context(cafile=material.ca_file)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1", "TLSv1.1")


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_pop3_refuses_tls_older_than_1_2(
    old_server: Any, material: TlsMaterial, lenient_platform: None, security: str
) -> None:
    # poplib asks CAPA before STLS
    script = [b"+OK POP3 ready\r\n", b"+OK\r\nSTLS\r\n.\r\n", b"+OK begin TLS\r\n"]
    script = script if security == "starttls" else []
    server = old_server(script, after=b"+OK POP3 ready\r\n")
    settings = Pop3Settings(
        host="127.0.0.1",
        port=server.port,
        security=security,  # type: ignore[arg-type]
        username="alice",
        password="alice-Sandbox-1",
        ca_file=material.ca_file,
        timeout=10,
    )
    with pytest.raises(Unavailable) as refused:
        Pop3Session(settings).open()
    assert refused.value.code == "tls"
    assert "TLS 1.2 or later is required" in refused.value.message
    _refused(server)


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_smtp_refuses_tls_older_than_1_2(
    old_server: Any, material: TlsMaterial, lenient_platform: None, security: str
) -> None:
    greeting = b"220 smtp.example ESMTP\r\n"
    script = (
        [greeting, b"250-smtp.example\r\n250 STARTTLS\r\n", b"220 go ahead\r\n"]
        if security == "starttls"
        else []
    )
    server = old_server(script, after=greeting)
    settings = SmtpSettings(
        host="127.0.0.1",
        port=server.port,
        security=security,  # type: ignore[arg-type]
        username="alice@contoso.example",
        password="alice-Sandbox-1",
        ca_file=material.ca_file,
        timeout=10,
    )
    with pytest.raises(Unavailable) as refused, SmtpSender(settings).session():
        pass
    assert refused.value.code == "tls"
    assert "TLS 1.2 or later is required" in refused.value.message
    _refused(server)


def test_ews_refuses_tls_older_than_1_2(
    old_server: Any, material: TlsMaterial, lenient_platform: None
) -> None:
    http = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    server = old_server(after=http)
    connection = EwsConnection(
        f"https://127.0.0.1:{server.port}/EWS/Exchange.asmx",
        "alice@contoso.example",
        BasicAuth("alice", "alice-Sandbox-1"),
        ca_file=material.ca_file,
        max_wait=1,
        read_retry_waits=(),
    )
    try:
        with pytest.raises(Unavailable):
            connection.verify()
    finally:
        connection.close()
    _refused(server)


def test_sign_in_session_refuses_tls_older_than_1_2(
    old_server: Any, material: TlsMaterial, lenient_platform: None
) -> None:
    """msal's HTTP client (sync.auth builds it for every sign-in and token refresh)."""
    from sync.auth import _http_client

    http = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    server = old_server(after=http)
    url = f"https://127.0.0.1:{server.port}/common/v2.0/.well-known/openid-configuration"
    with (
        _http_client(material.ca_file, waits=()) as session,
        pytest.raises(requests.exceptions.SSLError),
    ):
        session.get(url, timeout=10)
    _refused(server)
