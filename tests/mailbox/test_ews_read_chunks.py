"""EWS answers reach the XML parser in large chunks, not a byte at a time (issue 13: exchangelib
parses from `iter_content()`, whose default chunk is one byte — a Python call per byte)."""

from __future__ import annotations

from typing import Any

import requests
from exchangelib.protocol import BaseProtocol

from sandbox.identity import USERS
from sync.mailbox.ews_connection import READ_CHUNK, ChunkedResponse, TlsAdapter, trust_ca_file

GET_INBOX = """<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  <soap:Header><t:RequestServerVersion Version="Exchange2016"/></soap:Header>
  <soap:Body><m:GetFolder>
    <m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape>
    <m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds>
  </m:GetFolder></soap:Body>
</soap:Envelope>"""


def test_the_adapter_exchangelib_uses_hands_answers_over_in_large_chunks(ews: Any) -> None:
    assert BaseProtocol.HTTP_ADAPTER_CLS is TlsAdapter
    trust_ca_file(ews.ca_file)
    alice = USERS[0]
    with requests.Session() as session:
        session.mount("https://", TlsAdapter())
        answer = session.post(
            ews.url,
            data=GET_INBOX.encode(),
            headers={"Content-Type": "text/xml; charset=utf-8"},
            auth=(alice.upn, alice.password),
            stream=True,
        )
        assert answer.status_code == 200, answer.status_code
        assert isinstance(answer, ChunkedResponse)
        chunks = list(answer.iter_content())  # exchangelib's call: no chunk size given
    size = sum(map(len, chunks))
    assert size > 200 and b"GetFolderResponse" in b"".join(chunks)
    assert len(chunks) <= size // READ_CHUNK + 2  # not one call per byte
