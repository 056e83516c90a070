"""Let exchangelib trust a sandbox CA (tests and tools).

exchangelib sends every request through one process-wide adapter class, so there must be one
owner of it: the product's own (`sync.mailbox.ews_connection`, TLS 1.2+, system CAs plus the
registered ones). Installing a second adapter here would silently undo the product's.
"""

from __future__ import annotations

from exchangelib.protocol import BaseProtocol

from sync.mailbox.ews_connection import TlsAdapter, trust_ca_file


def trust_ca_for_exchangelib(ca_file: str) -> None:
    """Trust `ca_file` (in addition to the system CAs) for every exchangelib connection."""
    trust_ca_file(ca_file)
    BaseProtocol.HTTP_ADAPTER_CLS = TlsAdapter
