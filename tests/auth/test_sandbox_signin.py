"""Signing in against the whole sandbox: its tokens open Global Discovery and Dataverse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from sync.auth import dataverse_scope, discovery_scope, provider_from_config
from tests.auth.helpers import ALICE, answer_of, sign_in


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from sandbox.launcher import start_sandbox

    with start_sandbox(tmp_path_factory.mktemp("sandbox"), demo_scale=0.05) as running:
        yield running.describe()


def test_sandbox_sign_in_opens_discovery_and_dataverse(
    sandbox: dict[str, Any], tmp_path: Path
) -> None:
    provider = provider_from_config({"provider": "sandbox", "plaintext": True}, tmp_path, sandbox)
    discovery = discovery_scope(sandbox["discovery_url"])
    flow = provider.begin("http://127.0.0.1:8765/signin/callback", [discovery])
    with requests.Session() as browser:
        browser.verify, browser.trust_env = sandbox["identity_ca_file"], False
        provider.complete(flow, answer_of(sign_in(browser, flow["auth_uri"], *ALICE)))

    token = provider.token_for([discovery])
    listed = httpx.get(sandbox["discovery_url"], headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200
    assert {i["UniqueName"] for i in listed.json()["value"]} == {"contoso", "fabrikam"}

    org = sandbox["organizations"][0]
    org_token = provider.token_for([dataverse_scope(org["url"])])
    assert org_token != token
    who = httpx.get(org["api_url"] + "WhoAmI", headers={"Authorization": f"Bearer {org_token}"})
    assert who.status_code == 200
    assert who.json()["UserId"] == next(
        u["systemuser_ids"][org["unique_name"]] for u in sandbox["users"] if u["upn"] == ALICE[0]
    )
