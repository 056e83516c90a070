"""The real ports: Global Discovery and Dataverse (sync.crm), EWS and POP3/SMTP (sync.mailbox).

Built from the stored sign-in (`auth` setting → sync.auth.TokenProvider) and, in sandbox mode,
the running sandbox's describe() dict (its discovery URL and CA files). Every import of an
adapter is local so the wizard still loads when one of them is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sync.setup.instance import NoteClaims
from sync.setup.messages import N_, SetupError
from sync.setup.ports import (
    ClaimInfo,
    ClaimTaken,
    CrmUser,
    MailboxConfig,
    MailboxRecord,
    OrgInfo,
    SetupPorts,
)
from sync.setup.profile import MAILBOX_PASSWORD, Profile
from sync.sides import NotFound

GLOBAL_DISCOVERY = "https://globaldisco.crm.dynamics.com/api/discovery/v2.0/Instances"
MAILBOX_COLUMNS = [
    "mailboxid",
    "emailaddress",
    "_regardingobjectid_value",
    "incomingemaildeliverymethod",
    "outgoingemaildeliverymethod",
    "actdeliverymethod",
]


def _mailbox(row: Mapping[str, Any]) -> MailboxRecord:
    return MailboxRecord(
        id=str(row["mailboxid"]),
        owner_id=str(row.get("_regardingobjectid_value") or row.get("_ownerid_value") or ""),
        email=str(row.get("emailaddress") or ""),
        incoming=int(row.get("incomingemaildeliverymethod") or 0),
        outgoing=int(row.get("outgoingemaildeliverymethod") or 0),
        act=int(row.get("actdeliverymethod") or 0),
    )


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class DataverseDirectory:
    """CrmDirectory over a `sync.crm.client.DataverseClient` (any object with its methods)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def current_user(self) -> CrmUser:
        user_id = str(self.client.who_am_i()["UserId"])
        return CrmUser(user_id, self.user_name(user_id))

    def user_name(self, user_id: str) -> str:
        try:
            row = self.client.get("systemusers", user_id, select=["fullname", "domainname"])
        except NotFound:
            return user_id
        return str(row.get("fullname") or row.get("domainname") or user_id)

    def users(self, limit: int = 200) -> list[CrmUser]:
        # systemuser.md: IsDisabled (Boolean), FullName the primary name column
        found: list[CrmUser] = []
        for page in self.client.iter_pages(
            "systemusers",
            select=["systemuserid", "fullname"],
            filter="isdisabled eq false",
            orderby="fullname",
            top=limit,
        ):
            found.extend(
                CrmUser(str(row["systemuserid"]), str(row.get("fullname") or row["systemuserid"]))
                for row in page
            )
            if len(found) >= limit:
                break
        return found[:limit]

    def mailbox_of_user(self, user_id: str) -> MailboxRecord | None:
        rows = self._mailboxes(f"_regardingobjectid_value eq {user_id}")
        return rows[0] if rows else None

    def mailboxes_with_address(self, address: str) -> list[MailboxRecord]:
        return self._mailboxes(f"emailaddress eq {_quote(address)}")

    def _mailboxes(self, odata_filter: str) -> list[MailboxRecord]:
        found: list[MailboxRecord] = []
        for page in self.client.iter_pages(
            "mailboxes", select=MAILBOX_COLUMNS, filter=odata_filter
        ):
            found.extend(_mailbox(row) for row in page)
        return found

    def set_act_delivery_method(self, mailbox_id: str, act: int) -> None:
        # the email methods are left out of the body: a PATCH writes only what it names
        self.client.update("mailboxes", mailbox_id, {"actdeliverymethod": act}, if_match="*")

    # [h1a] the email methods, only those named (mailbox.md: incomingemaildeliverymethod,
    # outgoingemaildeliverymethod)
    def set_email_delivery_methods(
        self, mailbox_id: str, incoming: int | None = None, outgoing: int | None = None
    ) -> None:
        body = {
            column: value
            for column, value in (
                ("incomingemaildeliverymethod", incoming),
                ("outgoingemaildeliverymethod", outgoing),
            )
            if value is not None
        }
        if body:
            self.client.update("mailboxes", mailbox_id, body, if_match="*")

    def count(self, entity_set: str, odata_filter: str) -> int:
        return int(self.client.count(entity_set, filter=odata_filter))


DataverseClaims = NoteClaims
"""The POP3 claim store: a note of the user's in the organization (see NoteClaims)."""


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class EwsClaims:
    """The Exchange claim through `sync.mailbox.claims` (a folder property and its ChangeKey)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._raw: Any = None

    def read(self) -> ClaimInfo | None:
        from sync.mailbox import claims

        self._raw = claims.read_claim(self.connection)
        return _from_ews(self._raw)

    def take(self, claim: ClaimInfo, expected: ClaimInfo | None) -> ClaimInfo:
        from sync.mailbox import claims

        raw_expected = self._raw if _from_ews(self._raw) == expected else None
        if expected is not None and raw_expected is None:
            self.read()
            raw_expected = self._raw
        new = claims.Claim(
            org_url=claim.org_url,
            org_id=claim.org_id,
            instance_id=claim.instance_id,
            instance_name=claim.instance_name,
        )
        try:
            self._raw = claims.take_claim(self.connection, new, raw_expected)
        except claims.ClaimTaken as taken:
            self._raw = taken.current
            raise ClaimTaken(_from_ews(taken.current)) from None
        return _from_ews(self._raw) or claim


def _from_ews(raw: Any) -> ClaimInfo | None:
    if raw is None:
        return None
    return ClaimInfo(
        instance_id=raw.instance_id,
        instance_name=raw.instance_name,
        org_id=raw.org_id,
        org_url=raw.org_url,
        claimed_at=_parse_time(raw.claimed_at),
    )


def mailbox_auth(
    config: MailboxConfig, secrets: Mapping[str, str], provider: Callable[[], Any], upn: str | None
) -> Callable[[str], Any]:
    """The Exchange credentials for a service URL: the stored password (sent as HTTP Basic or
    with NTLM, as chosen), or a bearer token from the sign-in for that server's resource
    (sync.auth.ews_scope: Exchange Online's, or the on-premises server's own); `provider` is
    asked only then."""
    from sync.auth import ews_scope
    from sync.mailbox.ews_connection import BasicAuth, MailboxAuth, NtlmAuth, OAuthToken

    def auth_for(url: str) -> MailboxAuth:
        password = secrets.get(MAILBOX_PASSWORD, "")
        if config.auth == "basic":
            return BasicAuth(config.username, password)
        if config.auth == "ntlm":
            return NtlmAuth(config.username, password)
        return OAuthToken(provider().token_callable([ews_scope(url)], upn))

    return auth_for


def ews_endpoint(
    config: MailboxConfig,
    auth_for: Callable[[str], Any],
    ca_file: str | None,
    sandbox: Mapping[str, Any] | None,
) -> str:
    """The EWS address typed in the wizard, else the one autodiscover found at the last test,
    else autodiscover now. The sandbox's domains are in no DNS: its own Autodiscover service
    (beside its EWS) is asked instead of the domain's."""
    if config.ews_url or config.found_ews_url:
        return config.ews_url or config.found_ews_url
    from sync.mailbox.autodiscover import candidate_urls, discover

    if not sandbox:
        return discover(config.email, auth_for, ca_file, candidate_urls)
    ews = urlsplit(str(sandbox["ews_url"]))
    service = f"{ews.scheme}://{ews.netloc}/autodiscover/autodiscover.xml"
    return discover(
        config.email,
        auth_for,
        ca_file,
        lambda _email: [service],
        redirect_probes=lambda _email: [],  # no DNS: the sandbox's domains are in none
        srv_lookup=lambda _name: [],
    )


def graph_client(
    provider: Any, upn: str | None, sandbox: Mapping[str, Any] | None, timeout: float = 60.0
) -> Any:
    """A `sync.graph.client.GraphClient` with the sign-in's token for the Graph mailbox scopes:
    the sandbox's Graph (and its CA) in sandbox mode, else graph.microsoft.com."""
    from sync.graph.client import GRAPH_URL, SCOPES, GraphClient

    url = str(sandbox.get("graph_url") or GRAPH_URL) if sandbox else GRAPH_URL
    ca_file = str(sandbox["graph_ca_file"]) if sandbox and sandbox.get("graph_ca_file") else None
    return GraphClient(
        url, provider.token_callable(list(SCOPES), upn), verify=ca_file, timeout=timeout
    )


def graph_mailbox_address(client: Any) -> tuple[str, str]:
    """(mail, userPrincipalName) of Graph `/me`, after `/me/mailboxSettings` answered (a user
    without an Exchange Online mailbox has no mailbox settings: user-get-mailboxsettings.md)."""
    me = client.get("me?$select=mail,userPrincipalName")
    client.get("me/mailboxSettings")
    return str(me.get("mail") or ""), str(me.get("userPrincipalName") or "")


class GraphMailboxProbe:
    """`GraphProbe`: does the signed-in user's own tenant hold the mailbox? (Graph answers)."""

    def __init__(self, make_client: Callable[[], Any]) -> None:
        self.make_client = make_client

    def has_mailbox(self, address: str) -> bool:
        from sync.sides import SideError

        wanted = address.strip().lower()
        try:
            client = self.make_client()
        except (SideError, ValueError):  # no sign-in, or a Graph URL refused (not https)
            return False
        try:
            mail, upn = graph_mailbox_address(client)
        except SideError:  # refused, not found, unreachable: not a Graph mailbox for us
            return False
        finally:
            client.close()
        return wanted in (mail.lower(), upn.lower())


class AdapterTester:
    """Opens the configured mailbox once, like Dynamics' "Test & Enable"."""

    def __init__(
        self,
        ews_connection: Callable[[MailboxConfig, Mapping[str, str]], Any],
        ca_file: str | None,
        graph: Callable[[], Any] | None = None,
    ) -> None:
        self.ews_connection = ews_connection
        self.ca_file = ca_file
        self.graph = graph
        """Makes a GraphClient for the signed-in user (None: Graph mailboxes cannot be tested)."""

    def test(self, config: MailboxConfig, secrets: Mapping[str, str]) -> str | None:
        if config.type == "graph":
            return self._test_graph(config)
        if config.type == "exchange":
            # a new test finds the address again (the server may have moved)
            try:
                connection = self.ews_connection(replace(config, found_ews_url=""), secrets)
            except ValueError as refused:
                # the EWS adapter refuses an address the form let through (its rule is
                # stricter: https only): the user's field, not a crash of the page
                raise SetupError(
                    N_("This EWS address cannot be used: %(detail)s", detail=str(refused)),
                    "ews_url",
                ) from None
            try:
                connection.verify()
            finally:
                connection.close()
            return str(connection.endpoint)
        from sync.mailbox.pop3 import Pop3Session
        from sync.mailbox.smtp import SmtpSender
        from sync.setup.pop3_account import pop3_account

        pop3, smtp = pop3_account(config, secrets, self.ca_file)
        with Pop3Session(pop3) as session:
            session.stat()
        with SmtpSender(smtp).session():
            pass
        return None

    def _test_graph(self, config: MailboxConfig) -> str | None:
        """`/me` and `/me/mailboxSettings` with the Graph token, for this very address: Graph
        reaches only the signed-in user's own mailbox (`/me`)."""
        from sync.sides import Invalid

        if self.graph is None:
            raise Invalid("Microsoft Graph is not available here.", "graph_unavailable")
        client = self.graph()
        try:
            mail, upn = graph_mailbox_address(client)
            # the delegated scopes the sync uses, so a missing consent shows now, not later
            client.get("me/contacts?$top=1&$select=id")
            client.get("me/todo/lists")
        finally:
            client.close()
        if config.email.strip().lower() not in (mail.lower(), upn.lower()):
            raise SetupError(
                N_(
                    "Microsoft Graph reaches only your own mailbox (%(own)s), not %(email)s. "
                    "Use your own address, or choose Exchange Server (EWS).",
                    own=mail or upn,
                    email=config.email,
                ),
                "email",
            )
        return None


def default_ports(profile: Profile, sandbox_info: Mapping[str, Any] | None = None) -> SetupPorts:
    """Ports on the real adapters, with tokens from the stored sign-in."""
    from sync.auth import dataverse_scope, discovery_scope, provider_from_config
    from sync.crm.client import DataverseClient
    from sync.crm.discovery import discover_instances

    auth = profile.get("auth")
    if not auth:
        raise SetupError(N_("Sign in first: open the app once and sign in, then run this again."))
    provider = provider_from_config(auth, profile.data_dir, sandbox_info)
    upn = profile.signed_in_upn
    sandbox = sandbox_info if auth.get("provider") == "sandbox" else None
    discovery_url = str(sandbox["discovery_url"]) if sandbox else GLOBAL_DISCOVERY
    ews_ca = str(sandbox["ews_ca_file"]) if sandbox and sandbox.get("ews_ca_file") else None

    opened: list[Any] = []

    def client_for(org: OrgInfo) -> Any:
        client = DataverseClient(
            org.api_url, provider.token_callable([dataverse_scope(org.url)], upn)
        )
        opened.append(client)
        return client

    class Discovery:
        def instances(self) -> list[OrgInfo]:
            found = discover_instances(
                discovery_url, provider.token_callable([discovery_scope(discovery_url)], upn)
            )
            return [
                OrgInfo(i.id, i.unique_name, i.friendly_name, i.url, i.api_url, i.version)
                for i in found
            ]

    def ews_connection(
        config: MailboxConfig, secrets: Mapping[str, str], shared: bool = False
    ) -> Any:
        """A new connection (to test one), or the process's (`shared`: the claim checks of
        every run go through the same one as the sync, folders looked up once)."""
        from sync.mailbox.ews_connection import EwsConnection, shared_connection

        auth_for = mailbox_auth(config, secrets, lambda: provider, upn)
        endpoint = ews_endpoint(config, auth_for, ews_ca, sandbox)
        if shared:
            return shared_connection(endpoint, config.email, auth_for(endpoint), ews_ca)
        return EwsConnection(endpoint, config.email, auth_for(endpoint), ca_file=ews_ca)

    def claims(org: OrgInfo, config: MailboxConfig, user: CrmUser) -> Any:
        if config.type == "exchange":
            return EwsClaims(ews_connection(config, profile.mailbox_secrets(), shared=True))
        # POP3 and Graph: a note of the user's in the organization (one home, NoteClaims)
        return DataverseClaims(client_for(org), user.id)

    def graph() -> Any:
        return graph_client(provider, upn, sandbox, timeout=20.0)

    return SetupPorts(
        discovery=Discovery,
        directory=lambda org: DataverseDirectory(client_for(org)),
        mailbox_tester=lambda: AdapterTester(ews_connection, ews_ca, graph),
        claims=claims,
        extra={"opened": opened},
        graph_probe=lambda: GraphMailboxProbe(graph),
    )


def close_ports(ports: SetupPorts) -> None:
    """Close the HTTP clients the ports opened (call when done with them, e.g. per request)."""
    opened = ports.extra.get("opened")
    if isinstance(opened, list):
        while opened:
            opened.pop().close()


def messaging_allowed(
    profile: Profile,
    sandbox_info: Mapping[str, Any] | None = None,
    ports: SetupPorts | None = None,
) -> bool:
    """For the messaging job, before every run: set up, and still the synchronizing computer?

    False when the setup is not finished, when the user chose "No" in the wizard, or when
    another computer took the claim (then messaging is switched off with an alert that names
    it: sync.setup.instance.ensure_still_synchronizing).
    """
    from sync.setup.instance import ensure_still_synchronizing

    org, config, user = profile.synchronizing_org(), profile.mailbox(), profile.get("crm_user")
    if not profile.is_complete() or org is None or config is None or not user:
        return False
    ports = ports or default_ports(profile, sandbox_info)
    store = ports.claims(org, config, CrmUser(user["id"], user["name"]))
    return ensure_still_synchronizing(profile, store)
