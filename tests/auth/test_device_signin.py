"""`run.py signin`: signing in without a browser on this computer (issue 11, point 12).

The device authorization grant as Entra documents it (entra-docs
identity-platform/v2-oauth2-device-code.md): POST /devicecode → device_code, user_code,
verification_uri, expires_in, interval, message; the client polls the token endpoint with
grant_type urn:ietf:params:oauth:grant-type:device_code and gets `authorization_pending`
(AADSTS70016) until the user has entered the code and signed in, `authorization_declined`,
`bad_verification_code` or `expired_token` otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

import run
from sandbox.identity import TENANT_ID
from sandbox.idp import SANDBOX_CLIENT_ID
from sync.settings import get_setting
from sync.store.db import open_database
from tests.auth.helpers import Idp
from tests.sandbox_process import SandboxProcess, start_sandbox_process

ALICE, ALICE_PASSWORD = "alice@contoso.example", "alice-Sandbox-1"
GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _begin(idp: Idp, browser: requests.Session, scope: str = "openid offline_access") -> dict:
    answer = browser.post(
        f"{idp.authority}/oauth2/v2.0/devicecode",
        data={"client_id": SANDBOX_CLIENT_ID, "scope": scope},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _poll(idp: Idp, browser: requests.Session, device_code: str) -> requests.Response:
    form = {"grant_type": GRANT, "client_id": SANDBOX_CLIENT_ID, "device_code": device_code}
    return browser.post(f"{idp.authority}/oauth2/v2.0/token", data=form)


def _enter(flow: dict, upn: str, password: str, action: str = "sign-in") -> requests.Response:
    form = {"user_code": flow["user_code"], "upn": upn, "password": password, "action": action}
    return requests.post(flow["verification_uri"], data=form, timeout=30)


def test_device_code_protocol(idp: Idp, browser: requests.Session) -> None:
    flow = _begin(idp, browser)
    assert set(flow) >= {"device_code", "user_code", "verification_uri", "expires_in", "interval"}
    assert flow["expires_in"] == 900 and flow["user_code"] in flow["message"]
    page = urlsplit(flow["verification_uri"])  # a page a stock browser opens without warning
    assert (page.scheme, page.hostname) == ("http", "127.0.0.1")

    pending = _poll(idp, browser, flow["device_code"])
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"
    assert "AADSTS70016" in pending.json()["error_description"]

    wrong = _enter(flow, ALICE, "not-the-password")
    assert wrong.status_code == 400 and "incorrect" in wrong.text
    assert _poll(idp, browser, flow["device_code"]).json()["error"] == "authorization_pending"

    assert _enter(flow, ALICE, ALICE_PASSWORD).status_code == 200
    tokens = _poll(idp, browser, flow["device_code"])
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["access_token"] and tokens.json()["refresh_token"]
    again = _poll(idp, browser, flow["device_code"])  # a device code is spent once
    assert again.json()["error"] == "bad_verification_code"


def test_a_cancelled_or_unknown_code(idp: Idp, browser: requests.Session) -> None:
    flow = _begin(idp, browser)
    assert _enter(flow, ALICE, "", action="cancel").status_code == 200
    assert _poll(idp, browser, flow["device_code"]).json()["error"] == "authorization_declined"
    bad = _enter({**flow, "user_code": "NOPE12345"}, ALICE, ALICE_PASSWORD)
    assert bad.status_code == 400 and "not valid" in bad.text
    assert _poll(idp, browser, "sbxdevice.unknown").json()["error"] == "bad_verification_code"


def test_the_discovery_document_names_the_device_endpoint(
    idp: Idp, browser: requests.Session
) -> None:
    doc = browser.get(f"{idp.authority}/v2.0/.well-known/openid-configuration").json()
    assert doc["device_authorization_endpoint"] == f"{idp.authority}/oauth2/v2.0/devicecode"
    assert GRANT in doc["grant_types_supported"]
    assert idp.authority.endswith(TENANT_ID)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    running = start_sandbox_process(tmp_path_factory.mktemp("sandbox"))
    yield running
    running.stop()


def test_signin_then_configure_without_a_browser(
    sandbox: SandboxProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A headless computer or a script: `signin` (the device code flow, the sandbox page
    answered by the command itself), then `configure` and `sync --once`, no browser at all."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MBS_TEST_PASSWORD", sandbox.password(ALICE))
    common = ["--data-dir", str(data_dir), "--sandbox-json", str(sandbox.json_file)]
    code = run.main(
        ["signin", *common, "--user", ALICE, "--password-env", "MBS_TEST_PASSWORD",
         "--allow-plaintext-cache"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "enter the code" in out and f"Signed in as {ALICE}." in out
    database = open_database(data_dir)
    assert get_setting(database, "account_upn") == ALICE
    assert get_setting(database, "auth")["provider"] == "sandbox"
    database.dispose()

    code = run.main(
        ["configure", *common, "--org", "contoso", "--mailbox-type", "exchange", "--email", ALICE,
         "--ews-url", sandbox.info["ews_url"], "--filters", "my-active-contacts",
         "--take-over", "yes", "--set-methods"]
    )  # fmt: skip
    configured = capsys.readouterr()
    assert code == 0, configured.err
    assert "Setup complete." in configured.out
    assert run.main(["sync", "--once", *common]) == 0


def test_signin_refuses_what_it_cannot_do(
    sandbox: SandboxProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = ["--data-dir", str(tmp_path / "data")]
    assert run.main(["signin", *data_dir]) == 2  # neither a tenant nor a sandbox
    assert "--client-id" in capsys.readouterr().err
    assert run.main(["signin", *data_dir, "--client-id", "not-a-guid"]) == 2
    assert "GUID" in capsys.readouterr().err
    tenant = ["--client-id", "00000000-0000-0000-0000-000000000001", "--user", ALICE]
    assert run.main(["signin", *data_dir, *tenant]) == 2
    assert "sandbox only" in capsys.readouterr().err
    monkeypatch.setenv("MBS_WRONG_PASSWORD", "wrong")
    wrong = ["--sandbox-json", str(sandbox.json_file), "--user", ALICE]
    code = run.main(
        [
            "signin",
            *data_dir,
            *wrong,
            "--password-env",
            "MBS_WRONG_PASSWORD",
            "--allow-plaintext-cache",
        ]
    )
    assert code == 2
    assert "refused the sign-in" in capsys.readouterr().err
    assert json.loads(sandbox.json_file.read_text())  # the sandbox is untouched and running
