"""Issue 14, point 3, in the EWS connection: when Exchange answers 401 to the bearer token, the
token is replaced through the provider's `refresh()` (msal's refresh token), not asked for again
from a cache that still holds the refused one, and the call is sent once more."""

from __future__ import annotations

from typing import Any

import pytest

from sync.auth import SignInRequired
from sync.mailbox.ews import EwsConnection, EwsSide, OAuthToken
from sync.sides import AuthError, CreateOp, Written
from tests.mailbox.ews_helpers import DAVE


class Tokens:
    """Like sync.auth.TokenSource over the sandbox: a cached token; `refresh()` issues anew."""

    def __init__(self, server: Any, upn: str) -> None:
        self.server, self.upn = server, upn
        self.current = server.tokens.issue(upn)
        self.asked = self.refreshes = 0
        self.refuse_refresh = False

    def __call__(self) -> str:
        self.asked += 1
        return self.current

    def refresh(self) -> str:
        self.refreshes += 1
        if self.refuse_refresh:
            raise SignInRequired("Sign in again.", code="invalid_grant", username=self.upn)
        self.current = self.server.tokens.issue(self.upn)
        return self.current


def test_a_token_revoked_between_calls_is_refreshed_once(ews: Any) -> None:
    tokens = Tokens(ews, DAVE)
    side = EwsSide(EwsConnection(ews.url, DAVE, OAuthToken(tokens), ca_file=ews.ca_file))
    first = side.write("tasks", [CreateOp("crm-r1", {"subject": "Before"})])[0]
    assert isinstance(first, Written)
    refused = tokens.current
    ews.tokens.revoke(refused)  # e.g. an admin revoked the sessions: 401 from now on

    second = side.write("tasks", [CreateOp("crm-r2", {"subject": "After"})])[0]
    assert isinstance(second, Written)
    assert tokens.refreshes == 1 and tokens.current != refused
    assert ews.log.count(service="ews", status=401) >= 1
    found = side.read("tasks", [first.id, second.id])
    assert sorted(u.fields["subject"] for u in found.values()) == ["After", "Before"]
    assert len(side.find_by_key("tasks", ["crm-r2"])) == 1  # sent again once: no duplicate


def test_a_refresh_that_needs_a_new_sign_in_is_raised_as_such(ews: Any) -> None:
    tokens = Tokens(ews, DAVE)
    connection = EwsConnection(ews.url, DAVE, OAuthToken(tokens), ca_file=ews.ca_file, max_wait=5)
    side = EwsSide(connection)
    assert isinstance(side.write("tasks", [CreateOp("crm-s1", {"subject": "One"})])[0], Written)
    ews.tokens.revoke(tokens.current)
    tokens.refuse_refresh = True
    with pytest.raises(SignInRequired):
        side.write("tasks", [CreateOp("crm-s2", {"subject": "Two"})])
    assert tokens.refreshes == 1


def test_errors_other_than_401_do_not_refresh(ews: Any) -> None:
    tokens = Tokens(ews, DAVE)
    connection = EwsConnection(ews.url, DAVE, OAuthToken(tokens), ca_file=ews.ca_file)

    def denied() -> None:
        raise AuthError("Access is denied.", "ErrorAccessDenied")

    with pytest.raises(AuthError, match="denied"):
        connection.call(denied)
    assert tokens.refreshes == 0
