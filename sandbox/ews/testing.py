"""Helpers for tests that drive the sandbox EWS with exchangelib (not used by the server)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from sandbox.ews.client_tls import trust_ca_for_exchangelib
from sandbox.ews.server import EwsServer
from sandbox.faults import FaultProfile
from sandbox.identity import TokenRegistry, user_by_upn
from sandbox.requestlog import RequestLog

CRMID_SET = "c11ff724-aa03-4555-9952-8fa248a11c3e"


@contextlib.contextmanager
def running_server(demo: bool = False) -> Iterator[EwsServer]:
    """A started server in a temporary directory, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="ews-sandbox-") as folder:
        server = EwsServer(TokenRegistry(), RequestLog(), FaultProfile(), folder, demo=demo)
        server.start()
        trust_ca_for_exchangelib(server.ca_file)
        try:
            yield server
        finally:
            server.stop()


def register_crmid() -> Any:
    """Register the idempotency extended property as `crmid` on the item classes."""
    from exchangelib.extended_properties import ExtendedProperty
    from exchangelib.items import CalendarItem, Contact, Message, Task

    class CrmId(ExtendedProperty):
        property_set_id = CRMID_SET
        property_name = "crmid"
        property_type = "String"

    for cls in (Message, Contact, CalendarItem, Task):
        if "crmid" not in {f.name for f in cls.FIELDS}:
            cls.register("crmid", CrmId)
    return CrmId


def account(
    server: EwsServer,
    upn: str,
    password: str | None = None,
    token: str | None = None,
    retry_policy: Any = None,
) -> Any:
    """An exchangelib Account on the sandbox: Basic auth by default, OAuth2 with `token`."""
    from exchangelib import (
        BASIC,
        DELEGATE,
        OAUTH2,
        Account,
        Configuration,
        Credentials,
        OAuth2AuthorizationCodeCredentials,
        Version,
    )
    from exchangelib.version import EXCHANGE_2016

    if token is not None:
        credentials: Any = OAuth2AuthorizationCodeCredentials(
            access_token={
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "expires_at": time.time() + 3600,
            }
        )
        auth_type = OAUTH2
    else:
        user = user_by_upn(upn)
        credentials = Credentials(upn, password if password is not None else user.password)  # type: ignore[union-attr]
        auth_type = BASIC
    kwargs: dict[str, Any] = {}
    if retry_policy is not None:
        kwargs["retry_policy"] = retry_policy
    config = Configuration(
        service_endpoint=server.url,
        credentials=credentials,
        auth_type=auth_type,
        version=Version(build=EXCHANGE_2016),
        **kwargs,
    )
    if retry_policy is not None:
        # exchangelib caches one Protocol (with its retry policy) per endpoint and credentials;
        # drop the cached one so this policy is the one in force.
        from exchangelib.protocol import Protocol

        with contextlib.suppress(KeyError):
            del Protocol._protocol_cache[Protocol._cache_key(config)]
    return Account(upn, config=config, autodiscover=False, access_type=DELEGATE)
