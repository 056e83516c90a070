"""Read a POP3 mailbox incrementally by UIDL, over TLS only, and never delete anything.

POP3 has no change tracking: the only stable handle is the UIDL, so "what is new" is the server's
UIDL listing minus the UIDLs we have seen. That seen set is the sync token (`Pop3State`): the caller
persists it like any other token, so it survives restarts. It is pruned to the UIDLs the server
still lists on every read, so it never outgrows the mailbox itself.

We never issue DELE (other mail clients and the user's own rules own the mailbox), and we only
RETR the messages not seen before. Errors become the side errors the engine understands: a refused
password is `AuthError`, an unreachable or failing server is `Unavailable`.
"""

from __future__ import annotations

import base64
import poplib
import ssl
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar

from sync.mailbox.server_settings import ServerSettings, client_tls_context, tls_refused
from sync.sides import AuthError, TokenExpired, Unavailable

TOKEN_PREFIX = "pop3uidl1:"


@dataclass(frozen=True)
class Pop3Settings(ServerSettings):
    """Where and how to reach the POP3 account. Plain-text POP3 is deliberately not offered."""

    PROTOCOL: ClassVar[str] = "POP3"
    SSL_PORT: ClassVar[int] = poplib.POP3_SSL_PORT
    STARTTLS_PORT: ClassVar[int] = poplib.POP3_PORT


@dataclass(frozen=True)
class Pop3State:
    """The UIDLs already read: the incremental state the caller saves as the side's token.

    The token is `pop3uidl1:` + base64url(zlib(sorted UIDLs joined by newlines)). UIDLs are
    printable ASCII without spaces (RFC 1939), and sorted server-made ids share long prefixes,
    so a mailbox of 100,000 messages makes a token of a few hundred kilobytes at most.
    """

    seen: frozenset[str] = frozenset()

    def to_token(self) -> str:
        data = "\n".join(sorted(self.seen)).encode("ascii")
        return TOKEN_PREFIX + base64.urlsafe_b64encode(zlib.compress(data, 6)).decode("ascii")

    @classmethod
    def from_token(cls, token: str | None) -> Pop3State:
        """The state a token stands for; None is the empty state (a full read).

        A token we cannot read raises TokenExpired, so the engine does a full read and
        deduplicates by Message-Id instead of failing for ever.
        """
        if token is None:
            return cls()
        if not token.startswith(TOKEN_PREFIX):
            raise TokenExpired("not a POP3 UIDL token", code="pop3-token")
        try:
            data = zlib.decompress(base64.urlsafe_b64decode(token[len(TOKEN_PREFIX) :]))
            text = data.decode("ascii")
        except (ValueError, zlib.error, UnicodeDecodeError) as error:
            raise TokenExpired(f"unreadable POP3 UIDL token: {error}", code="pop3-token") from None
        return cls(frozenset(line for line in text.split("\n") if line))

    def pruned(self, present: Iterable[str]) -> Pop3State:
        """Only the UIDLs the server still lists: keeps the state as small as the mailbox."""
        return Pop3State(self.seen.intersection(present))

    def with_seen(self, uidls: Iterable[str]) -> Pop3State:
        return Pop3State(self.seen.union(uidls))


def _error_text(error: BaseException) -> str:
    if isinstance(error, poplib.error_proto) and error.args:
        reply = error.args[0]
        return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return str(error) or type(error).__name__


class Pop3Session:
    """One authenticated POP3 session (a context manager); closes with QUIT, which deletes
    nothing because we never mark anything deleted."""

    def __init__(self, settings: Pop3Settings) -> None:
        self.settings = settings
        self._conn: poplib.POP3 | None = None

    def __enter__(self) -> Pop3Session:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def conn(self) -> poplib.POP3:
        if self._conn is None:
            raise RuntimeError("POP3 session is not open")
        return self._conn

    def open(self) -> None:
        settings = self.settings
        where = settings.where
        context = client_tls_context(settings.ca_file)
        try:
            if settings.security == "ssl":
                conn: poplib.POP3 = poplib.POP3_SSL(
                    settings.host,
                    settings.effective_port,
                    timeout=settings.timeout,
                    context=context,
                )
            else:
                conn = poplib.POP3(settings.host, settings.effective_port, timeout=settings.timeout)
        except ssl.SSLCertVerificationError as error:
            raise Unavailable(
                f"the TLS certificate of POP3 server {where} is not trusted: {error.verify_message}",
                code="tls",
            ) from None
        except ssl.SSLError as error:
            raise tls_refused("POP3", where, error) from None
        except (OSError, poplib.error_proto) as error:
            raise Unavailable(
                f"cannot connect to POP3 server {where}: {_error_text(error)}", code="connect"
            ) from None
        self._conn = conn
        try:
            if settings.security == "starttls":
                self._starttls(conn, context, where)
            self._login(conn, where)
        except BaseException:
            self._drop()
            raise

    def _starttls(self, conn: poplib.POP3, context: ssl.SSLContext, where: str) -> None:
        try:
            conn.stls(context=context)
        except ssl.SSLCertVerificationError as error:
            raise Unavailable(
                f"the TLS certificate of POP3 server {where} is not trusted: {error.verify_message}",
                code="tls",
            ) from None
        except ssl.SSLError as error:
            raise tls_refused("POP3", where, error) from None
        except (poplib.error_proto, OSError) as error:
            raise Unavailable(
                f"POP3 server {where} refused STARTTLS (STLS), so the password is not sent: "
                f"{_error_text(error)}",
                code="starttls",
            ) from None

    def _login(self, conn: poplib.POP3, where: str) -> None:
        try:
            conn.user(self.settings.username)
            conn.pass_(self.settings.password)
        except poplib.error_proto as error:
            text = _error_text(error)
            # RFC 3206 response codes: SYS/… and IN-USE are the server's trouble, not the password
            if any(code in text.upper() for code in ("[SYS/", "[IN-USE]", "[LOGIN-DELAY]")):
                raise Unavailable(f"POP3 server {where} cannot log in now: {text}") from None
            raise AuthError(
                f"POP3 server {where} refused the user name or password for "
                f"{self.settings.username!r}: {text}",
                code="pop3-auth",
            ) from None
        except OSError as error:
            raise Unavailable(f"POP3 server {where} dropped the login: {error}") from None

    def _drop(self) -> None:
        """Forget the connection. Closing may fail on a socket a refused TLS handshake has
        already closed (poplib lets EBADF through): that must not hide why it was dropped."""
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            finally:
                self._conn = None

    def close(self) -> None:
        """QUIT politely (no DELE was issued, so the UPDATE state removes nothing)."""
        if self._conn is None:
            return
        try:
            self._conn.quit()
        except (poplib.error_proto, OSError):
            pass
        finally:
            self._drop()

    def listing(self) -> list[tuple[int, str]]:
        """(message number, UIDL) of every message, in the server's (arrival) order."""
        try:
            _, lines, _ = self.conn.uidl()
        except (poplib.error_proto, OSError) as error:
            raise Unavailable(f"POP3 UIDL failed: {_error_text(error)}") from None
        result = []
        for line in lines:
            number, _, uidl = line.decode("ascii", "replace").strip().partition(" ")
            if number.isdigit() and uidl:
                result.append((int(number), uidl))
        return result

    def stat(self) -> tuple[int, int]:
        """(message count, total size): what the server holds now."""
        try:
            count, size = self.conn.stat()
        except (poplib.error_proto, OSError) as error:
            raise Unavailable(f"POP3 STAT failed: {_error_text(error)}") from None
        return int(count), int(size)

    def retrieve(self, number: int) -> bytes:
        """The whole message (RETR), with CRLF line ends and dot-stuffing undone."""
        try:
            _, lines, _ = self.conn.retr(number)
        except (poplib.error_proto, OSError) as error:
            raise Unavailable(f"POP3 RETR {number} failed: {_error_text(error)}") from None
        return b"\r\n".join(lines) + b"\r\n"

    def headers(self, number: int, body_lines: int = 0) -> bytes:
        """The header block and the first `body_lines` body lines (TOP) — cheap to scan."""
        try:
            _, lines, _ = self.conn.top(number, body_lines)
        except (poplib.error_proto, OSError) as error:
            raise Unavailable(f"POP3 TOP {number} failed: {_error_text(error)}") from None
        return b"\r\n".join(lines) + b"\r\n"


@dataclass(frozen=True)
class NewMessage:
    uidl: str
    raw: bytes


@dataclass(frozen=True)
class NewBatch:
    """Messages read in one step and the state that is safe to save once they are applied."""

    messages: list[NewMessage]
    state: Pop3State
    last: bool
    total_new: int = 0
    """How many new messages this whole read has (so a caller can size its checkpoints)."""


class Pop3Reader:
    """Finds and reads the messages not seen before, in batches."""

    def __init__(self, settings: Pop3Settings) -> None:
        self.settings = settings

    def session(self) -> Pop3Session:
        return Pop3Session(self.settings)

    def new_messages(self, state: Pop3State, batch_size: int = 50) -> Iterator[NewBatch]:
        """Yield batches of new messages in arrival order; the last batch has `last=True`.

        Each batch's state = the old state pruned to the server's listing + everything read so
        far, so a crash after applying any batch resumes after it. Nothing new: one empty batch.
        """
        with self.session() as session:
            listing = session.listing()
            state = state.pruned(uidl for _, uidl in listing)
            new = [(n, u) for n, u in listing if u not in state.seen]
            if not new:
                yield NewBatch([], state, True, 0)
                return
            for start in range(0, len(new), batch_size):
                chunk = new[start : start + batch_size]
                messages = [NewMessage(uidl, session.retrieve(n)) for n, uidl in chunk]
                state = state.with_seen(m.uidl for m in messages)
                yield NewBatch(messages, state, start + batch_size >= len(new), len(new))

    def fetch(self, uidls: Iterable[str]) -> dict[str, bytes]:
        """The messages with these UIDLs that the server still holds."""
        wanted = set(uidls)
        if not wanted:
            return {}
        with self.session() as session:
            return {
                uidl: session.retrieve(number)
                for number, uidl in session.listing()
                if uidl in wanted
            }

    def count(self) -> tuple[int, int]:
        """STAT: (message count, total size) on the server."""
        with self.session() as session:
            return session.stat()
