"""From the stored profile to a live messaging connection: the CRM side and the mailbox side.

This is the one place that knows which adapter serves which profile (Dataverse over httpx;
Exchange over exchangelib, or POP3 + SMTP), where tokens come from (the msal provider of the
stored sign-in) and which CA files to trust (the sandbox's, only in sandbox mode).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import select

from sync.conflicts import ReverseError
from sync.crm.client import DataverseClient
from sync.crm.parties import PartyResolver
from sync.engine.options import EngineSettings
from sync.kinds import CONTACTS, KINDS, TASKS
from sync.kinds.appointments import Resolver, appointments_kind, recurring_kind
from sync.kinds.base import Direction, Kind
from sync.messages import N_, Msg  # ui-messages
from sync.messaging import Connection, MessagingJob, NotReady, OutgoingStage
from sync.runs import ProgressListener
from sync.service import MESSAGING, Job, SyncService
from sync.setup.odata import ENTITY_SETS, OFFLINE_PREFIX
from sync.setup.ports import MailboxConfig, MailboxRecord, OrgInfo
from sync.setup.profile import (
    MESSAGING_DISABLED_REASON,
    MESSAGING_HOLDER,
    Profile,
)
from sync.sides import Side
from sync.store.db import Database
from sync.store.linkstore import SqlLinkStore, conflict_row
from sync.store.models import ConflictRecord, SyncFilter

if TYPE_CHECKING:
    from sync.auth import TokenProvider
    from sync.crm.change_poll import CrmChangePoll
    from sync.crm.side import DataverseSide
    from sync.graph.watch import GraphChangeStream
    from sync.mail.ports import EmailDirectory, TrackingMailbox
    from sync.mail.service import MailService
    from sync.mail.track_run import TrackingStage
    from sync.mailbox.ews_stream import EwsChangeStream

CONFIRM_EMPTIED = "confirm_emptied"
"""Set by the alert's "it is intended" button; read (and cleared) by the next run."""

SandboxInfo = Callable[[], Mapping[str, Any] | None]


CHOOSABLE = ("contacts", "appointments", "tasks")
"""The kinds the wizard offers (a kind is chosen while one of its sync filters is on)."""


def kinds_to_sync(chosen: set[str], resolve: Resolver, timezone: str) -> list[Kind]:
    """The wizard's kinds as engine kinds: "appointments" is single ones and recurring series."""
    kinds: list[Kind] = []
    if "contacts" in chosen:
        kinds.append(CONTACTS)
    if "appointments" in chosen:
        kinds += [appointments_kind(resolve), recurring_kind(resolve, timezone)]
    if "tasks" in chosen:
        kinds.append(TASKS)
    return kinds


def winding_down(
    database: Database, org_id: str, kinds: Sequence[Kind], settings: EngineSettings
) -> tuple[list[Kind], EngineSettings]:
    """Of `kinds` (no longer chosen), those that still hold mailbox copies, and the settings
    that run them with an empty filter.

    An empty filter takes no record, so such a run does what the engine does for records that
    leave a filter: the copies leave the mailbox quietly (meetings without cancellations), the
    links are dropped and the CRM keeps its records. Once none is left the kind stops running,
    so it costs nothing more."""
    store = SqlLinkStore(database, org_id)
    retiring = [kind for kind in kinds if store.count_links(kind.name)]
    if not retiring:
        return [], settings
    empty: dict[str, list[Any]] = {kind.name: [] for kind in retiring}
    return retiring, replace(settings, filters={**settings.filters, **empty})


def engine_settings(profile: Profile, me: str) -> EngineSettings:
    """Filters (enabled rows, OR of ANDs per kind) and field directions from the wizard."""
    filters: dict[str, list[list[dict[str, Any]]]] = {}
    with profile.database.session() as session:
        for row in session.scalars(select(SyncFilter).where(SyncFilter.enabled.is_(True))):
            filters.setdefault(row.kind, []).append([dict(c) for c in row.conditions or []])
    directions: dict[str, dict[str, str]] = {}
    groups = {"appointments": ("appointments", "recurringappointments")}
    for group, choice in dict(profile.get("field_directions", {}) or {}).items():
        for kind_name in groups.get(group, (group,)):
            kind = KINDS.get(kind_name)
            if kind is None or choice == Direction.BOTH:
                continue
            # the user's choice narrows two-way fields; one-way fields keep their own direction
            directions[kind_name] = {
                f.name: str(choice) for f in kind.fields if f.direction == Direction.BOTH
            }
    return EngineSettings(
        me=me,
        filters=filters,
        directions=directions,
        conflict_policy=str(profile.get("conflict_policy", "crm")),
        confirm_emptied=bool(profile.get(CONFIRM_EMPTIED, False)),
        timezone=str(profile.get("timezone") or "UTC"),
    )


RUN_KINDS = (*ENTITY_SETS, "email", "outgoing")
"""What `sync --once --kind` accepts: the record kinds, email tracking and outgoing CRM email."""


def _not_here(profile: Profile, otherwise: Msg) -> Msg | str:  # ui-messages
    """Why messaging does not sync on this computer, as a message the pages translate."""
    from sync.setup.instance import not_synchronizing_reason

    holder = str(profile.get(MESSAGING_HOLDER) or "")
    if holder:
        return not_synchronizing_reason(holder)
    return str(profile.get(MESSAGING_DISABLED_REASON) or "") or otherwise


class ProfileConnector:
    """The `Connector` of the app and `sync --once`: builds sides from what the wizard stored."""

    def __init__(
        self, profile: Profile, sandbox_info: SandboxInfo, only: Collection[str] | None = None
    ) -> None:
        self.profile = profile
        self.sandbox_info = sandbox_info
        self.only = set(only) if only else None
        """`sync --once --kind K`: of the chosen kinds, only these."""

    def __call__(self) -> Connection:
        from sync.setup.adapters import messaging_allowed

        profile = self.profile
        if not profile.is_complete():
            raise NotReady(  # ui-messages: a Msg, shown in the reader's language
                N_("Nothing to sync yet: finish the setup wizard to choose what to sync.")
            )
        if not profile.messaging_enabled:
            raise NotReady(_not_here(profile, N_("Messaging sync is off on this computer.")))
        # --- graph-wire (issue 9): Exchange Online refused EWS: wait for the user ----------
        from sync.setup import mailbox as mailbox_step

        if mailbox_step.ews_blocked(profile):
            raise NotReady(
                N_(
                    "Exchange Online refused EWS for this mailbox: switch to Microsoft Graph "
                    "in Settings, or test the mailbox again."
                )
            )
        info = self.sandbox_info()
        with self._ews_blocked_watch():
            allowed = messaging_allowed(profile, info)
        # --- end graph-wire ------------------------------------------------------------------
        if not allowed:
            raise NotReady(
                _not_here(profile, N_("This computer is not the synchronizing computer."))
            )
        org = profile.synchronizing_org()
        config = profile.mailbox()
        user = profile.get("crm_user") or {}
        assert org is not None and config is not None
        # One provider (one msal application) for both sides; their tokens refresh through it.
        provider = self._provider(info)
        crm, client = self._crm_side(org.url, org.api_url, str(user.get("id", "")), provider)
        try:
            with self._ews_blocked_watch():
                mailbox = self._mailbox_side(config, info, org.id, provider)
        except Exception:
            client.close()
            raise
        # POP3 mailboxes hold email only: contacts, appointments and tasks need Exchange (as
        # in Dynamics), so nothing of them syncs, nor is wound down, there
        supported = set(mailbox_step.supported_kinds(config.type))
        chosen = set(profile.get("kinds", []) or []) & supported
        dropped = supported - chosen
        if self.only is not None:
            chosen &= self.only
            dropped &= self.only
        user_id = str(user.get("id", ""))
        settings = engine_settings(profile, user_id)
        resolver = PartyResolver(client)
        kinds = kinds_to_sync(chosen, resolver, settings.timezone)
        retiring, settings = winding_down(
            profile.database, org.id, kinds_to_sync(dropped, resolver, settings.timezone), settings
        )
        if settings.confirm_emptied:
            profile.set(CONFIRM_EMPTIED, False)  # the user's confirmation covers one run
        record = _record_reader(client, user_id)  # [h1a] one read a run, for every workload
        return Connection(
            org_id=org.id,
            crm=crm,
            mailbox=mailbox,
            settings=settings,
            kinds=kinds + retiring,
            close=client.close,
            act_method=lambda: r.act if (r := record()) is not None else None,
            tracking=self._tracking(client, mailbox, config, user_id, record),
            outgoing=self._outgoing(client, mailbox, org.id, user_id, record),
        )

    def change_stream(self) -> EwsChangeStream | GraphChangeStream | None:
        """The mailbox's change notifications for what this computer syncs (sync/watcher.py),
        or None: nothing to watch (setup not finished, messaging off here, the user turned
        watching off, a POP3 mailbox, nothing chosen that lives in the mailbox). A Graph
        mailbox is watched by polling its folders' delta links (sync/graph/watch.py)."""
        from sync.mailbox.ews import EwsSide
        from sync.mailbox.ews_stream import EwsChangeStream
        from sync.setup import mailbox as mailbox_step

        profile = self.profile
        watched = self._watched()
        if watched is None or mailbox_step.ews_blocked(profile):
            return None
        org, config = watched
        folders = watched_folders(profile, config.type)
        if not folders:
            return None
        if config.type == "graph":  # graph-wire (issue 9)
            from sync.graph.side import GraphSide
            from sync.graph.watch import GraphChangeStream

            info = self.sandbox_info()
            graph = self._mailbox_side(config, info, org.id, self._provider(info))
            assert isinstance(graph, GraphSide)
            from sync.mail.links import MailLinks

            store = SqlLinkStore(profile.database, org.id)
            mail = MailLinks(profile.database, org.id)

            def seed(kind: str) -> str | None:
                """The sync's delta link of a kind, or email tracking's of a folder."""
                if kind.startswith("messages:"):
                    return mail.get_token(kind.split(":", 1)[1])
                return store.get_token(kind, "mailbox")

            return GraphChangeStream(graph, folders, seed=seed)
        info = self.sandbox_info()
        side = self._mailbox_side(config, info, org.id, self._provider(info))
        assert isinstance(side, EwsSide)
        return EwsChangeStream(side, folders)

    def _watched(self) -> tuple[OrgInfo, MailboxConfig] | None:
        """The organization and mailbox the change watchers listen to, or None: setup not
        finished, messaging off on this computer, watching turned off, or a POP3 mailbox."""
        profile = self.profile
        if not profile.is_complete() or not profile.messaging_enabled:
            return None
        if profile.get(WATCH_SETTING) is False:
            return None
        org, config = profile.synchronizing_org(), profile.mailbox()
        if org is None or config is None or config.type not in ("exchange", "graph"):
            return None
        return org, config

    def crm_change_poll(self) -> CrmChangePoll | None:
        """The CRM's changes of the chosen kinds, polled by change tracking with the tokens the
        sync saved (sync/crm/change_poll.py), or None: nothing to watch (as `change_stream`)."""
        from sync.crm.change_poll import CrmChangePoll

        profile = self.profile
        watched = self._watched()
        if watched is None:
            return None
        org, config = watched
        kinds = sorted(
            {k for c in _chosen_kinds(profile, config.type) for k in _KIND_FOLDERS[c][1]}
        )
        if not kinds:
            return None
        user_id = str((profile.get("crm_user") or {}).get("id", ""))
        provider = self._provider(self.sandbox_info())
        crm, client = self._crm_side(org.url, org.api_url, user_id, provider)
        side = cast("DataverseSide", crm)
        side.page_size = 1  # "any change?": one row is enough
        store = SqlLinkStore(profile.database, org.id)
        return CrmChangePoll(
            side, kinds, lambda kind: store.get_token(kind, "crm"), close=client.close
        )

    def _outgoing(
        self,
        client: DataverseClient,
        mailbox: Side,
        org_id: str,
        user_id: str,
        record: Callable[[], MailboxRecord | None],
    ) -> OutgoingStage | None:
        """The outgoing stage when the user chose to send CRM email through this mailbox."""
        from sync.crm.outbox import DataverseOutbox
        from sync.graph.send import GraphMailSender
        from sync.graph.side import GraphSide
        from sync.mail import settings as email_settings
        from sync.mail.journal import SendJournal
        from sync.mail.outgoing import crm_tokens
        from sync.mail.senders import EwsMailSender, SmtpMailSender
        from sync.mailbox.ews import EwsSide
        from sync.mailbox.pop3_side import Pop3Side

        if self.only is not None and "outgoing" not in self.only:
            return None
        email = email_settings.load(self.profile)
        if not email.send_crm_email:
            return None
        sender: Any
        if isinstance(mailbox, EwsSide):
            sender = EwsMailSender(mailbox)
        elif isinstance(mailbox, GraphSide):
            config = self.profile.mailbox()
            sender = GraphMailSender(mailbox, config.email if config is not None else None)
        elif isinstance(mailbox, Pop3Side) and mailbox.sender is not None:
            sender = SmtpMailSender(mailbox.sender)
        else:
            return None
        return OutgoingStage(
            DataverseOutbox(client, user_id),
            sender,
            SendJournal(self.profile.database, org_id),
            tracking_token=crm_tokens(email.token_prefix) if email.token_enabled else None,
            outgoing_method=lambda: r.outgoing if (r := record()) is not None else None,
        )

    # [h1a] email tracking ------------------------------------------------------------------------

    def _tracking(
        self,
        client: DataverseClient,
        mailbox: Side,
        config: MailboxConfig,
        user_id: str,
        record: Callable[[], MailboxRecord | None],
    ) -> TrackingStage | None:
        """The tracking stage of the run, or None: not asked (`--kind` without email), or
        nothing could be tracked (a POP3 mailbox has no category to track by hand)."""
        from sync.mail import settings as email_settings
        from sync.mail.facade import RecordRef
        from sync.mail.track_run import TrackingStage, TrackSettings

        if self.only is not None and "email" not in self.only:
            return None
        profile = self.profile
        email = email_settings.ensure_started(
            profile, email_settings.load(profile), datetime.now(UTC)
        )
        pop3 = config.type == "pop3"
        if pop3 and not email.tracking_on:
            return None
        directory, tracking_mailbox = email_ports(client, mailbox, user_id)
        settings = TrackSettings.from_settings(
            email, RecordRef("systemusers", user_id), [config.email], pop3=pop3
        )
        return TrackingStage(
            directory,
            tracking_mailbox,
            settings,
            chosen=email.tracking_on,
            incoming_method=lambda: r.incoming if (r := record()) is not None else None,
        )

    def _provider(self, info: Mapping[str, Any] | None) -> TokenProvider:
        from sync.auth import provider_from_config

        auth = self.profile.get("auth")
        if not auth:
            raise NotReady(N_("Sign in first (the wizard's first step)."))  # ui-messages: a Msg
        return provider_from_config(auth, self.profile.data_dir, info)

    def _crm_side(
        self, org_url: str, api_url: str, owner_id: str, provider: TokenProvider
    ) -> tuple[Side, DataverseClient]:
        from sync.auth import dataverse_scope
        from sync.crm.side import DataverseSide

        upn = self.profile.signed_in_upn
        # a TokenSource: the client refreshes it once when Dataverse refuses the cached token
        client = DataverseClient(
            api_url, provider.token_callable([dataverse_scope(org_url)], upn), annotations="*"
        )
        # [h4] table definitions kept in the local database for a day; the modifiedon reader's
        # deletion sweep every `watermark_sweep_every` reads (profile setting)
        from sync.crm.watermark import SWEEP_SETTING, sweep_every_setting
        from sync.store.cache import SettingsCache

        side = DataverseSide(
            client,
            owner_id=owner_id or None,
            sweep_every=sweep_every_setting(self.profile.get(SWEEP_SETTING)),
            metadata_store=SettingsCache(self.profile.database),
        )
        return side, client

    @contextmanager
    def _ews_blocked_watch(self) -> Iterator[None]:
        """graph-wire (issue 9): an EWS HTTP 403 from Exchange Online becomes the
        retirement alert, and messaging waits for the user (NotReady) instead of retrying."""
        from sync.mailbox.ews_connection import FORBIDDEN
        from sync.setup import mailbox as mailbox_step
        from sync.sides import AuthError

        try:
            yield
        except AuthError as refused:
            config = self.profile.mailbox()
            if refused.code != FORBIDDEN or config is None or config.type != "exchange":
                raise
            endpoint = config.ews_url or config.found_ews_url
            if not mailbox_step.is_exchange_online_ews(self.profile, endpoint):
                raise
            raise NotReady(
                mailbox_step.block_ews(self.profile, endpoint, refused.message or FORBIDDEN)
            ) from None

    def _mailbox_side(
        self,
        config: MailboxConfig,
        info: Mapping[str, Any] | None,
        org_id: str,
        provider: TokenProvider,
    ) -> Side:
        secrets = self.profile.mailbox_secrets()
        sandbox = info if (self.profile.get("auth") or {}).get("provider") == "sandbox" else None
        if config.type == "graph":  # graph-wire (issue 9): Exchange Online through Graph
            from sync.graph.side import GraphSide
            from sync.setup.adapters import graph_client

            graph = GraphSide(graph_client(provider, self.profile.signed_in_upn, sandbox))
            graph.marks_scope = org_id  # untracked marks belong to the synchronizing org
            return graph
        if config.type == "exchange":
            from sync.mailbox.ews import EwsSide
            from sync.mailbox.ews_connection import shared_connection
            from sync.setup.adapters import ews_endpoint, mailbox_auth

            upn = self.profile.signed_in_upn
            auth_for = mailbox_auth(config, secrets, lambda: provider, upn)
            ca_file = str(sandbox["ews_ca_file"]) if sandbox else None
            endpoint = ews_endpoint(config, auth_for, ca_file, sandbox)
            # one connection for the process: folders are looked up once, not every run
            connection = shared_connection(endpoint, config.email, auth_for(endpoint), ca_file)
            side = EwsSide(connection)
            side.marks_scope = org_id  # untracked marks belong to the synchronizing organization
            return side
        from sync.mailbox.pop3_side import Pop3Side
        from sync.setup.pop3_account import pop3_account

        return Pop3Side(*pop3_account(config, secrets))


WATCH_SETTING = "watch_changes"
"""False: no change watcher, the schedule alone syncs (default: watch)."""

_KIND_FOLDERS = {
    "contacts": ("contacts", frozenset({"contacts"})),
    "appointments": ("calendar", frozenset({"appointments", "recurringappointments"})),
    "tasks": ("tasks", frozenset({"tasks"})),
}


def _chosen_kinds(profile: Profile, mailbox_type: str) -> list[str]:
    """The chosen kinds this mailbox type syncs."""
    from sync.setup.mailbox import supported_kinds

    supported = set(supported_kinds(mailbox_type))
    return [k for k in profile.get("kinds", []) or [] if k in _KIND_FOLDERS and k in supported]


def watched_folders(profile: Profile, mailbox_type: str = "exchange") -> dict[str, frozenset[str]]:
    """The mailbox folders whose changes start a sync, with the kinds each holds: the chosen
    kinds' folders (those the mailbox type syncs); the Inbox, Sent Items (unless left out)
    and the tracked folders while email is tracked."""
    from sync.mail import settings as email_settings

    folders: dict[str, frozenset[str]] = {}
    for kind in _chosen_kinds(profile, mailbox_type):
        folder, kinds = _KIND_FOLDERS[kind]
        folders[folder] = kinds
    email = email_settings.load(profile)
    if email.tracking_on:
        mail = frozenset({"email"})
        folders["inbox"] = mail
        if email.track_sent_items:
            folders["sentitems"] = mail
        for tracked in email.tracked_folders:
            folders[tracked.id] = mail
    return folders


def _act_reader(client: DataverseClient, user_id: str) -> Callable[[], int | None]:
    """Reads the user's mailbox record's `actdeliverymethod` (None: no record) for the run."""
    record = _record_reader(client, user_id)
    return lambda: r.act if (r := record()) is not None else None


def _record_reader(client: DataverseClient, user_id: str) -> Callable[[], MailboxRecord | None]:
    """[h1a] Reads the user's CRM mailbox record once (the first call), for the run's checks of
    each workload's method (appointments/contacts/tasks, incoming email)."""
    kept: list[MailboxRecord | None] = []

    def read() -> MailboxRecord | None:
        from sync.setup.adapters import DataverseDirectory

        if not kept:
            kept.append(DataverseDirectory(client).mailbox_of_user(user_id))
        return kept[0]

    return read


def email_ports(
    client: DataverseClient, mailbox: Side, user_id: str
) -> tuple[EmailDirectory, TrackingMailbox]:
    """[h1a] The two email ports over the run's Dataverse client and mailbox side: the CRM's
    emails (`DataverseEmails`) and the mailbox's messages (EWS through `EwsTrackingMailbox`;
    a POP3 side is one itself)."""
    from sync.crm.emails import DataverseEmails
    from sync.graph.mail import GraphTrackingMailbox
    from sync.graph.side import GraphSide
    from sync.mailbox.ews import EwsSide
    from sync.mailbox.ews_mail import EwsTrackingMailbox

    directory = DataverseEmails(client, user_id)
    if isinstance(mailbox, EwsSide):
        return directory, EwsTrackingMailbox(mailbox)
    if isinstance(mailbox, GraphSide):
        return directory, cast("TrackingMailbox", GraphTrackingMailbox(mailbox))
    return directory, cast("TrackingMailbox", mailbox)


def mail_facade_factory(
    profile: Profile, sandbox_info: SandboxInfo
) -> Callable[[], MailService | None]:
    """[h1a] The Mail page's facade factory (`app.extensions["mail_facade"]`): a `MailService`
    over the stored profile, built once and kept while the profile's organization, mailbox and
    user stay the same; None until setup is complete (the page then says what to do)."""
    kept: dict[str, Any] = {}

    def build() -> MailService | None:
        from sync.mail.facade import RecordRef
        from sync.mail.service import MailService

        if not profile.is_complete():
            return None
        org = profile.synchronizing_org()
        config = profile.mailbox()
        user = profile.get("crm_user") or {}
        if org is None or config is None or not user.get("id"):
            return None
        identity = f"{org.id}|{config.type}|{config.email}|{user.get('id')}"
        if kept.get("identity") == identity:
            service: MailService = kept["service"]
            return service
        if "service" in kept:
            kept.pop("service").close()
        connector = ProfileConnector(profile, sandbox_info)
        info = sandbox_info()
        provider = connector._provider(info)
        _crm, client = connector._crm_side(org.url, org.api_url, str(user["id"]), provider)
        try:
            mailbox = connector._mailbox_side(config, info, org.id, provider)
            directory, tracking_mailbox = email_ports(client, mailbox, str(user["id"]))
        except Exception:
            client.close()
            raise
        service = MailService(
            directory,
            tracking_mailbox,
            profile,
            org.id,
            RecordRef("systemusers", str(user["id"])),
            [config.email],
            pop3=config.type == "pop3",
            close=client.close,
        )
        kept.update(identity=identity, service=service)
        return service

    return build


class ConflictReverser:
    """Writes a conflict's losing value onto the winning side (the engine's reverse_conflict)."""

    def __init__(self, database: Database, connect: Callable[[], Connection]) -> None:
        self.database = database
        self.connect = connect

    offline: Any = None
    """offline (issue 12): the OfflineService that reverses conflicts of kind "offline:…"."""

    def __call__(self, record: ConflictRecord) -> None:
        from sync.engine import reverse_conflict

        # --- offline (issue 12) ---
        if record.kind.startswith(OFFLINE_PREFIX) and self.offline is not None:
            from sync.offline.resolve import reverse_offline

            reverse_offline(self.offline, record)
            return
        # --- end offline ---
        kind = KINDS.get(record.kind)
        if kind is None:
            raise ReverseError(f"Conflicts of {record.kind} cannot be reversed.")
        try:
            connection = self.connect()
        except NotReady as reason:
            raise ReverseError(str(reason)) from None
        try:
            store = SqlLinkStore(self.database, connection.org_id)
            row = conflict_row(record)
            error = reverse_conflict(kind, row, connection.crm, connection.mailbox, store)
        finally:
            connection.close()
        if error is not None:
            raise ReverseError(f"The {record.winner} side refused the value: {error.message}")


def messaging_service(
    database: Database,
    data_dir: Path | str,
    sandbox_info: SandboxInfo,
    only: Collection[str] | None = None,
    listener: ProgressListener | None = None,
) -> SyncService:
    """The service of the app and the command line: messaging over the stored profile
    (`only`: these kinds of the chosen ones; `listener`: told the progress of each run)."""
    connector = ProfileConnector(Profile(database, data_dir), sandbox_info, only)
    bodies: dict[str, Job] = {MESSAGING: MessagingJob(database, connector)}
    # --- offline (issue 12): the offline job's body (refresh local data while online) ---------
    from sync.offline.connect import offline_service
    from sync.offline.job import OfflineJob
    from sync.service import OFFLINE

    offline = offline_service(database, data_dir, sandbox_info)
    bodies[OFFLINE] = OfflineJob(offline)
    # --- end offline ------------------------------------------------------------------------
    service = SyncService(database, bodies, listener)
    reverser = ConflictReverser(database, connector)
    reverser.offline = offline  # offline (issue 12)
    service.reverser = reverser
    return service
