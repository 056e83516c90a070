"""Bad input refused by the setup rules before any network call (issue 14, points 4 and 6):
loopback-only plain http compared exactly, RFC 5321 lengths, host names, the EWS adapter's
own refusal, computer names, a connected organization that is the synchronizing one, the
sandbox's fault specs and a missing sandbox description."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sandbox.faults import Fault, FaultSpecError
from sync.sandbox_profile import SandboxInfoError, adopt_sandbox, read_info
from sync.settings import get_setting, set_setting
from sync.setup import addresses
from sync.setup.adapters import AdapterTester
from sync.setup.configure import ConfigureOptions, configure
from sync.setup.instance import MAX_INSTANCE_NAME, clean_instance_name
from sync.setup.mailbox import FormErrors, check_connection, parse_mailbox_form
from sync.setup.memory import demo_world, memory_ports
from sync.setup.messages import SetupError
from sync.setup.ports import MailboxConfig
from sync.setup.profile import Profile
from sync.store.db import open_database

ALICE = "alice@contoso.example"


@pytest.mark.parametrize(
    ("url", "secure"),
    [
        ("https://mail.contoso.example/EWS/Exchange.asmx", True),
        ("http://127.0.0.1:8080/EWS/Exchange.asmx", True),
        ("http://localhost/EWS/Exchange.asmx", True),
        ("http://LOCALHOST:81/", True),
        ("http://[::1]:8080/EWS/Exchange.asmx", True),
        ("http://127.0.0.1.evil.example/EWS/Exchange.asmx", False),
        ("http://localhost.evil.example/", False),
        ("http://127.0.0.1@evil.example/", False),  # user info, not the host
        ("http://127.0.0.10/", False),
        ("http://mail.contoso.example/EWS/Exchange.asmx", False),
        ("ftp://127.0.0.1/", False),
        ("https:///no-host", False),
        ("https://mail.contoso.example:99999/", False),
        ("http://[::1/", False),
    ],
)
def test_plain_http_only_to_this_computer_compared_exactly(url: str, secure: bool) -> None:
    assert addresses.is_secure_url(url) is secure


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1.evil.example/EWS", "http://[::1]:8443/EWS/Exchange.asmx"]
)
def test_the_ews_field_takes_https_only_even_to_this_computer(url: str) -> None:
    """The EWS client speaks TLS only, so the page says so on the field instead of accepting
    an address the connection would refuse later."""
    with pytest.raises(FormErrors) as refused:
        parse_mailbox_form({"type": "exchange", "email": ALICE, "ews_url": url})
    assert "must start with https://" in str(refused.value.errors["ews_url"])
    config, _ = parse_mailbox_form(
        {"type": "exchange", "email": ALICE, "ews_url": "https://[::1]:8443/EWS/Exchange.asmx"}
    )
    assert config.ews_url == "https://[::1]:8443/EWS/Exchange.asmx"


def test_an_overlong_ews_address_is_refused_on_its_field() -> None:
    url = "https://mail.contoso.example/" + "a" * 5000
    with pytest.raises(FormErrors) as refused:
        parse_mailbox_form({"type": "exchange", "email": ALICE, "ews_url": url})
    assert "too long" in str(refused.value.errors["ews_url"])


@pytest.mark.parametrize(
    ("address", "fine"),
    [
        (ALICE, True),
        ("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 61, True),  # 254
        ("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 62, False),  # 255
        ("a" * 65 + "@contoso.example", False),
        ("a" * 100_000 + "@contoso.example", False),
        ("alice@" + "b" * 64 + ".example", False),
        ("alice\x00@contoso.example", False),
        ("alice@contoso..example", False),
        ("alice@contoso", False),
        ("jörg@bücher.example", True),
    ],
)
def test_email_addresses_keep_rfc_5321_lengths_and_shape(address: str, fine: bool) -> None:
    assert (addresses.email_problem(address) is None) is fine


def test_a_huge_email_address_is_a_form_error_not_a_crm_query() -> None:
    with pytest.raises(FormErrors) as refused:
        parse_mailbox_form({"type": "exchange", "email": "a" * 100_000 + "@contoso.example"})
    assert "at most 254 characters" in str(refused.value.errors["email"])


@pytest.mark.parametrize(
    "host", ["b" * 64 + ".example", "mail." * 60 + "example", "mail..example", ""]
)
def test_pop3_hosts_keep_dns_lengths(host: str) -> None:
    form = {"type": "pop3", "email": ALICE, "password": "x", "smtp_host": "smtp.example"}
    with pytest.raises(FormErrors) as refused:
        parse_mailbox_form({**form, "pop3_host": host})
    assert "host name" in str(refused.value.errors["pop3_host"])


def test_an_overlong_user_name_is_refused() -> None:
    form = {"type": "exchange", "email": ALICE, "auth": "basic", "password": "x"}
    with pytest.raises(FormErrors) as refused:
        parse_mailbox_form({**form, "username": "u" * 1000})
    assert "at most 256 characters" in str(refused.value.errors["username"])


def test_the_ews_adapters_refusal_is_a_message_on_the_field() -> None:
    """Should the EWS adapter refuse an address the form let through (a stored one from an
    older version, say), the page shows that on the field: it does not crash."""

    def refusing(config: MailboxConfig, secrets: Mapping[str, str]) -> Any:
        raise ValueError("EWS endpoints must use https:// (TLS 1.2 or later)")

    config = MailboxConfig(type="exchange", email=ALICE, ews_url="http://127.0.0.1:1/EWS")
    with pytest.raises(SetupError) as refused:
        check_connection(AdapterTester(refusing, None), config, {})
    assert refused.value.field == "ews_url"
    assert "This EWS address cannot be used: EWS endpoints must use https://" in str(
        refused.value.msg
    )


def test_computer_names_are_refused_whole_never_cut() -> None:
    assert clean_instance_name("  build-box  ") == "build-box"
    assert clean_instance_name("x" * MAX_INSTANCE_NAME) == "x" * MAX_INSTANCE_NAME
    with pytest.raises(SetupError, match="one line of at most 100 characters"):
        clean_instance_name("x" * 100_000)
    with pytest.raises(SetupError, match="one line of at most 100 characters"):
        clean_instance_name("desk\npc")


def test_the_synchronizing_org_cannot_also_be_connected(data_dir: Path) -> None:
    world = demo_world()
    database = open_database(data_dir)
    try:
        profile = Profile(database, data_dir)
        set_setting(database, "account_upn", ALICE)
        options = ConfigureOptions(org="contoso", connected=["fabrikam", "Contoso"])
        with pytest.raises(SetupError, match="contoso is the synchronizing organization"):
            configure(profile, memory_ports(world, ALICE), options)
        assert profile.synchronizing_org() is None  # nothing stored
    finally:
        database.dispose()


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("430", "unknown fault kind '430'"),
        ("429:every=x", "every must be a number, not 'x'"),
        ("429:every=-2", "every must be 0 or more"),
        ("503:probability=1.5", "probability must be from 0.0 to 1.0"),
        ("slow:delay=nan", "delay must be from 0.0 to 3600.0"),
        ("slow:delay", "delay needs a value"),
        ("drop:often=1", "unknown option 'often'"),
    ],
)
def test_a_bad_fault_spec_says_what_is_wrong(spec: str, problem: str) -> None:
    with pytest.raises(FaultSpecError) as refused:
        Fault.parse(spec)
    assert str(refused.value).startswith(f"bad fault spec {spec!r}: {problem}")


def test_the_readmes_fault_specs_still_parse() -> None:
    for spec in ("429:every=5,delay=2", "503:probability=0.1", "drop:every=7", "slow:delay=3"):
        Fault.parse(spec)
    assert Fault.parse("busy:every=4,delay=0.5,times=2,match=GetFolder").times == 2


def test_a_missing_sandbox_description_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxInfoError, match="does not exist"):
        read_info(tmp_path / "nowhere.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(SandboxInfoError, match="is not the output of"):
        read_info(tmp_path / "list.json")


def test_adopting_a_sandbox_moves_only_mailboxes_on_this_computer(data_dir: Path) -> None:
    info = {"organizations": [], "ews_url": "https://127.0.0.1:4443/EWS/Exchange.asmx"}
    database = open_database(data_dir)
    try:
        for old, moved in (
            ("https://127.0.0.1:1234/EWS/Exchange.asmx", True),
            ("https://127.0.0.1.evil.example:1234/EWS/Exchange.asmx", False),
        ):
            set_setting(database, "mailbox", {"type": "exchange", "ews_url": old})
            adopt_sandbox(database, info, fresh=False)
            expected = info["ews_url"] if moved else old
            assert get_setting(database, "mailbox")["ews_url"] == expected
    finally:
        database.dispose()
