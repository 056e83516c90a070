"""The end-to-end harness: a sandbox Dataverse + mailbox pair (EWS, or Graph with `protocol`
"graph"), an agent syncing between them, seeding through the server's `insert` API, "user"
changes on either side (through either mailbox protocol), and the checks that both sides hold
the same records under the mapping.

Shared by tests/e2e and bench/bench_sync.py, so it imports nothing from pytest.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.dataverse import DataverseServer
from sandbox.ews import EwsServer
from sandbox.faults import FaultProfile
from sandbox.graph import GraphServer
from sandbox.identity import TokenRegistry, stable_id, user_by_upn
from sandbox.requestlog import LoggedRequest, RequestLog
from sync.crm.client import DataverseClient, RetryPolicy
from sync.crm.parties import PartyResolver
from sync.crm.side import DataverseSide
from sync.engine import EngineSettings, KindResult, begin_run, sync_kind
from sync.engine.filters import in_filter
from sync.engine.state import UNTRACKED, LinkRow
from sync.graph import calendar as graph_calendar
from sync.graph import convert as graph_convert
from sync.graph.client import GraphClient
from sync.graph.side import GraphSide
from sync.kinds import KINDS, Kind
from sync.kinds.appointments import appointments_kind, recurring_kind
from sync.mailbox import ews_convert
from sync.mailbox.ews import EwsConnection, EwsSide, OAuthToken
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.sides import Side, UpdateOp, Upsert
from sync.store.db import Database, open_database
from sync.store.linkstore import SqlLinkStore

ALICE = "alice@contoso.example"
ORG = "contoso"
ORG_ID = stable_id("org", ORG)
FORMATTED = "OData.Community.Display.V1.FormattedValue"
PROTOCOLS = ("ews", "graph")
"""The mailbox protocols the engine tests run over (a fixture param)."""
KIND_NAMES = tuple(KINDS)
"""contacts, tasks, appointments, recurringappointments: the order a messaging sync runs."""


def moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tomorrow_at(hour: int) -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, hour, tzinfo=UTC) + timedelta(days=1)


# --- the servers -------------------------------------------------------------------------------


@dataclass
class SandboxPair:
    """A running sandbox Dataverse and EWS (and, for protocol "graph", a sandbox Graph) sharing
    one token registry, log and fault profile. `mailbox_side()` speaks `protocol`."""

    tokens: TokenRegistry
    log: RequestLog
    faults: FaultProfile
    dataverse: DataverseServer
    ews: EwsServer
    work_dir: Path
    graph: GraphServer | None = None
    protocol: str = "ews"
    _stores: int = 0

    @property
    def token(self) -> str:
        """Alice's static bearer token: accepted by both servers."""
        return self.tokens.static_token(ALICE)

    @property
    def me(self) -> str:
        """Alice's systemuserid in contoso (the "me" of the sync filters)."""
        user = user_by_upn(ALICE)
        assert user is not None
        return user.systemuser_id(ORG)

    def crm_client(self, **options: Any) -> DataverseClient:
        token = self.token
        options.setdefault("retry", RetryPolicy(backoff=0.05, max_backoff=0.5))
        return DataverseClient(self.dataverse.api_url(ORG), lambda: token, **options)

    def crm_side(self, **options: Any) -> DataverseSide:
        # Formatted values carry the parent account's name: the contact's company.
        options.setdefault("annotations", FORMATTED)
        return DataverseSide(self.crm_client(**options), owner_id=self.me)

    @property
    def mailbox_service(self) -> str:
        """The request log's name of the mailbox service ("ews" or "graph")."""
        return self.protocol

    def mailbox_side(self, max_wait: float = 60, **options: Any) -> Any:
        """Alice's mailbox as an EwsSide, or a GraphSide when the pair speaks Graph."""
        token = self.token
        if self.protocol == "graph":
            assert self.graph is not None
            client = GraphClient(
                self.graph.url, lambda: token, verify=self.graph.ca_file,
                retry=RetryPolicy(backoff=0.01, max_backoff=0.2),
            )  # fmt: skip
            return GraphSide(client, **options)
        connection = EwsConnection(
            self.ews.url, ALICE, OAuthToken(lambda: token), ca_file=self.ews.ca_file,
            max_wait=max_wait,
        )  # fmt: skip
        return EwsSide(connection, **options)

    def new_database(self) -> Database:
        """A fresh local database (a new install) in its own data directory."""
        self._stores += 1
        return open_database(self.work_dir / f"data{self._stores}")

    def requests(self, service: str) -> list[LoggedRequest]:
        return [e for e in self.log if e.service == service]


@contextlib.contextmanager
def start_pair(work_dir: Path, demo_scale: float = 0, protocol: str = "ews") -> Iterator[SandboxPair]:  # fmt: skip
    """Start a sandbox Dataverse (users only; `demo_scale` 1.0: the demo data `make run`
    shows) and an empty EWS on free ports; with `protocol` "graph" an empty Graph too, which
    the pair's mailbox side then speaks."""
    tokens, log, faults = TokenRegistry(), RequestLog(), FaultProfile()
    dataverse = DataverseServer(tokens, log, faults, port=0, demo_scale=demo_scale)
    ews = EwsServer(tokens, log, faults, str(work_dir / "ews"), port=0, demo=False)
    graph = GraphServer(tokens, log, faults, str(work_dir)) if protocol == "graph" else None
    dataverse.start()
    try:
        ews.start()
        if graph is not None:
            graph.start()
        try:
            yield SandboxPair(tokens, log, faults, dataverse, ews, work_dir, graph, protocol)
        finally:
            faults.clear()
            ews.stop()
            if graph is not None:
                graph.stop()
    finally:
        dataverse.stop()


# --- the agent (what the app runs per organization) ------------------------------------------


@dataclass
class Agent:
    """One install: its sides, its local database and its settings."""

    crm: Side
    mailbox: Side
    database: Database
    settings: EngineSettings
    store: SqlLinkStore = field(init=False)
    kinds: dict[str, Kind] = field(init=False)

    def __post_init__(self) -> None:
        self.store = SqlLinkStore(self.database, ORG_ID)
        self.kinds = synced_kinds(self.crm)

    def sync(self, kinds: Iterable[str] = KIND_NAMES) -> dict[str, KindResult]:
        begin_run(self.crm, self.mailbox)
        return {
            name: sync_kind(self.kinds[name], self.crm, self.mailbox, self.store, self.settings)
            for name in kinds
        }

    def links(self, kind: str) -> list[LinkRow]:
        return self.store.load_links(kind)


def synced_kinds(crm: Side) -> dict[str, Kind]:
    """The kinds as the app builds them (sync/connect.py `kinds_to_sync`): the calendar kinds
    resolve party addresses to CRM records, so an organizer who is a user is written as the
    user (the only organizer an appointment takes: appointment.md, Organizer Targets)."""
    if not isinstance(crm, DataverseSide):
        return dict(KINDS)
    resolve = PartyResolver(crm.client)
    return {
        **KINDS,
        "appointments": appointments_kind(resolve),
        "recurringappointments": recurring_kind(resolve),
    }


def make_agent(pair: SandboxPair, database: Database | None = None, **settings: Any) -> Agent:
    settings.setdefault("me", pair.me)
    return Agent(
        pair.crm_side(),
        pair.mailbox_side(),
        database or pair.new_database(),
        EngineSettings(**settings),
    )


# --- seeding (fast: the server's insert API, no HTTP) ----------------------------------------


def seed_contacts(pair: SandboxPair, n: int, prefix: str = "C") -> list[str]:
    """Alice's contacts; every fourth works for one of five accounts (its company)."""
    accounts = [
        pair.dataverse.insert(ORG, "accounts", {"name": f"{prefix} Account {a}"}, as_user=ALICE)
        for a in range(5)
    ]
    ids = []
    for i in range(n):
        row = {
            "firstname": f"{prefix}First{i}",
            "lastname": f"{prefix}Last{i}",
            "jobtitle": ["Buyer", "Engineer", "Director"][i % 3],
            "emailaddress1": f"{prefix.lower()}{i}@customer.example",
            "telephone1": f"+44 20 7946 {i:04d}",
            "mobilephone": f"+44 7700 9{i:05d}",
            "address1_line1": f"{i} Market Street",
            "address1_city": "Leeds",
            "address1_postalcode": f"LS{i % 30} 1AA",
            "birthdate": f"19{60 + i % 40:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "description": f"Met at the fair, table {i}.",
        }
        if i % 4 == 0:
            row["parentcustomerid_account@odata.bind"] = f"/accounts({accounts[i % 5]})"
        ids.append(pair.dataverse.insert(ORG, "contacts", row, as_user=ALICE))
    return ids


def seed_tasks(pair: SandboxPair, n: int) -> list[str]:
    """Open tasks of alice. Due dates are whole UTC days: the mailbox keeps dates only."""
    base = tomorrow_at(0)
    ids = []
    for i in range(n):
        row = {
            "subject": f"Follow up {i}",
            "description": f"Call back about quote {i}.",
            "scheduledend": moment(base + timedelta(days=i % 20)),
            "prioritycode": i % 3,
            "percentcomplete": [0, 25, 50][i % 3],
            "statecode": 0,
            "statuscode": [2, 3, 3][i % 3],
        }
        ids.append(pair.dataverse.insert(ORG, "tasks", row, as_user=ALICE))
    return ids


def seed_appointments(pair: SandboxPair, n: int) -> list[str]:
    base = tomorrow_at(9)
    alice = f"/systemusers({pair.me})"  # an organizer is a system user (appointment.md)
    ids = []
    for i in range(n):
        start = base + timedelta(days=i % 25, hours=i % 8)
        row = {
            "subject": f"Meeting {i}",
            "description": "Agenda: status, next steps.",
            "location": f"Room {i % 5}",
            "scheduledstart": moment(start),
            "scheduledend": moment(start + timedelta(minutes=30 + 30 * (i % 2))),
            "isalldayevent": False,
            "appointment_activity_parties": [
                {"participationtypemask": 7, "partyid_systemuser@odata.bind": alice},
                {"participationtypemask": 5, "addressused": f"guest{i}@customer.example"},
            ],
        }
        ids.append(pair.dataverse.insert(ORG, "appointments", row, as_user=ALICE))
    return ids


_PATTERNS: tuple[dict[str, Any], ...] = (
    {"recurrencepatterntype": 0, "interval": 2, "patternendtype": 2, "occurrences": 8},
    {"recurrencepatterntype": 1, "interval": 1, "daysofweekmask": 2 | 8, "patternendtype": 1},
    {
        "recurrencepatterntype": 2,
        "interval": 1,
        "dayofmonth": 15,
        "isnthmonthly": False,
        "patternendtype": 2,
        "occurrences": 6,
    },  # fmt: skip
    {
        "recurrencepatterntype": 2,
        "interval": 1,
        "isnthmonthly": True,
        "instance": 2,
        "daysofweekmask": 4,
        "patternendtype": 1,
    },  # fmt: skip
    {
        "recurrencepatterntype": 3,
        "interval": 1,
        "monthofyear": 3,
        "dayofmonth": 1,
        "isnthyearly": False,
        "patternendtype": 1,
    },  # fmt: skip
)


def first_occurrence(pattern: Mapping[str, Any], after: datetime) -> datetime:
    """The first day on or after `after` that the pattern hits (a series starts on one, as
    Exchange insists: it moves a series' start to its first occurrence)."""

    def hits(day: datetime) -> bool:
        bit = 1 << ((day.weekday() + 1) % 7)  # daysofweekmask: Sunday=1 … Saturday=64
        kind = pattern["recurrencepatterntype"]
        if kind == 1 or (kind == 2 and pattern.get("isnthmonthly")):
            if not bit & pattern["daysofweekmask"]:
                return False
            return kind == 1 or (day.day - 1) // 7 + 1 == pattern["instance"]
        if kind == 2:
            return day.day == pattern["dayofmonth"]
        if kind == 3:
            return (day.month, day.day) == (pattern["monthofyear"], pattern["dayofmonth"])
        return True

    day = after
    while not hits(day):
        day += timedelta(days=1)
    return day


def seed_series(pair: SandboxPair, n: int) -> list[str]:
    """Recurring series as recurringappointmentmasters, cycling through the pattern types."""
    alice = f"/systemusers({pair.me})"  # an organizer is a system user (appointment.md)
    ids = []
    for i in range(n):
        pattern = dict(_PATTERNS[i % len(_PATTERNS)])
        first = first_occurrence(pattern, tomorrow_at(8 + i % 8))
        row = {
            "subject": f"Series {i}",
            "location": "Teams",
            "starttime": moment(first),
            "endtime": moment(first + timedelta(minutes=45)),
            "duration": 45,
            "patternstartdate": first.strftime("%Y-%m-%dT00:00:00Z"),
            "firstdayofweek": 1,
            "isnthmonthly": False,
            "isnthyearly": False,
            "isregenerate": False,
            "isweekdaypattern": False,
            "recurringappointmentmaster_activity_parties": [
                {"participationtypemask": 7, "partyid_systemuser@odata.bind": alice},
                {"participationtypemask": 5, "addressused": f"team{i}@customer.example"},
            ],
            **pattern,
        }
        ids.append(pair.dataverse.insert(ORG, "recurringappointmentmasters", row, as_user=ALICE))
    return ids


# --- what a person does in Outlook -------------------------------------------------------------


def user_create_items(side: Any, kind: str, items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Items made by hand in the mailbox (no CRM key), e.g. with the tracked category."""
    if isinstance(side, GraphSide):
        return _graph_create(side, kind, items)
    cls = ews_convert.ITEM_CLASSES[ews_convert.base_kind(kind)]
    made = []
    for fields in items:
        item = cls(account=side.account, folder=side.folder(kind))
        ews_convert.apply_vocab(kind, item, dict(fields))
        made.append(item)
    created = side.connection.call(
        lambda: side.account.bulk_create(
            side.folder(kind),
            made,
            message_disposition="SaveOnly",
            send_meeting_invitations="SendToNone",
        )  # fmt: skip
    )
    ids = []
    for res in created:
        assert not isinstance(res, Exception), res
        ids.append(res.id)
    return ids


def user_update_items(side: Any, kind: str, changes: Mapping[str, Mapping[str, Any]]) -> None:
    """Edit items by id with mailbox-vocabulary fields (no version guard, as Outlook saves)."""
    ops = [UpdateOp(item_id, None, dict(fields)) for item_id, fields in changes.items()]
    for result in side.write(kind, ops):
        assert not isinstance(result, Exception), result


def user_delete_items(side: Any, kind: str, ids: Sequence[str]) -> None:
    """Delete items as the user does in Outlook (a meeting's attendees are told)."""
    from sync.sides import DeleteOp

    if isinstance(side, GraphSide):
        urls = [_graph_url(side, kind, i) for i in ids]
        for answer in side.client.batch([{"method": "DELETE", "url": u} for u in urls]):
            assert not isinstance(answer, Exception), answer
        return
    for result in side.write(kind, [DeleteOp(i, None) for i in ids]):
        assert not isinstance(result, Exception), result


def _graph_url(side: GraphSide, kind: str, item_id: str | None = None) -> str:
    if kind == "appointments":
        base = "/me/events"
    elif kind == "contacts":
        base = "/me/contacts"
    else:
        base = f"/me/todo/lists/{side.task_list}/tasks"
    return f"{base}/{item_id}" if item_id else base


def _graph_create(side: GraphSide, kind: str, items: Sequence[Mapping[str, Any]]) -> list[str]:
    """What Outlook on the web makes: Graph items without our key property."""
    requests = []
    for fields in items:
        if kind == "appointments":
            merged = {"timezone": "UTC", "is_all_day": False, **fields}
            body = graph_calendar.event_to_graph({**merged}, merged)
        elif kind == "contacts":
            body = graph_convert.contact_to_graph(fields, fields)
        else:
            body = graph_convert.task_to_graph(fields)
        requests.append({"method": "POST", "url": _graph_url(side, kind), "body": body})
    ids = []
    for answer in side.client.batch(requests):
        assert not isinstance(answer, Exception), answer
        ids.append(str(answer["id"]))
    return ids


def tracked(**fields: Any) -> dict[str, Any]:
    return {**fields, "categories": [TRACKED_CATEGORY]}


# --- reading everything and comparing ----------------------------------------------------------


def full_read(side: Side, kind: str) -> dict[str, Upsert]:
    out: dict[str, Upsert] = {}
    for page in side.read_changes(kind, None):
        for change in page.changes:
            if isinstance(change, Upsert):
                out[change.id] = change
    return out


@dataclass
class Snapshot:
    """Both sides of one kind, as the sync filter and the kind see them."""

    kind: Kind
    crm: dict[str, Upsert]
    """CRM records of the kind in the sync filter, by id."""
    crm_all: dict[str, Upsert]
    mailbox: dict[str, Upsert]
    """Mailbox items of the kind, by item id."""

    def crm_values(self, crm_id: str) -> dict[str, Any]:
        return self.kind.crm_values(self.crm_all[crm_id].fields)

    def mailbox_values(self, item_id: str) -> dict[str, Any]:
        return self.kind.mailbox_values(self.mailbox[item_id].fields)


def snapshot(agent: Agent, name: str) -> Snapshot:
    kind = KINDS[name]
    settings = agent.settings
    filters = settings.filters_for(name, kind.default_filters)
    now = settings.now()
    rows = full_read(agent.crm, kind.crm_kind)
    if kind.crm_reads_by_id and rows:
        rows = agent.crm.read(kind.crm_kind, list(rows))  # parties are not in change rows
    crm_all = {k: u for k, u in rows.items() if kind.crm_accepts(u.fields)}
    crm = {
        k: u
        for k, u in crm_all.items()
        if in_filter(u.fields, filters, settings.me, now, settings.timezone)
    }
    items = {
        k: u
        for k, u in full_read(agent.mailbox, kind.mailbox_kind).items()
        if kind.mailbox_accepts(u.fields)
    }
    return Snapshot(kind, crm, crm_all, items)


def differences(agent: Agent, name: str, snap: Snapshot | None = None) -> list[str]:
    """Everything that is not "both sides equal under the mapping", as readable lines.

    Every CRM record in the filter that is not untracked has exactly one mailbox item, linked,
    with the same canonical values; every mailbox item belongs to exactly one such record.
    """
    snap = snap or snapshot(agent, name)
    kind = snap.kind
    problems: list[str] = []
    links = {lk.crm_id: lk for lk in agent.links(name)}
    untracked = {k for k, lk in links.items() if lk.state == UNTRACKED}
    by_item = Counter(lk.mailbox_id for lk in links.values() if lk.mailbox_id)
    problems += [f"item {i} linked {n} times" for i, n in by_item.items() if n > 1]
    keys = Counter(u.key for u in snap.mailbox.values() if u.key)
    problems += [f"{n} mailbox items carry key {k}" for k, n in keys.items() if n > 1]
    linked_items = set()
    for crm_id in snap.crm:
        if crm_id in untracked:
            continue
        link = links.get(crm_id)
        if link is None or link.mailbox_id is None:
            problems.append(f"CRM {crm_id} has no link")
            continue
        if link.mailbox_id not in snap.mailbox:
            problems.append(f"CRM {crm_id}: linked item {link.mailbox_id[:20]}… is missing")
            continue
        linked_items.add(link.mailbox_id)
        crm_values = snap.crm_values(crm_id)
        mailbox_values = snap.mailbox_values(link.mailbox_id)
        for fmap in kind.fields:
            if kind.direction(fmap.name) == "none":
                continue
            if crm_values.get(fmap.name) != mailbox_values.get(fmap.name):
                problems.append(
                    f"CRM {crm_id} {fmap.name}: {crm_values.get(fmap.name)!r} != "
                    f"{mailbox_values.get(fmap.name)!r}"
                )
    for item_id, item in snap.mailbox.items():
        if item_id not in linked_items:
            problems.append(f"mailbox item {kind.title(kind.mailbox_values(item.fields))!r}"
                            f" (key {item.key}) is not linked to a CRM record in the filter")  # fmt: skip
    return problems


def snapshots(agent: Agent, names: Iterable[str] = KIND_NAMES) -> dict[str, Snapshot]:
    return {name: snapshot(agent, name) for name in names}


def counts(snaps: Mapping[str, Snapshot]) -> dict[str, tuple[int, int]]:
    """(CRM records of the kind, mailbox items of the kind) per kind, filter not applied."""
    return {name: (len(snap.crm_all), len(snap.mailbox)) for name, snap in snaps.items()}


def in_step(agent: Agent, snaps: Mapping[str, Snapshot]) -> dict[str, list[str]]:
    """The differences per kind that has any (empty: both sides equal under the mapping)."""
    found = {name: differences(agent, name, snap) for name, snap in snaps.items()}
    return {name: problems[:5] for name, problems in found.items() if problems}


def new_guid() -> str:
    return str(uuid.uuid4())
