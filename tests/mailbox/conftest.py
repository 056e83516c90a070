"""Fixtures for the mailbox adapters' tests. Each adapter keeps its fixtures in its own section.

(Other helpers: please add your fixtures in a section of your own below; do not recreate the file.)
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# ============================================================================================
# POP3 / SMTP adapter (sync/mailbox/pop3*.py, smtp.py): a real Dovecot and an aiosmtpd server
# ============================================================================================


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[Any]:
    """One Dovecot POP3 server for the session (POP3S and STARTTLS ports, one user).

    Its directory is made with mkdtemp (not tmp_path) so that, as root, Dovecot's unprivileged
    processes can traverse it: pytest's base temp dir is private to its owner.
    """
    from tests.mailbox.dovecot import dovecot_missing_reason, remove, start_dovecot

    reason = dovecot_missing_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="mailbox-sync-dovecot-"))
    root.chmod(0o755)  # mkdtemp makes it 0700; Dovecot's auth and mail users must traverse it
    try:
        server = start_dovecot(root / "dovecot")
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        remove(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_server: Any) -> Any:
    """The session's Dovecot with an empty Maildir."""
    dovecot_server.clear()
    return dovecot_server


@dataclass
class SmtpTestServer:
    """An aiosmtpd server that records what it accepts."""

    host: str
    port: int
    ca_file: str
    user: str
    password: str
    refused_domain: str = "refused.example"
    """Recipients in this domain are refused with 550."""
    received: list[Any] = field(default_factory=list)
    auth_attempts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self) -> list[Any]:
        with self.lock:
            return list(self.received)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.auth_attempts.clear()


def _smtp_controller(
    tmp_dir: Path, *, implicit_tls: bool = False, offer_starttls: bool = True
) -> tuple[Any, SmtpTestServer]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from sandbox.tls import make_tls_material
    from tests.mailbox.dovecot import free_port

    tls = make_tls_material(tmp_dir)
    state = SmtpTestServer(
        host="127.0.0.1",
        port=free_port(),
        ca_file=tls.ca_file,
        user="sender@example.test",
        password="smtp secret",
    )

    class Handler:
        async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            if address.lower().endswith("@" + state.refused_domain):
                return "550 5.1.1 no such user here"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            with state.lock:
                state.received.append(envelope)
            return "250 Message accepted for delivery"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        login = data.login.decode() if isinstance(data.login, bytes) else str(data.login)
        password = data.password.decode() if isinstance(data.password, bytes) else data.password
        with state.lock:
            state.auth_attempts.append(login)
        ok = (login, password) == (state.user, state.password)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd replies 535

    kwargs: dict[str, Any] = {
        "authenticator": authenticator,
        "auth_required": True,
        "auth_require_tls": True,
    }
    if implicit_tls:
        kwargs["ssl_context"] = tls.server_context()
        # aiosmtpd only counts STARTTLS as "TLS" for AUTH; here the whole connection is TLS
        kwargs["auth_require_tls"] = False
    elif offer_starttls:
        kwargs["tls_context"] = tls.server_context()
        kwargs["require_starttls"] = True
    controller = Controller(Handler(), hostname=state.host, port=state.port, **kwargs)
    controller.start()
    return controller, state


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpTestServer]:
    """aiosmtpd on 127.0.0.1 with STARTTLS required and AUTH (PLAIN/LOGIN) required."""
    controller, state = _smtp_controller(tmp_path_factory.mktemp("smtp-starttls"))
    try:
        yield state
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def smtps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpTestServer]:
    """aiosmtpd on 127.0.0.1 with implicit TLS (SMTPS) and AUTH required."""
    controller, state = _smtp_controller(tmp_path_factory.mktemp("smtps"), implicit_tls=True)
    try:
        yield state
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def smtp_plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpTestServer]:
    """aiosmtpd that offers no STARTTLS: the adapter must refuse to authenticate on it."""
    controller, state = _smtp_controller(
        tmp_path_factory.mktemp("smtp-plain"), offer_starttls=False
    )
    try:
        yield state
    finally:
        controller.stop()


@pytest.fixture
def smtp(smtp_server: SmtpTestServer) -> SmtpTestServer:
    """The module's STARTTLS server with nothing received yet."""
    smtp_server.reset()
    return smtp_server


# ============================================================================================
# (end of the POP3 / SMTP section)
# ============================================================================================


# ============================================================================================
# EWS adapter (sync/mailbox/ews*.py): the sandbox EWS server (helpers: tests/mailbox/ews_helpers.py)
# ============================================================================================


@pytest.fixture(scope="module")
def ews(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A sandbox EWS server with empty mailboxes, one per test module."""
    from sandbox.ews import EwsServer
    from sandbox.faults import FaultProfile
    from sandbox.identity import TokenRegistry
    from sandbox.requestlog import RequestLog

    data_dir = str(tmp_path_factory.mktemp("ews"))
    server = EwsServer(TokenRegistry(), RequestLog(), FaultProfile(), data_dir, demo=False)
    server.start()
    yield server
    server.stop()
