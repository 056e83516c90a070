"""The client over HTTPS: the sandbox CA is trusted only when given, and TLS is at least 1.2."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sandbox.tls import TlsMaterial, make_tls_material
from sync.crm.client import DataverseClient, tls_context
from sync.sides import Unavailable


class _WhoAmI(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"UserId": "u-1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TlsMaterial]]:
    material = make_tls_material(Path(tmp_path_factory.mktemp("tls")))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WhoAmI)
    server.socket = material.server_context().wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/org/api/data/v9.2/", material
    finally:
        server.shutdown()
        server.server_close()


def test_https_with_the_given_ca(https_server: tuple[str, TlsMaterial]) -> None:
    url, material = https_server
    with DataverseClient(url, lambda: "t", verify=material.ca_file) as client:
        assert client.who_am_i() == {"UserId": "u-1"}


def test_untrusted_certificate_fails_at_once(https_server: tuple[str, TlsMaterial]) -> None:
    url, _ = https_server
    waits: list[float] = []
    with DataverseClient(url, lambda: "t", sleep=waits.append) as client:
        with pytest.raises(Unavailable) as caught:
            client.who_am_i()
        assert "TLS" in caught.value.message
        assert client.request_count == 1 and waits == []


def test_tls_context_requires_1_2_and_checks_certificates() -> None:
    context = tls_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
