"""What the EwsSide tests share: sandbox users, connections to the sandbox EWS, reading a kind."""

from __future__ import annotations

from typing import Any

from sandbox.identity import USERS
from sync.mailbox.ews import BasicAuth, EwsConnection, EwsSide

ALICE, BOB, CAROL, DAVE = (u.upn for u in USERS[:4])


def password(upn: str) -> str:
    return next(u.password for u in USERS if u.upn == upn)


def connect(server: Any, upn: str, **options: Any) -> EwsConnection:
    """A password (basic auth) connection to the sandbox EWS `server`, trusting its test CA."""
    return EwsConnection(
        server.url, upn, BasicAuth(upn, password(upn)), ca_file=server.ca_file, **options
    )


def read_all(side: EwsSide, kind: str, token: str | None) -> tuple[list[Any], str | None]:
    """Every change of `kind` since `token`, over all pages, and the last page's token."""
    changes: list[Any] = []
    for page in side.read_changes(kind, token):
        changes += page.changes
        token = page.token
    return changes, token
