"""Start the whole sandbox in one process: Dataverse + Global Discovery, EWS, identity provider.

All servers share one token registry (a token works everywhere), one request log and one fault
profile, and listen on 127.0.0.1 only. `describe()` is the JSON `run.py sandbox --json` prints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.dataverse import DataverseServer
from sandbox.ews import EwsServer
from sandbox.faults import Fault, FaultProfile
from sandbox.graph import GraphServer  # (graph)
from sandbox.identity import ORGANIZATIONS, USERS, TokenRegistry
from sandbox.idp import IdentityServer
from sandbox.requestlog import RequestLog


@dataclass
class RunningSandbox:
    """The running servers and what they share."""

    tokens: TokenRegistry
    log: RequestLog
    faults: FaultProfile
    dataverse: DataverseServer
    ews: EwsServer
    identity: IdentityServer
    extra: dict[str, Any] = field(default_factory=dict)
    graph: GraphServer | None = None  # (graph) the sandbox Microsoft Graph

    def describe(self) -> dict[str, Any]:
        """The JSON object of `run.py sandbox --json` (DESIGN.md §4); keys may only be added."""
        return {
            "organizations": [
                {
                    "unique_name": org.unique_name,
                    "friendly_name": org.friendly_name,
                    "id": org.id,
                    "url": self.dataverse.org_url(org.unique_name),
                    "api_url": self.dataverse.api_url(org.unique_name),
                }
                for org in ORGANIZATIONS
            ],
            "discovery_url": self.dataverse.discovery_url,
            "lenient": not self.dataverse.strict,
            "ews_url": self.ews.url,
            "ews_ca_file": self.ews.ca_file,
            # (graph) begin
            "graph_url": self.graph.url if self.graph else None,
            "graph_ca_file": self.graph.ca_file if self.graph else None,
            # (graph) end
            "authority": self.identity.authority + "/",
            "identity_ca_file": self.identity.ca_file,
            "client_id": self.identity.client_id,
            "users": [
                {
                    "upn": user.upn,
                    "password": user.password,
                    "token": self.tokens.static_token(user.upn),
                    "organizations": list(user.organizations),
                    "systemuser_ids": {org: user.systemuser_id(org) for org in user.organizations},
                }
                for user in USERS
            ],
        }

    def summary(self) -> str:
        return f"Dataverse {self.dataverse.base_url}, EWS {self.ews.url}"

    def human_summary(self) -> str:
        info = self.describe()
        lines = ["Sandbox servers (127.0.0.1 only; Ctrl-C stops them):"]
        for org in info["organizations"]:
            lines.append(f"  Dataverse {org['friendly_name']:<18} {org['api_url']}")
        lines += [
            f"  Global Discovery            {info['discovery_url']}",
            f"  EWS                         {info['ews_url']}  (CA: {info['ews_ca_file']})",
            f"  Microsoft Graph             {info['graph_url']}  (CA: {info['graph_ca_file']})",
            f"  Identity provider           {info['authority']}",
            "Users (password, bearer token):",
        ]
        for user in info["users"]:
            lines.append(f"  {user['upn']:<24} {user['password']:<18} {user['token']}")
        return "\n".join(lines)


@contextlib.contextmanager
def start_sandbox(
    work_dir: Path | str,
    port: int = 0,
    faults: Sequence[str] = (),
    demo_scale: float = 1.0,
    lenient: bool = False,
) -> Iterator[RunningSandbox]:
    """Start every sandbox server; `port` is the Dataverse port (EWS and identity take free ones).

    Strict by default: Dataverse refuses what the service refuses (missing privileges, tables
    without change tracking). `lenient` turns those refusals off, for demos only."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    tokens, log = TokenRegistry(), RequestLog()
    profile = FaultProfile()
    for spec in faults:
        profile.add(Fault.parse(spec))
    with contextlib.ExitStack() as stack:
        dataverse = DataverseServer(
            tokens, log, profile, port=port, demo_scale=demo_scale, strict=not lenient
        )
        ews = EwsServer(tokens, log, profile, data_dir=str(work))
        identity = IdentityServer(tokens, log, profile, tls_dir=str(work / "identity"))
        graph = GraphServer(tokens, log, profile, data_dir=str(work))  # (graph)
        for server in (dataverse, ews, identity, graph):
            server.start()
            stack.callback(server.stop)
        # a 401 from the sandbox Dataverse points at the sandbox identity provider
        dataverse.authorization_uri = f"{identity.authority}/oauth2/authorize"
        yield RunningSandbox(tokens, log, profile, dataverse, ews, identity, graph=graph)
