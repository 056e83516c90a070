"""Unit tests of the Dataverse client's protocol handling, over httpx.MockTransport.

The sandbox tests (test_crm_sandbox.py) show the same behaviours against a real HTTP server;
these pin down the parts a server rarely produces on demand: malformed answers, resets, the
exact waits, and the multipart format.
"""

from __future__ import annotations

import json

import httpx
import pytest

from sync.crm.batch import BatchOp, Item, build_batch, parse_batch, results_for
from sync.crm.client import DataverseClient, RetryPolicy, query_string
from sync.crm.discovery import discover_instances, web_api_url
from sync.crm.entities import primary_key_for
from sync.crm.errors import error_for, retry_after_seconds
from sync.sides import (
    AuthError,
    Conflict,
    Duplicate,
    Invalid,
    NotFound,
    Throttled,
    TokenExpired,
    Unavailable,
)

API = "https://org.example/api/data/v9.2/"


def make_client(handler, sleeps: list[float] | None = None, **kw) -> DataverseClient:
    record = sleeps if sleeps is not None else []
    return DataverseClient(
        API,
        lambda: "tok",
        transport=httpx.MockTransport(handler),
        sleep=record.append,
        **kw,
    )


def odata_error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (
            412,
            "0x80060882",
            "The version of the existing record doesn't match the RowVersion property provided.",
            Conflict,
        ),
        (412, "0x80040237", "A record with matching key values already exists.", Duplicate),
        (412, "", "A record with matching key values already exists.", Duplicate),
        (500, "0x80040237", "Cannot insert duplicate key.", Duplicate),
        (404, "0x80040217", "contact With Id = x Does Not Exist", NotFound),
        (401, "", "unauthorized", AuthError),
        (403, "0x80040220", "no privilege", AuthError),
        (400, "0x80060888", "Syntax error at position 5", Invalid),
        (503, "", "down", Unavailable),
        (429, "0x80072322", "Number of requests exceeded the limit", Throttled),
    ],
)
def test_error_mapping(status, code, message, expected) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    error = error_for(status, body, {"retry-after": "7"})
    assert type(error) is expected
    assert error.message == message
    if isinstance(error, Throttled):
        assert error.retry_after == 7


def test_delta_link_refusal_is_token_expired() -> None:
    body = {
        "error": {
            "code": "0x80044352",
            "message": "Version stamp associated with the client has expired. Please perform a full sync.",
        }
    }
    assert type(error_for(400, body, delta=True)) is TokenExpired
    assert type(error_for(500, body)) is TokenExpired
    assert type(error_for(400, {"error": {"code": "x", "message": "bad"}}, delta=False)) is Invalid


def test_retry_after_forms() -> None:
    assert retry_after_seconds("2") == 2
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0


def test_query_string_keeps_dollar_names_and_escapes_values() -> None:
    q = query_string(select=["a", "b"], filter="name eq 'O''Neil & co'", top=5, expand=None)
    assert q == "?$select=a,b&$filter=name%20eq%20'O''Neil%20%26%20co'&$top=5"


def test_primary_keys() -> None:
    assert primary_key_for("contacts") == "contactid"
    assert primary_key_for("appointments") == "activityid"
    assert primary_key_for("opportunities") == "opportunityid"
    assert primary_key_for("mbs_syncclaims") == "mbs_syncclaimid"


def test_429_is_waited_out_and_5xx_retried_then_unavailable() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["authorization"])
        if len(calls) == 1:
            return odata_error(
                429, "0x80072322", "Number of requests exceeded", **{"Retry-After": "3"}
            )
        return httpx.Response(200, json={"UserId": "u"})

    sleeps: list[float] = []
    client = make_client(handler, sleeps)
    assert client.who_am_i() == {"UserId": "u"}
    assert sleeps == [3.0] and client.request_count == 2 and calls == ["Bearer tok"] * 2

    sleeps.clear()
    failing = make_client(
        lambda r: httpx.Response(502, text="bad gateway"),
        sleeps,
        retry=RetryPolicy(max_retries=3, backoff=0.5),
    )
    with pytest.raises(Unavailable):
        failing.who_am_i()
    assert sleeps == [0.5, 1.0, 2.0] and failing.request_count == 4


def test_retry_after_is_capped_and_throttling_bounded() -> None:
    sleeps: list[float] = []
    client = make_client(
        lambda r: odata_error(429, "0x80072322", "slow down", **{"Retry-After": "900"}),
        sleeps,
        retry=RetryPolicy(max_throttle_retries=2, max_retry_after=300),
    )
    with pytest.raises(Throttled) as caught:
        client.who_am_i()
    assert sleeps == [300, 300] and caught.value.retry_after == 900


def test_connection_reset_is_retried() -> None:
    state = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        state["n"] += 1
        if state["n"] < 3:
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        return httpx.Response(200, json={"UserId": "u"})

    client = make_client(handler)
    assert client.who_am_i()["UserId"] == "u" and client.request_count == 3


def test_token_provider_failure_is_auth_error() -> None:
    def broken() -> str:
        raise RuntimeError("interaction required")

    client = DataverseClient(
        API, broken, transport=httpx.MockTransport(lambda r: httpx.Response(200))
    )
    with pytest.raises(AuthError):
        client.who_am_i()


def test_delta_pages_split_rows_and_deletions() -> None:
    pages = {
        "first": {
            "value": [{"@odata.etag": 'W/"1"', "contactid": "A"}],
            "@odata.nextLink": API + "contacts?$skiptoken=2",
        },
        "second": {
            "value": [
                {"@odata.etag": 'W/"2"', "contactid": "b"},
                {
                    "@odata.context": API + "$metadata#contacts/$deletedEntity",
                    "id": "C",
                    "reason": "deleted",
                },
            ],
            "@odata.deltaLink": API + "contacts?$deltatoken=9",
        },
    }
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json=pages["second" if "skiptoken" in str(request.url) else "first"]
        )

    client = make_client(handler)
    result = list(client.track_changes("contacts", select=["fullname"], page_size=1))
    assert [p.delta_link for p in result] == [None, API + "contacts?$deltatoken=9"]
    assert [p.last for p in result] == [False, True]
    assert result[1].deleted == ["c"] and [r["contactid"] for r in result[1].rows] == ["b"]
    assert "odata.track-changes" in seen[0].headers["prefer"]
    assert "odata.maxpagesize=1" in seen[0].headers["prefer"]
    assert seen[0].url.raw_path.decode().endswith("contacts?$select=fullname")


def test_expired_delta_link_raises_token_expired() -> None:
    client = make_client(
        lambda r: odata_error(
            400, "0x80044352", "Version stamp associated with the client has expired."
        )
    )
    with pytest.raises(TokenExpired):
        list(client.track_changes("contacts", delta_link=API + "contacts?$deltatoken=1"))


def test_batch_body_and_response_roundtrip() -> None:
    items: list[Item] = [
        [BatchOp("POST", "contacts", {"firstname": "A"}, {"Prefer": "return=representation"})],
        [
            BatchOp("PATCH", "contacts(1)", {"x": 1}, {"If-Match": 'W/"5"'}),
            BatchOp("DELETE", "contacts(2)"),
        ],
        BatchOp("GET", "contacts(3)?$select=fullname"),
    ]
    content_type, body = build_batch(items, API, boundary="batch_T")
    text = body.decode()
    assert content_type == 'multipart/mixed; boundary="batch_T"'
    assert text.count("--batch_T\r\n") == 3 and text.rstrip().endswith("--batch_T--")
    assert f"POST {API}contacts HTTP/1.1" in text and 'If-Match: W/"5"' in text
    assert "Content-ID: 2" in text and "Content-Type: application/json; type=entry" in text

    response = "\r\n".join(
        [
            "--batchresponse_R",
            "Content-Type: multipart/mixed; boundary=changesetresponse_1",
            "",
            "--changesetresponse_1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 1",
            "",
            "HTTP/1.1 201 Created",
            "Content-Type: application/json; odata.metadata=minimal",
            "",
            '{"@odata.etag":"W/\\"7\\"","contactid":"aaaaaaaa-0000-0000-0000-000000000001"}',
            "--changesetresponse_1--",
            "--batchresponse_R",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "HTTP/1.1 412 Precondition Failed",
            "Content-Type: application/json; odata.metadata=minimal",
            "",
            '{"error":{"code":"0x80060882","message":"The version of the existing record doesn\'t match the RowVersion property provided."}}',
            "--batchresponse_R--",
            "",
        ]
    ).encode()
    parts = parse_batch("multipart/mixed; boundary=batchresponse_R", response)
    results = results_for(items, parts)
    assert len(results) == 4
    assert results[0].ok and results[0].status == 201 and results[0].etag == 'W/"7"'
    # The failed change set answers once for both of its operations.
    assert [type(r.error) for r in results[1:3]] == [Conflict, Conflict]
    # The batch stopped: the GET after it has no answer.
    assert results[3].status == 0 and isinstance(results[3].error, Unavailable)


def test_batch_splits_above_1000_operations() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        n = body.count("Content-Type: application/http")
        sizes.append(n)
        parts = []
        for _ in range(n):
            parts += [
                "--b",
                "Content-Type: application/http",
                "",
                "HTTP/1.1 204 No Content",
                "OData-EntityId: " + API + "contacts(00000000-0000-0000-0000-000000000001)",
                "",
                "",
            ]
        parts += ["--b--", ""]
        return httpx.Response(
            200,
            content="\r\n".join(parts).encode(),
            headers={"Content-Type": "multipart/mixed; boundary=b"},
        )

    client = make_client(handler)
    results = client.batch(
        [[BatchOp("DELETE", f"contacts({i})")] for i in range(2500)], continue_on_error=True
    )
    assert sizes == [1000, 1000, 500] and len(results) == 2500
    assert (
        all(r.ok for r in results)
        and results[0].entity_id == "00000000-0000-0000-0000-000000000001"
    )


def test_discovery_builds_web_api_urls() -> None:
    assert web_api_url("https://org.api.crm.dynamics.com", "https://org.crm.dynamics.com") == (
        "https://org.api.crm.dynamics.com/api/data/v9.2/"
    )
    assert web_api_url("http://h/x/api/data/v9.2", "http://h/x/") == "http://h/x/api/data/v9.2/"

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/discovery/v2.0/Instances"
        return httpx.Response(
            200,
            json={
                "value": [
                    {
                        "Id": "ID2",
                        "UniqueName": "b",
                        "FriendlyName": "Beta",
                        "Url": "https://b.crm.dynamics.com",
                        "ApiUrl": "https://b.api.crm.dynamics.com",
                        "Version": "9.2.1",
                        "State": 0,
                    },
                    {
                        "Id": "ID1",
                        "UniqueName": "a",
                        "FriendlyName": "Alpha",
                        "Url": "https://a.crm.dynamics.com/",
                        "ApiUrl": "https://a.api.crm.dynamics.com",
                        "Version": "9.2.1",
                        "State": 1,
                    },
                ]
            },
        )

    found = discover_instances(
        "https://globaldisco.crm.dynamics.com/api/discovery/v2.0/Instances",
        lambda: "t",
        transport=httpx.MockTransport(handler),
    )
    assert [i.unique_name for i in found] == ["a", "b"]
    assert (
        found[0].api_url == "https://a.api.crm.dynamics.com/api/data/v9.2/"
        and found[0].state == 1
        and found[0].id == "id1"
    )


def test_series_reads_bring_the_occurrence_rows_the_recurring_kind_maps() -> None:
    from sync.crm.entities import KIND_SPECS
    from sync.kinds.exceptions import EXPAND

    expand = KIND_SPECS["recurringappointmentmasters"].expand or ""
    assert EXPAND in expand
