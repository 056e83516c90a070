"""`run.py doctor` and Settings' "Check my setup": what the configured organization and mailbox
allow this user, and what is missing, in plain words.

Read-only: every check asks and nothing else; no CRM row, mailbox item or stored setting is
written (msal may store a token it refreshed in the token cache, as any sign-in use does).
One finding per check: its id, ok / missing / info, what was found and what to do.

The checks: the sign-in's token for each resource (a silent acquire per scope, so a missing
consent shows up per resource), the CRM user, the read privilege and change tracking of each
synced table (sync.crm.capabilities), the table definitions (metadata), the CRM mailbox
record's delivery methods, and the synchronizing organization and computer claims.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sync.setup import mailbox as mailbox_step
from sync.setup.messages import N_, Msg
from sync.setup.organizations import change_reader_notice
from sync.setup.ports import CrmUser, OrgInfo
from sync.setup.profile import INSTANCE_ID, Profile
from sync.sides import SideError

if TYPE_CHECKING:
    from sync.auth import TokenProvider
    from sync.crm.client import DataverseClient

log = logging.getLogger(__name__)

OK, MISSING, INFO = "ok", "missing", "info"


@dataclass(frozen=True)
class Finding:
    """One check's result."""

    check: str
    """A stable id, e.g. `token:dataverse:contoso`, `change-tracking:contacts`, `metadata`."""
    status: str
    """ok, missing (something to fix), or info (worth knowing, nothing to fix)."""
    message: Msg
    action: Msg | None = None

    @property
    def missing(self) -> bool:
        return self.status == MISSING

    def as_dict(self) -> dict[str, str]:
        """For `doctor --json` (English)."""
        return {
            "check": self.check,
            "status": self.status,
            "message": str(self.message),
            "action": str(self.action) if self.action else "",
        }


def _detail(error: BaseException) -> str:
    if isinstance(error, SideError):
        return error.message or type(error).__name__
    return str(error) or type(error).__name__


def run_doctor(profile: Profile, sandbox_info: Mapping[str, Any] | None = None) -> list[Finding]:
    """Every check, in order; a check that cannot run says why instead of stopping the others."""
    findings: list[Finding] = []
    provider = _sign_in(profile, sandbox_info, findings)
    org = profile.synchronizing_org()
    if org is None:
        findings.append(
            Finding(
                "organization",
                MISSING,
                N_("No synchronizing organization is chosen."),
                N_("Open the setup wizard and choose your organization."),
            )
        )
    if provider is None:
        return findings
    _tokens(profile, provider, sandbox_info, findings)
    if org is None:
        return findings
    client = _client(profile, provider, org)
    try:
        user = _crm_user(client, findings)
        if user is not None:
            _tables(client, user, findings)
            _metadata(client, findings)
            _delivery_methods(client, user, _synced_here(profile), findings)
            _claims(profile, sandbox_info, org, user, findings)
    finally:
        client.close()
    return findings


# --- sign-in and tokens -------------------------------------------------------------------


def _sign_in(
    profile: Profile, sandbox_info: Mapping[str, Any] | None, findings: list[Finding]
) -> TokenProvider | None:
    from sync.auth import provider_from_config

    auth, upn = profile.get("auth"), profile.signed_in_upn
    if not auth or not upn:
        findings.append(
            Finding(
                "sign-in",
                MISSING,
                N_("Nobody is signed in on this computer."),
                N_("Open the app and sign in."),
            )
        )
        return None
    try:
        provider = provider_from_config(auth, profile.data_dir, sandbox_info)
        known = [a.username.lower() for a in provider.accounts()]
    except SideError as error:
        findings.append(
            Finding(
                "sign-in",
                MISSING,
                N_("The sign-in cannot be used: %(detail)s", detail=_detail(error)),
                N_("Open the app and sign in again."),
            )
        )
        return None
    if upn.lower() not in known:
        findings.append(
            Finding(
                "sign-in",
                MISSING,
                N_("%(user)s is not signed in on this computer any more.", user=upn),
                N_("Open the app and sign in again."),
            )
        )
        return None
    findings.append(Finding("sign-in", OK, N_("Signed in as %(user)s.", user=upn)))
    return provider


def _resources(
    profile: Profile, sandbox_info: Mapping[str, Any] | None
) -> list[tuple[str, Msg, str | tuple[str, ...]]]:
    """(check id, what it is for, scope or scopes) of every resource the app uses."""
    from sync.auth import dataverse_scope, discovery_scope, ews_scope
    from sync.setup.adapters import GLOBAL_DISCOVERY

    sandbox = sandbox_info if (profile.get("auth") or {}).get("provider") == "sandbox" else None
    discovery = str(sandbox["discovery_url"]) if sandbox else GLOBAL_DISCOVERY
    found: list[tuple[str, Msg, str | tuple[str, ...]]] = [
        ("token:discovery", N_("finding your organizations"), discovery_scope(discovery))
    ]
    orgs = [o for o in (profile.synchronizing_org(), *profile.connected_orgs()) if o]
    for org in orgs:
        found.append(
            (
                f"token:dataverse:{org.unique_name}",
                N_("the organization %(name)s", name=org.friendly_name),
                dataverse_scope(org.url),
            )
        )
    config = profile.mailbox()
    ews_url = (config.ews_url or config.found_ews_url) if config else ""
    if config is not None and config.type == "exchange" and config.auth == "oauth" and ews_url:
        found.append(("token:ews", N_("your Exchange mailbox"), ews_scope(ews_url)))
    if config is not None and config.type == "graph":  # graph-wire: every delegated scope
        from sync.graph.client import SCOPES

        found.append(("token:graph", N_("your mailbox through Microsoft Graph"), SCOPES))
    return found


def _tokens(
    profile: Profile,
    provider: TokenProvider,
    sandbox_info: Mapping[str, Any] | None,
    findings: list[Finding],
) -> None:
    from sync.auth import ConsentRequired, SignInRequired

    upn = profile.signed_in_upn
    for check, what, scope in _resources(profile, sandbox_info):
        try:
            provider.token_for([scope] if isinstance(scope, str) else list(scope), upn)
        except ConsentRequired as error:
            action = (
                N_(
                    "Your organization lets only an administrator consent: send this link to "
                    "your administrator: %(url)s",
                    url=error.admin_url,
                )
                if error.admin and error.admin_url
                else N_('Open the Sign-in page and choose "Give consent".')
            )
            findings.append(
                Finding(check, MISSING, N_("No consent yet for %(what)s.", what=what), action)
            )
        except SignInRequired as error:
            findings.append(
                Finding(
                    check,
                    MISSING,
                    N_("No token for %(what)s: %(detail)s", what=what, detail=_detail(error)),
                    N_("Open the app and sign in again."),
                )
            )
        except SideError as error:
            findings.append(
                Finding(
                    check,
                    MISSING,
                    N_("No token for %(what)s: %(detail)s", what=what, detail=_detail(error)),
                    N_("Check the network and try again; sign in again if it persists."),
                )
            )
        else:
            findings.append(Finding(check, OK, N_("A token for %(what)s.", what=what)))


# --- the organization ---------------------------------------------------------------------


def _client(profile: Profile, provider: TokenProvider, org: OrgInfo) -> DataverseClient:
    from sync.auth import dataverse_scope
    from sync.crm.client import DataverseClient, RetryPolicy

    token = provider.token_callable([dataverse_scope(org.url)], profile.signed_in_upn)
    # a check should answer soon: few retries, short waits
    return DataverseClient(org.api_url, token, retry=RetryPolicy(max_retries=1, backoff=0.2))


def _crm_user(client: DataverseClient, findings: list[Finding]) -> CrmUser | None:
    from sync.setup.adapters import DataverseDirectory

    try:
        user = DataverseDirectory(client).current_user()
    except SideError as error:
        findings.append(
            Finding(
                "crm-user",
                MISSING,
                N_("The organization did not say who you are: %(detail)s", detail=_detail(error)),
                N_("Check that your user is enabled in the organization and has a security role."),
            )
        )
        return None
    findings.append(Finding("crm-user", OK, N_("Your CRM user is %(name)s.", name=user.name)))
    return user


def _tables(client: DataverseClient, user: CrmUser, findings: list[Finding]) -> None:
    from sync.crm.capabilities import SYNCED_TABLES, TableAccess, table_access

    depths: dict[str, str | None] = {}
    tracking: dict[str, bool] = {}  # [h4] every table's change tracking setting in one request
    accesses: list[TableAccess] = []
    for entity_set in SYNCED_TABLES:
        try:
            accesses.append(table_access(client, user.id, entity_set, depths, tracking))
        except SideError as error:
            findings.append(
                Finding(
                    f"change-tracking:{entity_set}",
                    MISSING,
                    N_(
                        "%(table)s could not be checked: %(detail)s",
                        table=SYNCED_TABLES[entity_set][0],
                        detail=_detail(error),
                    ),
                )
            )
    for privilege, depth in depths.items():
        findings.append(_privilege_finding(privilege, depth))
    for access in accesses:
        notice = change_reader_notice(access)
        check = f"change-tracking:{access.entity_set}"
        if notice is None:
            findings.append(
                Finding(
                    check,
                    OK,
                    N_(
                        "Changes of %(table)s are read by change tracking.",
                        table=access.logical_name,
                    ),
                )
            )
        elif access.tracking_disabled and not access.depth_short:
            findings.append(
                Finding(
                    check,
                    MISSING,
                    notice,
                    N_(
                        "Ask your administrator to turn on Track changes for the %(table)s table "
                        "(its advanced options).",
                        table=access.logical_name,
                    ),
                )
            )
        else:
            findings.append(
                Finding(
                    check,
                    MISSING,
                    notice,
                    N_(
                        "Ask your administrator to give your security role organization-level "
                        "Read on %(table)s (%(privilege)s).",
                        table=access.logical_name,
                        privilege=access.privilege,
                    ),
                )
            )


def _privilege_finding(privilege: str, depth: str | None) -> Finding:
    check = f"privilege:{privilege}"
    if depth == "Global":
        return Finding(
            check,
            OK,
            N_(
                "Your security role gives organization-level Read (%(privilege)s).",
                privilege=privilege,
            ),
        )
    if depth is None:
        return Finding(
            check,
            MISSING,
            N_("Your security roles could not be read for %(privilege)s.", privilege=privilege),
            N_("Ask your administrator whether your user may read its own privileges."),
        )
    if depth == "None":
        return Finding(
            check,
            MISSING,
            N_(
                "Your security role gives no Read (%(privilege)s): those records cannot be "
                "synchronized.",
                privilege=privilege,
            ),
            N_("Ask your administrator to give your security role Read on that table."),
        )
    return Finding(
        check,
        MISSING,
        N_(
            "Your security role gives Read below organization level (%(privilege)s: %(depth)s); "
            "change tracking needs organization level.",
            privilege=privilege,
            depth=depth,
        ),
        N_("Ask your administrator for organization-level Read on that table."),
    )


def _metadata(client: DataverseClient, findings: list[Finding]) -> None:
    try:
        data = client.get_json(
            "EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName"
        )
        names = [a.get("LogicalName") for a in data.get("value", []) if isinstance(a, Mapping)]
    except (SideError, ValueError, AttributeError) as error:
        findings.append(
            Finding(
                "metadata",
                MISSING,
                N_("The table definitions cannot be read: %(detail)s", detail=_detail(error)),
                N_(
                    "Ask your administrator to give your security role Read on Entity and "
                    "Attribute (the Customization tab)."
                ),
            )
        )
        return
    if not names:
        findings.append(
            Finding(
                "metadata",
                MISSING,
                N_("The table definitions came back empty."),
                N_(
                    "Ask your administrator to give your security role Read on Entity and "
                    "Attribute (the Customization tab)."
                ),
            )
        )
        return
    findings.append(
        Finding(
            "metadata",
            OK,
            N_(
                "The table definitions can be read (%(count)s columns of contact).",
                count=len(names),
            ),
        )
    )


def _synced_here(profile: Profile) -> tuple[str, frozenset[str]]:
    """The mailbox type and the email workloads chosen: which delivery methods must name us."""
    from sync.mail import settings as email_settings

    config = profile.mailbox()
    return (config.type if config else "exchange"), email_settings.chosen_workloads(profile)


def _delivery_methods(
    client: DataverseClient,
    user: CrmUser,
    synced: tuple[str, frozenset[str]],
    findings: list[Finding],
) -> None:
    """Each workload's method: one this app syncs (appointments, contacts and tasks on Exchange;
    incoming email while tracking, outgoing while CRM email is sent here) must name this client,
    or server-side sync and this app would both act on it (or neither)."""
    from sync.setup.adapters import DataverseDirectory

    try:
        record = DataverseDirectory(client).mailbox_of_user(user.id)
    except SideError as error:
        findings.append(
            Finding(
                "mailbox-record",
                MISSING,
                N_("Your CRM mailbox record could not be read: %(detail)s", detail=_detail(error)),
                N_("Ask your administrator to give your security role Read on Mailbox."),
            )
        )
        return
    if record is None:
        findings.append(
            Finding(
                "mailbox-record",
                MISSING,
                N_("Your CRM user has no mailbox record."),
                N_(
                    "Ask your administrator to create your mailbox record (Settings > Email "
                    "Configuration > Mailboxes)."
                ),
            )
        )
        return
    findings.append(
        Finding(
            "mailbox-record", OK, N_("Your CRM mailbox record is %(email)s.", email=record.email)
        )
    )
    for status in mailbox_step.delivery_status(record, *synced):
        check = f"delivery:{status.workload}"
        text = N_("%(workload)s: %(method)s.", workload=status.label, method=status.current)
        if status.is_this_client:
            findings.append(Finding(check, OK, text))
        elif status.synced_here:
            findings.append(
                Finding(
                    check,
                    MISSING,
                    text,
                    N_(
                        "Set it to Microsoft Dynamics 365 for Outlook: Setup > Mailbox, 'Set to "
                        "this client', or ask your administrator."
                    ),
                )
            )
        else:
            findings.append(Finding(check, INFO, text))


# --- the claims -------------------------------------------------------------------------


def _claims(
    profile: Profile,
    sandbox_info: Mapping[str, Any] | None,
    org: OrgInfo,
    user: CrmUser,
    findings: list[Finding],
) -> None:
    from sync.setup.adapters import close_ports, default_ports

    config = profile.mailbox()
    if config is None:
        findings.append(
            Finding(
                "claim:computer",
                MISSING,
                N_("No mailbox is set up, so no computer synchronizes one."),
                N_("Open the setup wizard's Mailbox step."),
            )
        )
        return
    ports = None
    try:
        ports = default_ports(profile, sandbox_info)
        claim = ports.claims(org, config, user).read()
    except SideError as error:
        findings.append(_unreadable_claim(error))
        return
    except Exception as error:  # exchangelib and autodiscover raise their own errors
        log.info("the claim could not be read", exc_info=True)
        findings.append(_unreadable_claim(error))
        return
    finally:
        if ports is not None:
            close_ports(ports)
    if config.type == "exchange":
        findings.append(_organization_claim(org, claim))
    elif config.type == "graph":  # graph-wire: the claim is a note in the organization
        findings.append(
            Finding(
                "claim:organization",
                INFO,
                N_(
                    "A mailbox reached through Microsoft Graph keeps its claim in %(name)s, in "
                    "a note of yours.",
                    name=org.friendly_name,
                ),
            )
        )
    else:
        findings.append(
            Finding(
                "claim:organization",
                INFO,
                N_(
                    "A POP3 mailbox keeps no claim of its own: the synchronizing computer is "
                    "recorded in %(name)s, in a note of yours.",
                    name=org.friendly_name,
                ),
            )
        )
    findings.append(_computer_claim(profile, claim))


def _unreadable_claim(error: BaseException) -> Finding:
    return Finding(
        "claim:computer",
        MISSING,
        N_("The synchronizing computer could not be read: %(detail)s", detail=_detail(error)),
        N_("Check the mailbox settings (Setup > Mailbox) and the network, then check again."),
    )


def _organization_claim(org: OrgInfo, claim: Any) -> Finding:
    holder_org = (getattr(claim, "org_id", "") or "").lower() if claim else ""
    holder_url = (getattr(claim, "org_url", "") or "").rstrip("/").lower() if claim else ""
    if claim is None or not (holder_org or holder_url):
        return Finding(
            "claim:organization",
            MISSING,
            N_("No organization is recorded as synchronizing this mailbox."),
            N_("Open the setup wizard's 'Synchronizing computer' step and save it."),
        )
    if holder_org == org.id.lower() or holder_url == org.url.rstrip("/").lower():
        return Finding(
            "claim:organization",
            OK,
            N_("The mailbox is synchronized with %(name)s.", name=org.friendly_name),
        )
    return Finding(
        "claim:organization",
        MISSING,
        N_(
            "The mailbox is recorded as synchronizing with another organization (%(url)s).",
            url=getattr(claim, "org_url", "") or holder_org,
        ),
        N_("Open the setup wizard's 'Synchronizing computer' step to take it over."),
    )


def _computer_claim(profile: Profile, claim: Any) -> Finding:
    mine = str(profile.get(INSTANCE_ID) or "")
    if claim is None:
        return Finding(
            "claim:computer",
            MISSING,
            N_("No computer is recorded as the synchronizing computer."),
            N_("Open the setup wizard's 'Synchronizing computer' step and save it."),
        )
    if mine and claim.instance_id == mine:
        return Finding(
            "claim:computer",
            OK,
            N_("This computer (%(name)s) is the synchronizing computer.", name=claim.instance_name),
        )
    if not profile.messaging_enabled:
        return Finding(
            "claim:computer",
            INFO,
            N_(
                "Another computer (%(name)s) synchronizes messaging data; this one does not, as "
                "chosen.",
                name=claim.instance_name,
            ),
        )
    return Finding(
        "claim:computer",
        MISSING,
        N_(
            "Another computer (%(name)s) is now the synchronizing computer.",
            name=claim.instance_name,
        ),
        N_(
            "To sync here again, open the setup wizard's 'Synchronizing computer' step and make "
            "this computer the synchronizing computer."
        ),
    )


def any_missing(findings: list[Finding]) -> bool:
    return any(f.missing for f in findings)


Checker = Callable[[Profile, Mapping[str, Any] | None], list[Finding]]
"""run_doctor's shape, for the web page and the command line (tests inject one)."""
