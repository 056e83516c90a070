"""The setup rules of a Graph mailbox (issue 9), on the in-memory ports: the form, the pick,
what a Graph mailbox syncs, and `configure`'s refusal of what Graph cannot do yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.setup import mailbox as mailbox_step
from sync.setup.configure import ConfigureOptions, configure
from sync.setup.memory import MemoryGraphProbe, demo_world, memory_ports
from sync.setup.profile import Profile
from sync.store.db import open_database

ALICE = "alice@contoso.example"


def test_the_form_takes_a_graph_mailbox_with_nothing_but_the_address() -> None:
    config, secrets = mailbox_step.parse_mailbox_form(
        {"type": "graph", "email": ALICE, "ews_url": "https://ignored.example/EWS/Exchange.asmx"}
    )
    assert (config.type, config.email, config.ews_url) == ("graph", ALICE, "")
    assert secrets == {}
    with pytest.raises(mailbox_step.FormErrors) as bad:
        mailbox_step.parse_mailbox_form({"type": "imap", "email": ALICE})
    assert "type" in bad.value.errors


def test_the_pick_is_graph_only_when_the_tenant_answers_for_the_address() -> None:
    world = demo_world()
    probe = MemoryGraphProbe(world)
    assert mailbox_step.pick_mailbox_type(probe, ALICE) == "exchange"
    world.graph_mailboxes.add(ALICE)
    assert mailbox_step.pick_mailbox_type(probe, ALICE.upper()) == "graph"
    assert mailbox_step.pick_mailbox_type(probe, "bob@contoso.example") == "exchange"
    assert mailbox_step.pick_mailbox_type(None, ALICE) == "exchange"


def test_a_graph_mailbox_syncs_contacts_appointments_tasks_and_tracks_but_does_not_send() -> None:
    assert mailbox_step.supported_kinds("graph") == ("contacts", "appointments", "tasks")  # gcal
    assert "appointments" in mailbox_step.supported_kinds("exchange")
    assert mailbox_step.supported_kinds("pop3") == ()
    both = frozenset({"incoming", "outgoing"})
    assert mailbox_step.synced_workloads("graph", both) == {"act", "incoming"}
    assert mailbox_step.synced_workloads("exchange", both) == {"act", "incoming", "outgoing"}
    assert not mailbox_step.can_send("graph") and mailbox_step.can_send("exchange")


def test_configure_graph_stores_a_graph_mailbox_that_sends_crm_email(tmp_path: Path) -> None:
    world = demo_world()
    world.graph_mailboxes.add(ALICE)
    database = open_database(tmp_path)
    try:
        profile = Profile(database, tmp_path)
        profile.set("account_upn", ALICE)
        ports = memory_ports(world, ALICE)
        form = {"type": "graph", "email": ALICE}
        options = ConfigureOptions(
            org="contoso", mailbox_form=form, take_over=True, send_crm_email=True
        )
        options.filters = ["my-active-contacts", "my-open-tasks"]
        done = configure(profile, ports, options)
        assert any("(graph), connection tested" in line for line in done)
        stored = profile.mailbox()
        assert stored is not None and stored.type == "graph"
        # the claim of a Graph mailbox is kept in the organization, as for POP3
        assert not any("@" in location for location in world.claims)
    finally:
        database.dispose()
