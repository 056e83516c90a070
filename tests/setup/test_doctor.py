"""`run.py doctor` and Settings' "Check my setup" against a configured organization and mailbox
on the sandbox, in its strict mode (as the service) and its lenient one.

Everything is real: a sign-in through the sandbox identity provider (msal, token cache in the
data directory), `run.py configure` with the real ports, then the checks, which must only read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import run
from sandbox.launcher import RunningSandbox, start_sandbox
from sandbox.requestlog import LoggedRequest
from sync.auth import discovery_scope, ews_scope, provider_from_config
from sync.sandbox_profile import write_info
from sync.settings import set_setting
from sync.setup.doctor import Finding, run_doctor
from sync.setup.profile import Profile
from sync.setup.vault import PLAINTEXT_CONSENT
from sync.store.db import open_database
from tests.auth.helpers import answer_of, sign_in
from tests.helpers import page_text, signed_in
from webapp import create_app
from webapp.settings_page import DOCTOR_KEY

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"
PASSWORDS = {ALICE: "alice-Sandbox-1", BOB: "bob-Sandbox-1"}
REDIRECT = "http://127.0.0.1:8765/signin/callback"
EWS_WRITES = {
    "CreateItem",
    "UpdateItem",
    "DeleteItem",
    "CreateFolder",
    "UpdateFolder",
    "DeleteFolder",
    "MoveItem",
    "CopyItem",
    "SendItem",
    "CreateAttachment",
    "DeleteAttachment",
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with start_sandbox(tmp_path_factory.mktemp("sandbox"), demo_scale=0.05) as running:
        # short-lived access tokens: every silent acquire asks the identity provider, so a
        # missing consent shows at once (msal refreshes tokens with under 5 minutes left)
        running.identity.access_token_lifetime = 120
        yield running


def configured(sandbox: RunningSandbox, data_dir: Path, upn: str) -> Path:
    """A data directory signed in as `upn` (a real msal sign-in) and set up by `configure`."""
    info = sandbox.describe()
    info_file = write_info(data_dir / "sandbox", info)
    database = open_database(data_dir)
    auth = {"provider": "sandbox", "plaintext": True}
    set_setting(database, "auth", auth)
    set_setting(database, "account_upn", upn)
    set_setting(database, PLAINTEXT_CONSENT, True)
    database.dispose()
    provider = provider_from_config(auth, data_dir, info)
    flow = provider.begin(REDIRECT, [discovery_scope(info["discovery_url"])], login_hint=upn)
    browser = requests.Session()
    browser.verify, browser.trust_env = info["identity_ca_file"], False
    try:
        provider.complete(flow, answer_of(sign_in(browser, flow["auth_uri"], upn, PASSWORDS[upn])))
    finally:
        browser.close()
    code = run.main(
        [
            "configure", "--data-dir", str(data_dir), "--sandbox-json", str(info_file),
            "--org", "contoso", "--mailbox-type", "exchange", "--email", upn,
            "--set-methods", "--take-over", "yes", "--instance-name", f"{upn[0]}-pc",
            "--filters", "my-active-contacts",
        ]
    )  # fmt: skip
    assert code == 0
    return info_file


@pytest.fixture(scope="module")
def alice_dir(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("alice")
    configured(sandbox, data_dir, ALICE)
    return data_dir


@pytest.fixture(scope="module")
def bob_dir(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("bob")
    configured(sandbox, data_dir, BOB)
    return data_dir


@pytest.fixture
def strictness(sandbox: RunningSandbox) -> Iterator[RunningSandbox]:
    yield sandbox
    sandbox.dataverse.strict = True
    sandbox.identity.consent_mode = "granted"


def doctor(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """`run.py doctor --json`: the exit code and the findings by check."""
    code = run.main(["doctor", "--data-dir", str(data_dir), "--json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    return code, {f["check"]: f for f in findings}


def status(findings: dict[str, Any]) -> dict[str, str]:
    return {check: f["status"] for check, f in findings.items()}


def writes(entries: list[LoggedRequest]) -> list[LoggedRequest]:
    return [
        e
        for e in entries
        if (e.service in ("dataverse", "discovery") and e.method != "GET")
        or (e.service == "ews" and e.target in EWS_WRITES)
    ]


def test_doctor_all_fine_for_an_organization_reader(
    strictness: RunningSandbox, alice_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alice reads contoso at organization level and her mailbox record says "Outlook": every
    check passes but, maybe, the table definitions (served by the sandbox's metadata routes:
    reported missing, not a crash, while they are not there). Read-only: no write reaches the
    organization or the mailbox."""
    sandbox = strictness
    sandbox.log.clear()
    code, found = doctor(alice_dir, capsys)
    checks = status(found)
    for check in (
        "sign-in",
        "token:discovery",
        "token:dataverse:contoso",
        "token:ews",
        "crm-user",
        "privilege:prvReadContact",
        "privilege:prvReadActivity",
        "change-tracking:contacts",
        "change-tracking:appointments",
        "change-tracking:recurringappointmentmasters",
        "change-tracking:tasks",
        "mailbox-record",
        "delivery:act",
        "claim:organization",
        "claim:computer",
    ):
        assert checks.get(check) == "ok", (check, found.get(check))
    assert (
        found["claim:computer"]["message"] == "This computer (a-pc) is the synchronizing computer."
    )
    assert "metadata" in checks
    assert code == (5 if "missing" in checks.values() else 0)
    assert writes(sandbox.log.snapshot()) == []


def test_doctor_names_what_a_business_unit_reader_lacks_and_lenient_mode_does_not(
    strictness: RunningSandbox, bob_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Strict (as the service: use-change-tracking-synchronize-data-external-systems.md, the
    calling user must have organization-level read): Bob's business-unit role is named per
    table and privilege, exit 5. Lenient: nothing of it is refused, nothing reported."""
    sandbox = strictness
    code, found = doctor(bob_dir, capsys)
    assert code == 5
    assert found["privilege:prvReadContact"]["status"] == "missing"
    assert "prvReadContact: Local" in found["privilege:prvReadContact"]["message"]
    contacts = found["change-tracking:contacts"]
    assert contacts["status"] == "missing"
    assert contacts["message"].startswith(
        "contact: your security role reads the records of your business unit"
    )
    assert contacts["action"] == (
        "Ask your administrator to give your security role organization-level Read on contact "
        "(prvReadContact)."
    )
    assert found["change-tracking:tasks"]["status"] == "missing"
    assert found["crm-user"]["status"] == "ok" and found["claim:computer"]["status"] == "ok"

    sandbox.dataverse.strict = False
    code, found = doctor(bob_dir, capsys)
    for check in ("privilege:prvReadContact", "privilege:prvReadActivity"):
        assert found[check]["status"] == "ok"
    assert all(f["status"] == "ok" for c, f in found.items() if c.startswith("change-tracking:"))
    assert code == (5 if "missing" in status(found).values() else 0)


def test_doctor_reports_a_missing_consent_per_resource(
    strictness: RunningSandbox, alice_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entra answers a token request for a scope nobody consented to with AADSTS65001: the
    doctor's silent acquire per scope names the resource that lacks it."""
    sandbox = strictness
    info = sandbox.describe()
    sandbox.identity.consent_mode = "user"
    sandbox.identity.consents.grant(
        ALICE, [discovery_scope(info["discovery_url"]), ews_scope(info["ews_url"])]
    )
    code, found = doctor(alice_dir, capsys)
    assert code == 5
    assert found["token:discovery"]["status"] == "ok"
    contoso = found["token:dataverse:contoso"]
    assert contoso["status"] == "missing"
    assert contoso["message"] == "No consent yet for the organization Contoso Sandbox."


def test_check_my_setup_on_the_settings_page(strictness: RunningSandbox, bob_dir: Path) -> None:
    """The Settings page's button: the same findings as an htmx fragment, in the page's
    language; without htmx, the whole page with them."""
    app = create_app(
        {
            "DATA_DIR": str(bob_dir),
            "LOGIN_TOKEN": "test-login-token",
            "SANDBOX_INFO": strictness.describe(),
        }
    )
    try:
        web = signed_in(app)
        page = page_text(web.get("/settings"))
        assert 'data-testid="check-setup"' in page and 'hx-get="/settings/check"' in page
        fragment = page_text(web.get("/settings/check", headers={"HX-Request": "true"}))
        assert fragment.lstrip().startswith('<div id="setup-check"')
        assert 'data-testid="finding-change-tracking:contacts" data-status="missing"' in fragment
        assert "prvReadContact" in fragment and 'data-status="ok"' in fragment
        ja = page_text(
            web.get("/settings/check", headers={"HX-Request": "true", "Accept-Language": "ja"})
        )
        assert "不足" in ja and "セキュリティ ロールで読み取れるのは自分の部署のレコード" in ja
        full = page_text(web.get("/settings/check"))
        assert "<html" in full and 'data-testid="finding-crm-user"' in full
    finally:
        app.extensions["mailbox_sync.database"].dispose()


def test_the_page_shows_what_the_checks_found(data_dir: Path) -> None:
    """The fragment's shape, with a fake doctor: each finding's status, message and action."""
    from sync.setup.messages import N_

    app = create_app({"DATA_DIR": str(data_dir), "LOGIN_TOKEN": "test-login-token"})
    app.extensions[DOCTOR_KEY] = lambda profile, info: [
        Finding("sign-in", "ok", N_("Signed in as %(user)s.", user="x@y.example")),
        Finding(
            "metadata",
            "missing",
            N_("The table definitions came back empty."),
            N_("Open the app and sign in."),
        ),
        Finding("delivery:incoming", "info", N_("Note")),
    ]
    try:
        web = signed_in(app)
        fragment = page_text(web.get("/settings/check", headers={"HX-Request": "true"}))
        assert "Missing: 1. Each line says what to do." in fragment
        assert 'data-testid="finding-sign-in" data-status="ok"' in fragment
        assert "Signed in as x@y.example." in fragment
        assert 'data-testid="finding-metadata" data-status="missing"' in fragment
        assert "Open the app and sign in." in fragment
    finally:
        app.extensions["mailbox_sync.database"].dispose()


def test_doctor_without_a_sign_in_says_so(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run.main(["doctor", "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert code == 5
    assert "MISSING  Nobody is signed in on this computer." in out
    assert "→ Open the app and sign in." in out
    database = open_database(data_dir)
    try:
        findings = run_doctor(Profile(database, data_dir))
        assert [f.check for f in findings] == ["sign-in", "organization"]
    finally:
        database.dispose()


def _alice_mailbox(sandbox: RunningSandbox) -> dict[str, Any]:
    return next(
        r.values
        for r in sandbox.dataverse.table("contoso", "mailboxes").rows.values()
        if r.values["emailaddress"] == ALICE
    )


def test_doctor_checks_the_email_methods_only_when_email_is_chosen(
    strictness: RunningSandbox,
    alice_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With tracking and sending chosen, Incoming and Outgoing Email must name this client
    (mailbox.md: incomingemaildeliverymethod / outgoingemaildeliverymethod, 1 = Microsoft
    Dynamics 365 for Outlook, 2 = Server-Side Synchronization): an administrator switching
    Outgoing back to server-side sync is reported missing, with what to do. Without email
    chosen the same value is only shown."""
    sandbox = strictness
    info_file = configured(sandbox, tmp_path / "mail", ALICE)
    assert run.main(
        ["configure", "--data-dir", str(tmp_path / "mail"), "--sandbox-json", str(info_file),
         "--org", "contoso", "--mailbox-type", "exchange", "--email", ALICE, "--set-methods",
         "--take-over", "yes", "--filters", "my-active-contacts", "--tracking", "all",
         "--send-crm-email"]
    ) == 0  # fmt: skip
    capsys.readouterr()
    record = _alice_mailbox(sandbox)
    saved = record["outgoingemaildeliverymethod"]
    try:
        code, found = doctor(tmp_path / "mail", capsys)
        assert status(found)["delivery:incoming"] == "ok"
        assert status(found)["delivery:outgoing"] == "ok"

        record["outgoingemaildeliverymethod"] = 2
        code, found = doctor(tmp_path / "mail", capsys)
        assert code == 5
        assert status(found)["delivery:outgoing"] == "missing"
        assert "Server-Side" in found["delivery:outgoing"]["message"]
        assert found["delivery:outgoing"]["action"]
        assert status(found)["delivery:incoming"] == "ok"

        _, found = doctor(alice_dir, capsys)  # no email chosen there: shown, not required
        assert status(found)["delivery:outgoing"] == "info"
    finally:
        record["outgoingemaildeliverymethod"] = saved
