"""Hostile items on both sides never crash a run (issue 13, point 4): unicode (RTL, emoji,
combining marks), HTML and script in names, 10 MB bodies, bad addresses, missing required
fields, dates out of range, a message with 500 attachments. Each run returns, no kind stops,
and the good items beside the hostile ones still sync. (That an item refused on every run
becomes a per-item error and then an "item-failed" alert is tests/engine/test_engine_linkstore.py
and test_engine_plan.py's; the sandboxes accept every item here, so none is refused.)

Found and fixed here: a CRM appointment or task dated in year 0001 crashed the run
(`strftime("%Y")` writes year 1 as "1", which `fromisoformat` refuses): sync/kinds/base.py
and sync/crm/metadata.py now pad the year and read an unpadded one.

The sandboxes run in this process (tests/e2e/harness.py); the agent too, on one database for
the module, so every test adds its items to a world that already holds the earlier ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.engine import KindResult
from tests.e2e.harness import (
    ALICE,
    ORG,
    Agent,
    SandboxPair,
    make_agent,
    moment,
    start_pair,
    tomorrow_at,
    tracked,
    user_create_items,
)

TEN_MB = 10 * 1024 * 1024
ATTACHMENTS = 500 if os.environ.get("MATRIX_LONG") == "1" else 40
"""500 in the long run: tracking them took 195 s here (one request or more per attachment),
too long for CI's budget; 40 in CI."""
SCRIPT = "<script>alert('x')</script>"
NAMES = st.lists(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
    | st.sampled_from(["שלום", "مرحبا", "\u202e", "👩‍💻", "🇯🇵", SCRIPT, "e\u0301", "\0", "\x0b"]),
    min_size=1,
    max_size=4,
).map("".join)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPair]:
    with start_pair(tmp_path_factory.mktemp("hostile")) as running:
        yield running


@pytest.fixture(scope="module")
def agent(pair: SandboxPair) -> Iterator[Agent]:
    made = make_agent(pair)
    yield made
    made.database.dispose()


def crm(pair: SandboxPair, entity_set: str, row: dict[str, Any]) -> str:
    return pair.dataverse.insert(ORG, entity_set, row, as_user=ALICE)


def run(agent: Agent) -> dict[str, KindResult]:
    """One run: it returns (a crash fails the test), no kind stopped."""
    results = agent.sync()
    assert all(r.stopped is None for r in results.values()), results
    return results


def mailbox_names(agent: Agent, kind: str = "contacts") -> set[str]:
    from tests.e2e.harness import full_read

    return {
        str(u.fields.get("surname") or u.fields.get("subject") or "")
        for u in full_read(agent.mailbox, kind).values()
    }


def good_one(pair: SandboxPair, tag: str) -> str:
    """A plain contact added beside the hostile ones: it must sync whatever they do."""
    crm(pair, "contacts", {"firstname": "Good", "lastname": f"Good {tag}"})
    return f"Good {tag}"


CRM_ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "ten-mb-description": ("contacts", {"lastname": "Big", "description": "x" * TEN_MB}),
    "script-and-rtl-names": (
        "contacts",
        {"firstname": f"{SCRIPT}שלום", "lastname": f"مرحبا 👩‍💻 {SCRIPT}", "jobtitle": "\u202e"},
    ),
    "bad-address": ("contacts", {"lastname": "Bad address", "emailaddress1": "not <an> @@address"}),
    "no-last-name": ("contacts", {"firstname": "No last name"}),
    "year-9999": (
        "appointments",
        {"subject": "Far future", "scheduledstart": "9999-12-31T10:00:00Z",
         "scheduledend": "9999-12-31T11:00:00Z"},
    ),
    "year-0001": (
        "appointments",
        {"subject": "Far past", "scheduledstart": "0001-01-01T10:00:00Z",
         "scheduledend": "0001-01-01T11:00:00Z"},
    ),
    "end-before-start": (
        "appointments",
        {"subject": "Backwards", "scheduledstart": moment(tomorrow_at(12)),
         "scheduledend": moment(tomorrow_at(10))},
    ),
    "task-due-year-1": ("tasks", {"subject": "Ancient task", "scheduledend": "0001-01-01T00:00:00Z"}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CRM_ROWS))
def test_a_hostile_crm_record_never_crashes_a_run(
    pair: SandboxPair, agent: Agent, case: str
) -> None:
    entity_set, row = CRM_ROWS[case]
    try:
        crm(pair, entity_set, dict(row))
    except Exception as refused:  # noqa: BLE001 - the sandbox refuses it as Dataverse does
        pytest.skip(f"Dataverse refuses such a record: {refused}")
    good = good_one(pair, case)
    run(agent)
    assert good in mailbox_names(agent)


MAILBOX_ITEMS: dict[str, tuple[str, dict[str, Any]]] = {
    "script-and-rtl-names": (
        "contacts", tracked(given_name=f"{SCRIPT}שלום", surname=f"مرحبا 👩‍💻 {SCRIPT}"),
    ),
    "no-names-at-all": ("contacts", tracked(company_name="Only a company")),
    "bad-address": ("contacts", tracked(surname="Bad mailbox address",
                                        email_address_1="<<not an address>>")),
    "ten-mb-notes": ("contacts", tracked(surname="Big notes", body="y" * TEN_MB)),
    "year-9999": ("appointments", tracked(subject="Outlook far future",
                                          start="9999-12-30T10:00:00Z",
                                          end="9999-12-30T11:00:00Z")),
    "task-without-subject": ("tasks", tracked()),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MAILBOX_ITEMS))
def test_a_hostile_mailbox_item_never_crashes_a_run(
    pair: SandboxPair, agent: Agent, case: str
) -> None:
    kind, fields = MAILBOX_ITEMS[case]
    try:
        user_create_items(pair.mailbox_side(), kind, [dict(fields)])
    except (AssertionError, ValueError, TypeError) as refused:
        pytest.skip(f"Exchange refuses such an item: {refused}")
    good = good_one(pair, f"mailbox {case}")
    run(agent)
    assert good in mailbox_names(agent)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(crm_name=NAMES, mailbox_name=NAMES)
def test_generated_names_on_both_sides_never_crash_a_run(
    pair: SandboxPair, agent: Agent, crm_name: str, mailbox_name: str
) -> None:
    crm(pair, "contacts", {"firstname": crm_name[:50], "lastname": crm_name[:50]})
    try:
        user_create_items(pair.mailbox_side(), "contacts",
                          [tracked(given_name=mailbox_name, surname=mailbox_name)])  # fmt: skip
    except (AssertionError, ValueError) as refused:  # e.g. XML cannot carry \0
        assert mailbox_name, refused
    good = good_one(pair, f"generated {len(pair.dataverse.table(ORG, 'contacts'))}")
    run(agent)
    assert good in mailbox_names(agent)


def test_a_message_with_many_attachments_is_tracked_without_a_crash(
    pair: SandboxPair, tmp_path: Path
) -> None:
    from tests.mail.test_email_sandbox import Install

    mail = EmailMessage()
    mail["From"] = f"Hostile {SCRIPT} <hostile@customer.example>"
    mail["To"] = f"Alice <{ALICE}>"
    mail["Subject"] = f"{SCRIPT} {ATTACHMENTS} attachments שלום 👩‍💻"
    mail["Message-ID"] = "<hostile-500@customer.example>"
    mail["Date"] = format_datetime(datetime.now(UTC) - timedelta(minutes=5))
    mail.set_content("Many files.")
    for i in range(ATTACHMENTS):
        mail.add_attachment(f"file {i}".encode(), maintype="text", subtype="plain",
                            filename=f"{SCRIPT}{i}.txt")  # fmt: skip
    pair.ews.deliver_mime(ALICE, mail.as_bytes(), "inbox")
    from sync.store.db import open_database

    install = Install(pair, ALICE, open_database(tmp_path / "mail"))
    try:
        result = install.run()
    finally:
        install.close()
        install.database.dispose()
    assert not result.stopped, result
    assert result.tracked + result.errors >= 1
