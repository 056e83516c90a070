"""The mailbox step: read the form, enforce the CRM's mailbox rules, test the connection.

Rules (DESIGN.md 1.1 step 3): one mailbox per CRM user, and an address already mapped to
another CRM user is refused, naming that user and what to do. A workload syncs only while the
CRM mailbox record's delivery method for it names this client ("Outlook"). The mailbox step
sets appointments, contacts and tasks, with the user's consent; the email methods are set only
when the user turns email on in the "What to sync" step (incoming for tracking, outgoing for
sending CRM email: `take_email_methods`), and are otherwise left as they are: pointing them at
a client that does not handle email would leave CRM email in "Pending Send" for good.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from sync.runs import raise_alert, resolve_alerts
from sync.setup import addresses
from sync.setup import profile as keys
from sync.setup.messages import N_, Msg, SetupError
from sync.setup.ports import (
    CrmDirectory,
    CrmUser,
    GraphProbe,
    MailboxConfig,
    MailboxRecord,
    MailboxTester,
)
from sync.setup.profile import Profile
from sync.sides import AuthError, Invalid, SideError, Unavailable
from sync.store.db import Database

MAILBOX_TYPES = ("exchange", "graph", "pop3")
"""EWS (Exchange Server, or Exchange Online while EWS lasts), Exchange Online through Microsoft
Graph, or a POP3 account with its SMTP server."""
KINDS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "exchange": ("contacts", "appointments", "tasks"),
    "graph": ("contacts", "appointments", "tasks"),  # gcal: the calendar through Graph
    "pop3": (),
}
"""The wizard's kinds each mailbox type syncs."""

MAX_USERNAME = 256
"""Longer than any Windows (DOMAIN\\user) or UPN sign-in name; it is sent in every request."""

AUTH_TYPES = ("oauth", "basic", "ntlm")
"""How to sign in to Exchange: the app's Microsoft sign-in (OAuth: Exchange Online, or Exchange
Server with hybrid modern authentication), or a Windows account's password sent as HTTP Basic
or as NTLM (Exchange Server on premises; exchangelib's `NTLM` through requests_ntlm)."""

# the value of each method that means "this client" (Microsoft Dynamics 365 for Outlook);
# the option values are mailbox.md's (MicrosoftDocs/powerapps-docs, mailbox table reference)
THIS_CLIENT = {"incoming": 1, "outgoing": 1, "act": 0}
ACT_ALERT = "mailbox-method-not-set"
"""The alert open while appointments, contacts and tasks are not synced for their method."""

METHOD_LABELS: dict[str, dict[int, Msg]] = {
    "incoming": {
        0: N_("None"),
        1: N_("This client (Dynamics 365 for Outlook)"),
        2: N_("Server-Side Synchronization or Email Router"),
        3: N_("Forward Mailbox"),
    },
    "outgoing": {
        0: N_("None"),
        1: N_("This client (Dynamics 365 for Outlook)"),
        2: N_("Server-Side Synchronization"),
    },
    "act": {
        0: N_("This client (Dynamics 365 for Outlook)"),
        1: N_("Server-Side Synchronization"),
        2: N_("None"),
    },
}
ACT_METHOD_NAMES: dict[int, Msg] = {
    0: N_("Microsoft Dynamics 365 for Outlook"),
    1: N_("Server-Side Synchronization"),
    2: N_("None"),
}
"""The act method's options in words, as the CRM's mailbox form names them (for alerts)."""
METHOD_NAMES: dict[str, dict[int, Msg]] = {
    "incoming": {
        0: N_("None"),
        1: N_("Microsoft Dynamics 365 for Outlook"),
        2: N_("Server-Side Synchronization or Email Router"),
        3: N_("Forward Mailbox"),
    },
    "outgoing": {
        0: N_("None"),
        1: N_("Microsoft Dynamics 365 for Outlook"),
        2: N_("Server-Side Synchronization"),
    },
    "act": ACT_METHOD_NAMES,
}
"""Each workload's methods in words, as the CRM's mailbox form names them (for alerts)."""
METHOD_ALERT_SUBJECTS = {"act": "", "incoming": "incoming", "outgoing": "outgoing"}
"""The ACT_ALERT's subject per workload (one open alert each)."""
WORKLOADS: dict[str, Msg] = {
    "incoming": N_("Incoming email"),
    "outgoing": N_("Outgoing email"),
    "act": N_("Appointments, contacts and tasks"),
}


class FormErrors(SetupError):
    """Several fields were refused: `errors` maps field name → message."""

    def __init__(self, errors: dict[str, Msg]) -> None:
        first = next(iter(errors.values()))
        super().__init__(first, next(iter(errors)))
        self.errors = errors


@dataclass(frozen=True)
class MethodStatus:
    workload: str
    label: Msg
    current: Msg
    is_this_client: bool
    synced_here: bool
    """This app syncs the workload (else its method is shown, and left as it is)."""


# --- the form ------------------------------------------------------------------------------


def _port(value: str, default: int) -> int | None:
    value = (value or "").strip()
    if not value:
        return default
    if value.isdigit() and 0 < int(value) < 65536:
        return int(value)
    return None


def parse_mailbox_form(
    form: Mapping[str, str], stored_secrets: Mapping[str, str] | None = None
) -> tuple[MailboxConfig, dict[str, str]]:
    """Validate the form's fields; raises FormErrors naming each bad field.

    An empty password field keeps the stored password, so the form need not show it again.
    """
    stored = stored_secrets or {}
    errors: dict[str, Msg] = {}
    kind = (form.get("type") or "").strip()
    email = (form.get("email") or "").strip()
    password = form.get("password") or ""
    secrets: dict[str, str] = {}
    if kind not in MAILBOX_TYPES:
        errors["type"] = N_("Choose Exchange or POP3.")
    email_problem = addresses.email_problem(email)
    if email_problem is not None:
        errors["email"] = email_problem
    config = MailboxConfig(type=kind or "exchange", email=email)
    if kind == "exchange":
        ews_url = (form.get("ews_url") or "").strip()
        auth = (form.get("auth") or "oauth").strip()
        username = (form.get("username") or "").strip()
        # https only, even to this computer: the EWS client speaks TLS only (OAuth needs it,
        # and the sandbox's EWS serves https too)
        url_problem = addresses.service_url_problem(
            ews_url,
            "https://mail.example.com/EWS/Exchange.asmx",
            insecure=N_(
                "The EWS address must start with https:// (for example "
                "https://mail.example.com/EWS/Exchange.asmx), or stay empty for autodiscover."
            ),
            https_only=True,
        )
        if ews_url and url_problem is not None:
            errors["ews_url"] = url_problem
        if auth not in AUTH_TYPES:
            errors["auth"] = N_("Choose how to sign in to Exchange.")
        if auth in ("basic", "ntlm"):  # a Windows account's name and password
            if not username:
                errors["username"] = N_("Enter the user name for Exchange (DOMAIN\\user or UPN).")
            if not password and not stored.get(keys.MAILBOX_PASSWORD):
                errors["password"] = N_("Enter the password.")
            secrets[keys.MAILBOX_PASSWORD] = password
        config = MailboxConfig(
            type="exchange", email=email, ews_url=ews_url, auth=auth, username=username
        )
    elif kind == "graph":  # the sign-in's own token: nothing more to ask
        config = MailboxConfig(type="graph", email=email)
    elif kind == "pop3":
        pop3_host = (form.get("pop3_host") or "").strip()
        smtp_host = (form.get("smtp_host") or "").strip()
        pop3_security = form.get("pop3_security") or "ssl"
        smtp_security = form.get("smtp_security") or "starttls"
        pop3_port = _port(form.get("pop3_port", ""), 995 if pop3_security == "ssl" else 110)
        smtp_port = _port(form.get("smtp_port", ""), 465 if smtp_security == "ssl" else 587)
        username = (form.get("username") or "").strip() or email
        smtp_password = form.get("smtp_password") or ""
        for name, host in (("pop3_host", pop3_host), ("smtp_host", smtp_host)):
            host_problem = addresses.host_problem(host)
            if host_problem is not None:
                errors[name] = host_problem
        for name, port in (("pop3_port", pop3_port), ("smtp_port", smtp_port)):
            if port is None:
                errors[name] = N_("A port is a number from 1 to 65535.")
        for name, sec in (("pop3_security", pop3_security), ("smtp_security", smtp_security)):
            if sec not in ("ssl", "starttls"):
                errors[name] = N_("Choose SSL/TLS or STARTTLS: the connection is always encrypted.")
        if not password and not stored.get(keys.MAILBOX_PASSWORD):
            errors["password"] = N_("Enter the password.")
        secrets[keys.MAILBOX_PASSWORD] = password
        secrets[keys.SMTP_PASSWORD] = smtp_password
        config = MailboxConfig(
            type="pop3",
            email=email,
            username=username,
            pop3_host=pop3_host,
            pop3_port=pop3_port or 0,
            pop3_security=pop3_security,
            smtp_host=smtp_host,
            smtp_port=smtp_port or 0,
            smtp_security=smtp_security,
        )
    if len(config.username) > MAX_USERNAME:
        errors["username"] = N_("A user name has at most %(max)s characters.", max=MAX_USERNAME)
    if errors:
        raise FormErrors(errors)
    return config, secrets


# --- the CRM's mailbox records -------------------------------------------------------------


def check_mailbox_owner(directory: CrmDirectory, user: CrmUser, address: str) -> MailboxRecord:
    """The user's own mailbox record for `address`; refuses an address that is someone else's."""
    wanted = address.strip().lower()
    for record in directory.mailboxes_with_address(wanted):
        if record.owner_id != user.id:
            other = directory.user_name(record.owner_id)
            raise SetupError(
                N_(
                    "The mailbox %(address)s is already used by another CRM user, %(other)s. "
                    "One mailbox belongs to one user: use your own mailbox, or ask your "
                    "administrator to change %(other)s's mailbox record first.",
                    address=address,
                    other=other,
                ),
                "email",
            )
    own = directory.mailbox_of_user(user.id)
    if own is None:
        raise SetupError(
            N_(
                "Your CRM user %(user)s has no mailbox record. Ask your administrator to "
                "create one (Settings > Email Configuration > Mailboxes).",
                user=user.name,
            ),
            "email",
        )
    if own.email.lower() != wanted:
        raise SetupError(
            N_(
                "Your CRM mailbox record is for %(recorded)s, not %(address)s. Each CRM user "
                "has one mailbox: use %(recorded)s, or ask your administrator to change the "
                "address on your mailbox record.",
                recorded=own.email,
                address=address,
            ),
            "email",
        )
    return own


def synced_workloads(mailbox_type: str, email: frozenset[str] = frozenset()) -> frozenset[str]:
    """The workloads this app syncs for a mailbox type: appointments, contacts and tasks need
    Exchange (a POP3 mailbox holds email only, as in Dynamics); the email workloads of `email`
    ("incoming" while tracking is on, "outgoing" while CRM email is sent here) on both."""
    act = frozenset({"act"}) if mailbox_type in ("exchange", "graph") else frozenset()
    # outgoing CRM email needs a send path: Graph's side has none yet
    sendable = {"incoming"} if mailbox_type == "graph" else {"incoming", "outgoing"}
    return act | (email & sendable)


def supported_kinds(mailbox_type: str) -> tuple[str, ...]:
    """The wizard's kinds ("contacts", "appointments", "tasks") a mailbox type syncs."""
    return KINDS_BY_TYPE.get(mailbox_type, ())


def can_send(mailbox_type: str) -> bool:
    """Whether CRM email can be sent through this type of mailbox (the outgoing option)."""
    return mailbox_type != "graph"


def pick_mailbox_type(probe: GraphProbe | None, address: str) -> str:
    """The wizard's default: "graph" when the signed-in user's own tenant holds the mailbox
    (Graph `/me` and `/me/mailboxSettings` answer for it), else "exchange" (autodiscover, EWS)."""
    if probe is None or not address:
        return "exchange"
    try:
        return "graph" if probe.has_mailbox(address) else "exchange"
    except SideError:
        return "exchange"


def email_workloads(tracking_on: bool, send_crm_email: bool) -> frozenset[str]:
    """The email workloads the user's choices make this client's."""
    return frozenset(
        name for name, on in (("incoming", tracking_on), ("outgoing", send_crm_email)) if on
    )


def delivery_status(
    record: MailboxRecord, mailbox_type: str = "exchange", email: frozenset[str] = frozenset()
) -> list[MethodStatus]:
    """Each workload's delivery method, whether it names this client and whether we sync it
    (a method we do not sync is shown and left as it is)."""
    synced = synced_workloads(mailbox_type, email)
    values = {"incoming": record.incoming, "outgoing": record.outgoing, "act": record.act}
    return [
        MethodStatus(
            workload=name,
            label=WORKLOADS[name],
            current=METHOD_LABELS[name].get(value, N_("Unknown (%(value)s)", value=value)),
            is_this_client=value == THIS_CLIENT[name],
            synced_here=name in synced,
        )
        for name, value in values.items()
    ]


def set_to_this_client(
    directory: CrmDirectory, record: MailboxRecord, consent: bool
) -> MailboxRecord:
    """Point appointments, contacts and tasks at this client, only with the user's consent.

    The email methods are not written here: they follow the user's email choices
    (`take_email_methods`), so that email is never taken from server-side sync unasked."""
    if not consent:
        raise SetupError(
            N_(
                "Tick the box to agree: this stops server-side synchronization of "
                "appointments, contacts and tasks for this mailbox."
            ),
            "consent",
        )
    try:
        directory.set_act_delivery_method(record.id, THIS_CLIENT["act"])
    except AuthError:
        raise SetupError(
            N_(
                "You may not change your mailbox record. Ask your administrator to set "
                "Appointments, Contacts, and Tasks to Microsoft Dynamics 365 for Outlook "
                "(Settings > Email Configuration > Mailboxes)."
            ),
            "consent",
        ) from None
    return replace(record, act=THIS_CLIENT["act"])


def take_email_methods(
    directory: CrmDirectory, user_id: str, incoming: bool, outgoing: bool
) -> MailboxRecord | None:
    """Point the user's incoming (tracking) and/or outgoing (sending CRM email) method at this
    client, as the user turned email on; a method already this client's is not written, one
    not asked for is left as it is. Raises SetupError when the record may not be changed."""
    record = directory.mailbox_of_user(user_id)
    if record is None:
        raise SetupError(
            N_(
                "Your CRM user has no mailbox record, so email cannot be tracked or sent here. "
                "Ask your administrator to create one (Settings > Email Configuration > "
                "Mailboxes)."
            ),
            "tracking",
        )
    wanted_in = THIS_CLIENT["incoming"] if incoming and record.incoming != 1 else None
    wanted_out = THIS_CLIENT["outgoing"] if outgoing and record.outgoing != 1 else None
    if wanted_in is None and wanted_out is None:
        return record
    try:
        directory.set_email_delivery_methods(record.id, incoming=wanted_in, outgoing=wanted_out)
    except AuthError:
        raise SetupError(
            N_(
                "You may not change your mailbox record. Ask your administrator to set "
                "Incoming Email (and Outgoing Email, to send CRM email from here) to "
                "Microsoft Dynamics 365 for Outlook (Settings > Email Configuration > "
                "Mailboxes), or turn email off here."
            ),
            "tracking",
        ) from None
    return replace(
        record,
        incoming=record.incoming if wanted_in is None else wanted_in,
        outgoing=record.outgoing if wanted_out is None else wanted_out,
    )


def act_method_problem(database: Database, act: int | None) -> Msg | None:
    """Why appointments, contacts and tasks may not sync here, by the mailbox record's
    `actdeliverymethod` (None: the user has no mailbox record); None when they may.

    Not this client: the alert says which method is set and what to do; it is resolved once
    the method names this client again. Two clients syncing one mailbox would make every item
    twice, so we stand aside."""
    return method_problem(database, "act", act)


# the words of each workload's alert: (title, message with no record, message with another
# method, the action with no record, the action with another method)
_WORKLOAD_WORDS = {
    "act": (
        N_("Appointments, contacts and tasks are not synchronized"),
        N_(
            "Your CRM user has no mailbox record, so appointments, contacts and tasks are "
            "not synchronized."
        ),
        N_(
            "Your CRM mailbox record sets Appointments, Contacts, and Tasks to %(method)s, "
            "not to this client, so this computer does not synchronize them."
        ),
        N_(
            "Ask your administrator to create your mailbox record (Settings > Email "
            "Configuration > Mailboxes) with Appointments, Contacts, and Tasks set to "
            "Microsoft Dynamics 365 for Outlook."
        ),
        N_(
            "Ask your administrator to set Appointments, Contacts, and Tasks back to "
            "Microsoft Dynamics 365 for Outlook on your mailbox record (Settings > Email "
            "Configuration > Mailboxes), or press 'Set to this client' in Setup > Mailbox."
        ),
    ),
    "incoming": (
        N_("Incoming email is not tracked"),
        N_("Your CRM user has no mailbox record, so incoming email is not tracked."),
        N_(
            "Your CRM mailbox record sets Incoming Email to %(method)s, not to this client, "
            "so this computer does not handle it."
        ),
        N_(
            "Ask your administrator to create your mailbox record (Settings > Email "
            "Configuration > Mailboxes) with Incoming Email set to Microsoft Dynamics 365 "
            "for Outlook."
        ),
        N_(
            "Ask your administrator to set Incoming Email back to Microsoft Dynamics 365 for "
            "Outlook on your mailbox record (Settings > Email Configuration > Mailboxes), or "
            "press 'Set to this client' in Setup > What to sync."
        ),
    ),
    "outgoing": (
        N_("CRM email is not sent from this mailbox"),
        N_("Your CRM user has no mailbox record, so CRM email is not sent through this mailbox."),
        N_(
            "Your CRM mailbox record sets Outgoing Email to %(method)s, not to this client, "
            "so this computer does not handle it."
        ),
        N_(
            "Ask your administrator to create your mailbox record (Settings > Email "
            "Configuration > Mailboxes) with Outgoing Email set to Microsoft Dynamics 365 "
            "for Outlook."
        ),
        N_(
            "Ask your administrator to set Outgoing Email back to Microsoft Dynamics 365 for "
            "Outlook on your mailbox record (Settings > Email Configuration > Mailboxes), or "
            "press 'Set to this client' in Setup > What to sync."
        ),
    ),
}


def method_problem(database: Database, workload: str, value: int | None) -> Msg | None:
    """Why `workload` ("act", "incoming" or "outgoing") may not run here, by the mailbox
    record's method for it (None: the user has no mailbox record); None when it may.

    The one place for this rule: checked by the messaging job at every run (an administrator
    may hand a workload to server-side sync at any time; two clients on one mailbox would do
    everything twice, or CRM email would go out twice), so we stand aside and say so. The
    alert names the method that is set and is resolved once the method names this client."""
    subject = METHOD_ALERT_SUBJECTS[workload]
    if value == THIS_CLIENT[workload]:
        resolve_alerts(database, ACT_ALERT, subject)
        return None
    title, no_record, other, create, set_back = _WORKLOAD_WORDS[workload]
    if value is None:
        message, action = no_record, create
    else:
        method = METHOD_NAMES[workload].get(value) or N_(
            "an unknown method (%(value)s)", value=value
        )
        message, action = Msg(other.text, {"method": method}), set_back
    raise_alert(database, ACT_ALERT, title=title, message=message, action=action, subject=subject)
    return message


# --- the connection -----------------------------------------------------------------------


def check_connection(
    tester: MailboxTester, config: MailboxConfig, secrets: Mapping[str, str]
) -> str | None:
    """Open the mailbox once; failures become SetupErrors that say what to do. Returns the
    EWS address used (what autodiscover found when none was typed)."""
    try:
        return tester.test(config, secrets)
    except AuthError as refused:
        if refused.code == "consent_required":
            raise  # sync.auth.ConsentRequired: the page names the consent and where to give it
        if refused.code == "HTTP 403":  # EWS itself refused (sync.mailbox.ews_connection)
            raise SetupError(
                N_(
                    "Exchange refused Mailbox Sync access to the mailbox (HTTP 403): EWS is "
                    "turned off for this mailbox, or the app is not on your organization's EWS "
                    "allow list. Ask your Exchange administrator to allow EWS for Mailbox Sync."
                ),
                "type",
            ) from None
        if config.type == "graph":
            raise SetupError(
                N_(
                    "Microsoft Graph refused access to the mailbox of %(email)s (%(detail)s). "
                    "Sign in again and give consent, or choose Exchange Server (EWS).",
                    email=config.email,
                    detail=refused.message or refused.code or "HTTP 403",
                ),
                "type",
            ) from None
        raise SetupError(
            N_(
                "The mailbox refused the sign-in for %(email)s. Check the user name and "
                "password (or sign in again), then test again.",
                email=config.email,
            ),
            "password",
        ) from None
    except Unavailable as error:
        raise SetupError(
            N_(
                "The mailbox server could not be reached (%(detail)s). Check the server "
                "address and port, and your network.",
                detail=error.message or type(error).__name__,
            ),
            "ews_url" if config.type == "exchange" else "pop3_host",
        ) from None
    except (Invalid, SideError) as error:
        raise SetupError(
            N_("The mailbox server answered: %(detail)s", detail=error.message or str(error)),
            "type",
        ) from None


def save_mailbox(
    profile: Profile,
    directory: CrmDirectory,
    tester: MailboxTester,
    user: CrmUser,
    config: MailboxConfig,
    secrets: Mapping[str, str],
) -> MailboxRecord:
    """Check the address, test the connection, then store: the step is done only on success."""
    record = check_mailbox_owner(directory, user, config.email)
    merged = {**profile.mailbox_secrets(), **{k: v for k, v in secrets.items() if v}}
    used = check_connection(tester, config, merged)
    if config.type == "exchange" and not config.ews_url:
        config = replace(config, found_ews_url=used or "")  # not discovered again every run
    previous = profile.mailbox()
    profile.save_mailbox(config, dict(secrets))
    clear_ews_blocked(profile)  # a switch to Graph, or a good test of EWS: syncing resumes
    profile.set(keys.MAILBOX_TESTED, True)
    profile.set(keys.CRM_USER, {"id": user.id, "name": user.name})
    if previous is not None and previous.email.lower() != config.email.lower():
        profile.set(keys.INSTANCE_DECIDED, False)  # the claim lives in the mailbox
    note_methods(profile, record)
    return record


def note_methods(profile: Profile, record: MailboxRecord) -> None:
    """The alert while appointments, contacts and tasks are not this client's (the dashboard
    shows it); the messaging job checks the record again at every run. A POP3 mailbox syncs
    none of them, so their method is no concern of its."""
    config = profile.mailbox()
    if config is not None and "act" not in synced_workloads(config.type):
        resolve_alerts(profile.database, ACT_ALERT)
        return
    act_method_problem(profile.database, record.act)


# --- EWS blocked in Exchange Online ---------------------------------------------------------

EWS_BLOCKED = "ews_blocked"
"""Profile setting: {"endpoint", "at"} while Exchange Online refuses EWS (HTTP 403); messaging
does not try the mailbox again until the user switches to Graph or tests the mailbox again."""
EWS_BLOCKED_ALERT = "ews-blocked"
EWS_ONLINE_SETTING = "ews_is_exchange_online"
"""True: treat the EWS endpoint as Exchange Online whatever its host (the sandbox, told so)."""


def is_exchange_online_ews(profile: Profile, endpoint: str) -> bool:
    """Exchange Online's hosts (outlook.office365.com, *.outlook.com), or any host when the
    profile says so (`EWS_ONLINE_SETTING`, for the sandbox)."""
    from sync.auth import is_exchange_online

    return bool(profile.get(EWS_ONLINE_SETTING)) or is_exchange_online(endpoint)


def block_ews(profile: Profile, endpoint: str, detail: str) -> Msg:
    """Exchange Online refused EWS: remember it (messaging stops trying) and open the alert
    that explains the retirement and offers the switch to Graph. Returns the run's message."""
    from datetime import UTC, datetime

    profile.set(EWS_BLOCKED, {"endpoint": endpoint, "at": datetime.now(UTC).isoformat()})
    message = N_(
        "Exchange Online refused EWS for this mailbox (HTTP 403: %(detail)s). Microsoft "
        "blocks EWS in Exchange Online by default since 1 October 2026 unless an "
        "administrator allows the app, and turns it off for good on 1 April 2027.",
        detail=detail,
    )
    raise_alert(
        profile.database,
        EWS_BLOCKED_ALERT,
        title=N_("Exchange Online no longer accepts EWS"),
        message=message,
        action=N_(
            "Switch the mailbox to Exchange Online (Microsoft Graph) in Settings; syncing "
            "stops until you switch or test the mailbox again."
        ),
        severity="error",
    )
    return message


def ews_blocked(profile: Profile) -> bool:
    """Whether messaging waits for the user after Exchange Online refused EWS."""
    config = profile.mailbox()
    return bool(profile.get(EWS_BLOCKED)) and config is not None and config.type == "exchange"


def clear_ews_blocked(profile: Profile) -> None:
    if profile.get(EWS_BLOCKED):
        profile.set(EWS_BLOCKED, None)
    resolve_alerts(profile.database, EWS_BLOCKED_ALERT)
