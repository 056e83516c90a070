"""Let exchangelib trust the sandbox CA (tests and tools only; sync/ has its own copy).

exchangelib sends every request through `BaseProtocol.HTTP_ADAPTER_CLS`, a process-wide requests
adapter class (its documented hook for custom certificates). Several sandbox servers (each with
its own throwaway CA) may run in one process, so the adapter verifies against a bundle of the
system CAs plus every CA registered here, with TLS 1.2 as the minimum.
"""

from __future__ import annotations

import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import certifi
import requests.adapters

_lock = threading.Lock()
_cas: list[str] = []  # PEM texts (read at registration: the file may go away with its server)
_bundles: dict[str, str] = {}


def _make_bundle(base: str) -> str:
    parts = [Path(base).read_text()]
    parts += _cas
    with tempfile.NamedTemporaryFile("w", suffix=".pem", prefix="ews-ca-", delete=False) as handle:
        handle.write("\n".join(parts))
    return handle.name


class SandboxCAAdapter(requests.adapters.HTTPAdapter):
    """Verifies certificates against the system CAs plus the registered sandbox CAs."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        kwargs["ssl_context"] = context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if verify is not False and _cas:
            # requests passes True or a bundle path (REQUESTS_CA_BUNDLE): extend that bundle.
            base = verify if isinstance(verify, str) else certifi.where()
            with _lock:
                if base not in _bundles:
                    _bundles[base] = _make_bundle(base)
                verify = _bundles[base]
        super().cert_verify(conn, url, verify, cert)


def trust_ca_for_exchangelib(ca_file: str) -> None:
    """Trust `ca_file` (in addition to the system CAs) for every exchangelib connection."""
    from exchangelib.protocol import BaseProtocol

    with _lock:
        pem = Path(ca_file).read_text()
        if pem not in _cas:
            _cas.append(pem)
            _bundles.clear()
    BaseProtocol.HTTP_ADAPTER_CLS = SandboxCAAdapter
