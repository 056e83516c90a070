"""Issue 14, point 3, in the Dataverse client: a 401 is retried exactly once, with a token the
provider issues anew (`refresh()`), never with the refused one from the cache."""

from __future__ import annotations

import httpx
import pytest

from sync.auth import SignInRequired
from sync.crm.client import DataverseClient, RetryPolicy
from sync.sides import AuthError

API = "https://org.example/api/data/v9.2/"


class Tokens:
    """Like sync.auth.TokenSource: the cached token until `refresh()` issues the next one."""

    def __init__(self, refresh_error: Exception | None = None) -> None:
        self.current = "token-1"
        self.refreshes = 0
        self.refresh_error = refresh_error

    def __call__(self) -> str:
        return self.current

    def refresh(self) -> str:
        self.refreshes += 1
        if self.refresh_error is not None:
            raise self.refresh_error
        self.current = f"token-{self.refreshes + 1}"
        return self.current


def client_with(tokens: object, answers: dict[str, list[int]], sent: list[str]) -> DataverseClient:
    """Each token gets the statuses listed for it, in order (then 200)."""

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        sent.append(token)
        queue = answers.get(token, [])
        status = queue.pop(0) if queue else 200
        if status == 200:
            return httpx.Response(200, json={"UserId": "u"})
        return httpx.Response(status, json={"error": {"code": "", "message": f"HTTP {status}"}})

    return DataverseClient(
        API,
        tokens,  # type: ignore[arg-type]
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(backoff=0.0),
        sleep=lambda _: None,
    )


def test_a_401_is_retried_once_with_a_refreshed_token() -> None:
    tokens, sent = Tokens(), []
    client = client_with(tokens, {"token-1": [401, 401]}, sent)
    assert client.who_am_i() == {"UserId": "u"}
    assert sent == ["token-1", "token-2"] and tokens.refreshes == 1
    assert client.who_am_i() == {"UserId": "u"}  # the next request uses the new cached token
    assert sent[-1] == "token-2" and tokens.refreshes == 1


def test_a_401_to_the_refreshed_token_is_an_auth_error_after_two_requests() -> None:
    tokens, sent = Tokens(), []
    client = client_with(tokens, {"token-1": [401], "token-2": [401]}, sent)
    with pytest.raises(AuthError, match="newly issued token too"):
        client.who_am_i()
    assert sent == ["token-1", "token-2"] and tokens.refreshes == 1


def test_retries_after_the_refresh_do_not_refresh_again() -> None:
    tokens, sent = Tokens(), []
    client = client_with(tokens, {"token-1": [401], "token-2": [502, 502]}, sent)
    assert client.who_am_i() == {"UserId": "u"}
    assert sent == ["token-1", "token-2", "token-2", "token-2"] and tokens.refreshes == 1


def test_a_refresh_that_needs_a_new_sign_in_is_raised_as_such() -> None:
    refused = SignInRequired("Sign in again.", code="invalid_grant", username="a@x.example")
    tokens, sent = Tokens(refresh_error=refused), []
    client = client_with(tokens, {"token-1": [401]}, sent)
    with pytest.raises(SignInRequired) as caught:
        client.who_am_i()
    assert caught.value is refused and sent == ["token-1"]


def test_a_plain_token_callable_is_not_asked_for_the_same_token_twice() -> None:
    """Without `refresh()` another attempt would send the refused token again."""
    sent: list[str] = []
    client = client_with(lambda: "static", {"static": [401]}, sent)
    with pytest.raises(AuthError):
        client.who_am_i()
    assert sent == ["static"]


def test_a_403_is_not_a_reason_to_refresh() -> None:
    tokens, sent = Tokens(), []
    client = client_with(tokens, {"token-1": [403]}, sent)
    with pytest.raises(AuthError):
        client.who_am_i()
    assert sent == ["token-1"] and tokens.refreshes == 0
