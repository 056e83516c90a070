"""Issue 14, point 3, end to end: sandbox Dataverse + EWS + identity provider, alice signed in
through msal, the messaging job running the engine over the real clients with tokens from the
real TokenProvider (as sync.connect builds them).

- The identity provider revokes alice's access tokens in the middle of a run (both servers
  answer 401 to them from then on): the clients force a refresh through the refresh token and
  the run completes, with both sides in step and nothing lost or doubled.
- A run whose cached tokens are still valid sends no request to the identity provider.
- The refresh token revoked too: the run fails with the "Sign in again" alert; after signing in
  again the next run completes and resolves it.
- The identity provider answering 503 to the refresh: bounded attempts, then a run message in
  words (no traceback); the next run, with the service back, completes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.faults import Fault
from sandbox.idp import SANDBOX_CLIENT_ID, IdentityServer
from sync.auth import SIGN_IN_ALERT, TokenProvider, dataverse_scope, ews_scope
from sync.crm.client import DataverseClient, RetryPolicy
from sync.crm.side import DataverseSide
from sync.engine import EngineSettings
from sync.kinds import KINDS
from sync.mailbox.ews import EwsConnection, EwsSide, OAuthToken
from sync.messaging import Connection, MessagingJob
from sync.runs import ProgressListener, open_alerts, recent_runs
from sync.service import MESSAGING, SyncService
from sync.store.db import Database
from tests.auth.helpers import answer_of, sign_in
from tests.e2e.harness import (
    ALICE,
    FORMATTED,
    ORG,
    ORG_ID,
    Agent,
    SandboxPair,
    counts,
    in_step,
    seed_contacts,
    seed_tasks,
    snapshots,
    start_pair,
    tracked,
    user_create_items,
)

PASSWORD = "alice-Sandbox-1"
REDIRECT = "http://127.0.0.1:8765/signin/callback"
SYNCED = ("contacts", "tasks")
N_CONTACTS, N_TRACKED, N_TASKS = 100, 20, 15
TOKEN_PATH = "oauth2/v2.0/token"


@dataclass
class World:
    pair: SandboxPair
    idp: IdentityServer
    cache_path: Path
    database: Database

    def identity_requests(self) -> list[Any]:
        return self.pair.requests("identity")

    def provider(self) -> TokenProvider:
        """A new provider on the token cache, as each run of the app builds one."""
        return TokenProvider(
            self.idp.authority,
            SANDBOX_CLIENT_ID,
            self.cache_path,
            ca_file=self.idp.ca_file,
            sandbox=True,
            allow_plaintext=True,
            retry_waits=(0.05, 0.05),
        )

    def sign_in(self) -> None:
        """Alice signs in in the browser (the wizard's first step)."""
        provider = self.provider()
        flow = provider.begin(REDIRECT, [self.crm_scope])
        with requests.Session() as browser:
            browser.verify, browser.trust_env = self.idp.ca_file, False
            provider.complete(flow, answer_of(sign_in(browser, flow["auth_uri"], ALICE, PASSWORD)))

    @property
    def crm_scope(self) -> str:
        return dataverse_scope(self.pair.dataverse.org_url(ORG))

    def connect(self) -> tuple[Connection, Agent]:
        """What sync.connect builds for one run: both clients on token sources of one provider."""
        provider = self.provider()
        client = DataverseClient(
            self.pair.dataverse.api_url(ORG),
            provider.token_callable([self.crm_scope], ALICE),
            annotations=FORMATTED,
            retry=RetryPolicy(backoff=0.05, max_backoff=0.5),
        )
        tokens = provider.token_callable([ews_scope(self.pair.ews.url)], ALICE)
        connection = EwsConnection(
            self.pair.ews.url, ALICE, OAuthToken(tokens), ca_file=self.pair.ews.ca_file, max_wait=30
        )
        crm, mailbox = DataverseSide(client, owner_id=self.pair.me), EwsSide(connection)
        settings = EngineSettings(me=self.pair.me)
        agent = Agent(crm, mailbox, self.database, settings)
        kinds = [KINDS[name] for name in SYNCED]
        return Connection(ORG_ID, crm, mailbox, settings, kinds, close=client.close), agent

    def run(self, listener: ProgressListener | None = None) -> Any:
        """One messaging run (the job closes its connection at the end); its recorded row."""
        connection, _ = self.connect()
        service = SyncService(
            self.database, {MESSAGING: MessagingJob(self.database, lambda: connection)}, listener
        )
        run_id = service.run(MESSAGING, "now")
        return next(r for r in recent_runs(self.database, limit=5) if r.id == run_id)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with start_pair(tmp_path) as pair:
        idp = IdentityServer(pair.tokens, pair.log, pair.faults, tls_dir=str(tmp_path / "idp"))
        idp.start()
        try:
            seed_contacts(pair, N_CONTACTS)
            user_create_items(
                pair.mailbox_side(),
                "contacts",
                [tracked(given_name=f"Tracked{i}", surname="Outlook") for i in range(N_TRACKED)],
            )
            seed_tasks(pair, N_TASKS)
            world = World(pair, idp, tmp_path / "cache" / "token_cache.bin", pair.new_database())
            world.sign_in()
            yield world
        finally:
            idp.stop()


def during_contacts_apply(action: Callable[[], object]) -> ProgressListener:
    """A progress listener that does `action` once, after the first batch of contacts is
    written and before the next: in the middle of the run, between writes."""
    done: list[object] = []

    def listener(step: int, total: int, phase: str | None) -> None:
        # the phase in words with the kind's own count (sync/progress.py `describe`)
        writing = re.match(r"Contacts: writing (\d+)/(\d+)$", phase or "")
        if not done and writing and 0 < int(writing[1]) < int(writing[2]):
            done.append(action())

    return listener


def assert_in_step(world: World) -> None:
    """Both sides hold the same records under the mapping, each once (read afresh)."""
    connection, agent = world.connect()
    try:
        snaps = snapshots(agent, SYNCED)
    finally:
        connection.close()
    assert in_step(agent, snaps) == {}
    assert counts(snaps) == {
        "contacts": (N_CONTACTS + N_TRACKED, N_CONTACTS + N_TRACKED),
        "tasks": (N_TASKS, N_TASKS),
    }


def test_access_tokens_revoked_mid_run_are_refreshed_and_the_run_completes(
    world: World,
) -> None:
    revoked: list[int] = []
    started = len(world.pair.log)
    run = world.run(
        during_contacts_apply(lambda: revoked.append(world.idp.revoke_access_tokens(ALICE)))
    )
    assert revoked and revoked[0] >= 2  # the Dataverse token and the EWS token
    assert run.outcome == "ok", run.message
    assert open_alerts(world.database) == []
    after = list(world.pair.log)[started:]
    refused = {e.service for e in after if e.status == 401}
    assert refused == {"dataverse", "ews"}  # both servers refused the revoked tokens …
    refreshes = [e for e in after if e.service == "identity" and "refresh_token" in e.detail]
    assert len(refreshes) >= 2  # … and each client redeemed the refresh token once more
    assert_in_step(world)


def test_a_run_with_valid_cached_tokens_asks_nothing_of_the_identity_provider(
    world: World,
) -> None:
    first = world.run()  # gets the Dataverse and EWS tokens with the refresh token
    assert first.outcome == "ok", first.message
    seen = len(world.identity_requests())
    again = world.run()
    assert again.outcome == "ok", again.message
    assert [f"{e.method} {e.target}" for e in world.identity_requests()[seen:]] == []
    assert_in_step(world)


def test_a_refused_refresh_raises_the_sign_in_alert_then_signing_in_again_resumes(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    def revoke_everything() -> None:
        world.idp.revoke_user(ALICE)  # the refresh tokens (an admin's "revoke sessions")
        world.idp.revoke_access_tokens(ALICE)

    caplog.set_level(logging.INFO)
    run = world.run(during_contacts_apply(revoke_everything))
    assert run.outcome == "failed" and "sign-in required" in run.message
    [alert] = open_alerts(world.database)
    assert (alert.code, alert.title, alert.severity) == (SIGN_IN_ALERT, "Sign in again", "error")
    assert "AADSTS50173" in alert.message
    assert "/signin" in alert.action and ALICE in alert.action
    assert not [r for r in caplog.records if r.exc_info]  # reported, not a traceback

    world.sign_in()
    again = world.run()
    assert again.outcome == "ok", again.message
    assert open_alerts(world.database) == []
    assert_in_step(world)


def test_the_identity_provider_down_during_a_refresh_is_retried_then_reported(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    down_from: list[int] = []

    def revoke_while_down() -> None:
        down_from.append(len(world.identity_requests()))
        world.pair.faults.set(Fault.parse(f"503:every=1,match={TOKEN_PATH}"))
        world.idp.revoke_access_tokens(ALICE)

    caplog.set_level(logging.INFO)
    run = world.run(during_contacts_apply(revoke_while_down))
    assert run.outcome != "ok"
    assert "503 Service Unavailable 3 times in a row" in run.message
    assert "Traceback" not in run.message
    assert not [r for r in caplog.records if r.exc_info]
    since = world.identity_requests()[down_from[0] :]
    attempts = [e.status for e in since if TOKEN_PATH in e.target]
    assert attempts and set(attempts) == {503}
    assert len(attempts) % 3 == 0 and len(attempts) <= 3 * 2 * len(SYNCED)  # bounded
    assert [a.code for a in open_alerts(world.database)] == []  # not a sign-in problem

    world.pair.faults.clear()
    again = world.run()
    assert again.outcome == "ok", again.message
    assert_in_step(world)
