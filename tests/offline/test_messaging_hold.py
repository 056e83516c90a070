"""Issue 12 item 2, last part: while the app works offline, messaging sync holds its CRM
writes. A run makes no CRM call (proved with the sandbox Dataverse stopped) and saves no token,
so a contact changed in the mailbox meanwhile reaches the CRM after Go online, once
(`sync.messaging.held_offline` says why this can never lose a change)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.engine.options import EngineSettings
from sync.kinds import KINDS
from sync.messaging import OFFLINE_HOLD, Connection, MessagingJob
from sync.offline.store import set_mode
from sync.service import MESSAGING, SyncService
from sync.store.linkstore import SqlLinkStore
from sync.store.models import Run
from tests.e2e.harness import ORG_ID, SandboxPair, seed_contacts, start_pair, user_update_items


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SandboxPair]:
    with start_pair(tmp_path) as running:
        yield running


def test_a_mailbox_change_made_offline_reaches_the_crm_after_going_online_once(
    pair: SandboxPair,
) -> None:
    [contact, _other] = seed_contacts(pair, 2)
    database = pair.new_database()
    connects = []

    def connect() -> Connection:
        connects.append(1)
        return Connection(
            ORG_ID, pair.crm_side(), pair.mailbox_side(), EngineSettings(me=pair.me),
            [KINDS["contacts"]],
        )  # fmt: skip

    service = SyncService(database, {MESSAGING: MessagingJob(database, connect)})

    def run() -> Run:
        run_id = service.run(MESSAGING)
        with database.session() as session:
            found = session.get(Run, run_id)
            assert found is not None
            return found

    assert run().outcome == "ok"
    [link] = [lk for lk in SqlLinkStore(database, ORG_ID).load_links("contacts")
              if lk.crm_id == contact]  # fmt: skip
    assert link.mailbox_id is not None

    set_mode(database, "offline")
    pair.dataverse.stop()
    try:
        user_update_items(pair.mailbox_side(), "contacts", {link.mailbox_id: {"job_title": "Held"}})
        pair.log.clear()
        connects.clear()
        held = run()
        assert held.outcome == "skipped" and held.message == OFFLINE_HOLD.text
        assert connects == [] and pair.requests("dataverse") == [] and pair.requests("ews") == []
    finally:
        pair.dataverse.start()
    assert pair.crm_client().get("contacts", contact)["jobtitle"] != "Held"

    set_mode(database, "online")  # what Go online ends with
    pair.log.clear()
    assert run().outcome == "ok"
    assert pair.crm_client().get("contacts", contact)["jobtitle"] == "Held"
    writes = [(e.method, e.target, e.detail) for e in pair.requests("dataverse")
              if e.method != "GET"]  # fmt: skip
    assert len(writes) == 1, writes  # the held change, once
    pair.log.clear()
    assert run().outcome == "ok"
    assert [e for e in pair.requests("dataverse") if e.method in ("PATCH", "POST")] == []
    assert pair.dataverse.store.table("contoso", "contacts").get(contact) is not None
    assert len(pair.dataverse.store.table("contoso", "contacts")) == 2
