"""Deterministic demo data for each organization: users and their mailboxes always; accounts,
contacts, leads, appointments (some recurring), tasks and e-mails scaled by `demo_scale`.

Ids are stable (same names → same GUIDs on every start); dates are relative to today so a
calendar window always finds something. `demo_scale=0` gives an organization with only users.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sandbox.dataverse import operations
from sandbox.dataverse.schema import (
    DEFAULT_BLOCKED_ATTACHMENTS,
    DEFAULT_MAX_UPLOAD_FILE_SIZE,
    TIME_ZONES,
)
from sandbox.dataverse.security import BUSINESS_UNIT_READER, ORGANIZATION_READER, Role
from sandbox.identity import ORGANIZATIONS, USERS, stable_id

if TYPE_CHECKING:
    from sandbox.dataverse.server import DataverseServer

_FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kira",
    "Luis",
    "Mara",
    "Nils",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Xavier",
    "Yara",
    "Zeno",
]
_LAST = [
    "Adams",
    "Baker",
    "Costa",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Haas",
    "Ito",
    "Jensen",
    "Khan",
    "Lopez",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quist",
    "Rossi",
    "Silva",
    "Tanaka",
    "Ueda",
    "Vogel",
    "Weber",
    "Xu",
    "Young",
    "Zimmer",
]
_COMPANY = [
    "Alpine",
    "Blue",
    "Cedar",
    "Delta",
    "Ember",
    "Falcon",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Maple",
    "Nimbus",
    "Orchid",
    "Pioneer",
    "Quartz",
    "Riverside",
    "Summit",
    "Tundra",
]
_KIND = [
    "Labs",
    "Logistics",
    "Foods",
    "Energy",
    "Media",
    "Partners",
    "Systems",
    "Health",
    "Retail",
    "Works",
]
_CITY = ["Lyon", "Porto", "Gdansk", "Leeds", "Graz", "Bergen", "Turin", "Ghent", "Malmo", "Cork"]
_TOPICS = [
    "Quarterly review",
    "Contract renewal",
    "Product demo",
    "Onboarding call",
    "Pricing follow-up",
    "Site visit",
    "Support escalation",
    "Kick-off meeting",
    "Budget planning",
    "Training session",
]

DEMO_TIME_ZONES: dict[tuple[str, str], int] = {
    ("contoso", "alice@contoso.example"): 92,  # UTC
    ("contoso", "bob@contoso.example"): 35,  # Eastern Standard Time (America/New_York)
    ("fabrikam", "alice@contoso.example"): 110,  # W. Europe Standard Time (Europe/Berlin)
    ("fabrikam", "carol@fabrikam.example"): 105,  # Romance Standard Time (Europe/Paris)
    ("fabrikam", "dave@fabrikam.example"): 235,  # Tokyo Standard Time (Asia/Tokyo)
}
"""Each user's usersettings.timezonecode per organization (codes: schema.TIME_ZONES)."""


def _local_midnight(server: DataverseServer, org: str, user_id: str, day: datetime) -> str:
    """Midnight of `day` in the user's zone, in UTC: what a UserLocal date-only column such as
    patternstartdate holds for that day (behavior-format-date-time-attribute.md)."""
    settings = server.store.table(org, "usersettingscollection").get(user_id)
    code = settings.values.get("timezonecode") if settings else 92
    zone = ZoneInfo(TIME_ZONES[int(code or 92)][1])
    local = datetime(day.year, day.month, day.day, tzinfo=zone)
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# (incoming, outgoing, appointments/contacts/tasks) delivery methods per (org, user).
_MAILBOX_METHODS = {
    ("contoso", "alice@contoso.example"): (1, 1, 0),
    ("fabrikam", "carol@fabrikam.example"): (1, 1, 0),
}
_DEFAULT_METHODS = (2, 2, 1)


def _count(base: int, scale: float) -> int:
    return 0 if scale <= 0 else max(1, round(base * scale))


def _moment(day: datetime, hours: float) -> str:
    return (day + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_party_ids(org: str, body: dict[str, Any]) -> dict[str, Any]:
    """Give inline parties stable ids too, so the whole demo is the same on every start."""
    for key, parties in body.items():
        if key.endswith("_activity_parties"):
            for n, party in enumerate(parties):
                party["activitypartyid"] = stable_id(
                    "demo", org, "party", body["activityid"], str(n)
                )
    return body


DEMO_ROLES: dict[tuple[str, str], Role] = {
    ("contoso", "bob@contoso.example"): BUSINESS_UNIT_READER,
}
"""Bob reads contoso at business-unit depth: no change tracking for him (strict mode), so his
sync runs on the `modifiedon` reader. Everyone else reads their organizations at Global depth."""


def seed(server: DataverseServer, scale: float) -> None:
    """Fill every organization of `server.store` and give each user their role."""
    for org in ORGANIZATIONS:
        for user in USERS:
            if org.unique_name in user.organizations:
                role = DEMO_ROLES.get((org.unique_name, user.upn), ORGANIZATION_READER)
                server.security.assign(org.unique_name, user.systemuser_id(org.unique_name), role)
        _seed_org(server, org.unique_name, scale)


def _ctx(server: DataverseServer, org: str, user_id: str | None) -> operations.Context:
    return operations.Context(server.store, org, server.api_url(org), user_id)


def _seed_org(server: DataverseServer, org: str, scale: float) -> None:
    rng = random.Random(f"sandbox-demo-{org}")
    users = [u for u in USERS if org in u.organizations]
    user_ids = [u.systemuser_id(org) for u in users]
    create = operations.create
    with server.store.transaction():
        _organization(server, org)
        for user in users:
            user_id = user.systemuser_id(org)
            create(
                _ctx(server, org, None),
                "systemusers",
                {
                    "systemuserid": user_id,
                    "firstname": user.first_name,
                    "lastname": user.last_name,
                    "domainname": user.upn,
                    "internalemailaddress": user.upn,
                    "windowsliveid": user.upn,
                    "azureactivedirectoryobjectid": user.object_id,
                    "isdisabled": False,
                    "accessmode": 0,
                    "businessunitid@odata.bind": f"/businessunits({stable_id('businessunit', org)})",
                },
            )
            incoming, outgoing, act = _MAILBOX_METHODS.get((org, user.upn), _DEFAULT_METHODS)
            mailbox_id = stable_id("mailbox", org, user.upn)
            create(
                _ctx(server, org, user_id),
                "mailboxes",
                {
                    "mailboxid": mailbox_id,
                    "name": user.display_name,
                    "emailaddress": user.upn,
                    "incomingemaildeliverymethod": incoming,
                    "outgoingemaildeliverymethod": outgoing,
                    "actdeliverymethod": act,
                    "incomingemailstatus": 0,
                    "outgoingemailstatus": 0,
                    "actstatus": 0,
                    "emailrouteraccessapproval": 1,
                    "isemailaddressapprovedbyo365admin": True,
                    "enabledforincomingemail": True,
                    "enabledforoutgoingemail": True,
                    "enabledforact": True,
                    "regardingobjectid_systemuser@odata.bind": f"/systemusers({user_id})",
                },
            )
            operations.update(
                _ctx(server, org, None),
                "systemusers",
                user_id,
                {"defaultmailbox@odata.bind": f"/mailboxes({mailbox_id})"},
            )
            operations.create(
                _ctx(server, org, None),
                "usersettingscollection",
                {
                    "systemuserid": user_id,
                    "timezonecode": DEMO_TIME_ZONES.get((org, user.upn), 92),
                    "localeid": 1033,
                    "uilanguageid": 1033,
                },
            )
        if scale <= 0:
            return
        accounts = _accounts(server, org, rng, user_ids, _count(100, scale))
        contacts = _contacts(server, org, rng, user_ids, accounts, _count(300, scale))
        _leads(server, org, rng, user_ids, _count(30, scale))
        _appointments(server, org, rng, user_ids, contacts, _count(60, scale))
        _recurring(server, org, rng, user_ids, contacts, _count(6, scale))
        _tasks(server, org, rng, user_ids, contacts, accounts, _count(80, scale))
        _emails(server, org, rng, users, contacts, _count(50, scale))
        # its own random sequence: the rows above stay as they were before opportunities came
        _opportunities(server, org, random.Random(f"{org}-opportunities"), user_ids, accounts,
                       _count(20, scale))  # fmt: skip


def _organization(server: DataverseServer, org: str) -> None:
    """The organization's one row (organization.md), keyed by WhoAmI's OrganizationId, with
    the attachment settings' defaults. The table refuses creates over the API, so it is put
    in the store directly, as the service makes it when an environment is provisioned."""
    from sandbox.dataverse.store import Row

    organization = next(o for o in ORGANIZATIONS if o.unique_name == org)
    now = operations.utc_now()
    server.store.put(
        org,
        "organizations",
        Row(
            {
                "organizationid": organization.id,
                "name": organization.friendly_name,
                "maxuploadfilesize": DEFAULT_MAX_UPLOAD_FILE_SIZE,
                "blockedattachments": DEFAULT_BLOCKED_ATTACHMENTS,
                "maxfolderbasedtrackingmappings": 25,
                "trackingprefix": "CRM:",
                "trackingtokeniddigits": 3,
                "emailcorrelationenabled": True,
                "createdon": now,
                "modifiedon": now,
                "versionnumber": server.store.next_version(),
            }
        ),
    )


def _accounts(
    server: DataverseServer, org: str, rng: random.Random, owners: list[str], n: int
) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        name = f"{_COMPANY[i % len(_COMPANY)]} {_KIND[(i // len(_COMPANY)) % len(_KIND)]}"
        if i >= len(_COMPANY) * len(_KIND):
            name += f" {i}"
        domain = name.lower().replace(" ", "") + ".example"
        row_id = stable_id("demo", org, "account", str(i))
        owner = rng.choice(owners)
        operations.create(
            _ctx(server, org, owner),
            "accounts",
            {
                "accountid": row_id,
                "name": name,
                "accountnumber": f"AC-{1000 + i}",
                "telephone1": f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
                "emailaddress1": f"info@{domain}",
                "websiteurl": f"https://www.{domain}",
                "address1_city": rng.choice(_CITY),
                "numberofemployees": rng.randint(5, 5000),
            },
        )
        out.append((row_id, domain))
    return out


def _contacts(
    server: DataverseServer,
    org: str,
    rng: random.Random,
    owners: list[str],
    accounts: list[tuple[str, str]],
    n: int,
) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        row_id = stable_id("demo", org, "contact", str(i))
        body: dict[str, Any] = {
            "contactid": row_id,
            "firstname": first,
            "lastname": last,
            "jobtitle": rng.choice(
                ["Buyer", "CTO", "Office manager", "Engineer", "Director", None]
            ),
            "telephone1": f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            "mobilephone": f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
            "address1_city": rng.choice(_CITY),
        }
        if accounts and rng.random() < 0.75:
            account_id, domain = rng.choice(accounts)
            body["parentcustomerid_account@odata.bind"] = f"/accounts({account_id})"
        else:
            domain = "mail.example"
        email = f"{first}.{last}{i}@{domain}".lower()
        body["emailaddress1"] = email
        if rng.random() < 0.2:
            body["birthdate"] = (
                f"{rng.randint(1960, 2000)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            )
        operations.create(_ctx(server, org, rng.choice(owners)), "contacts", body)
        out.append((row_id, email))
    return out


def _leads(
    server: DataverseServer, org: str, rng: random.Random, owners: list[str], n: int
) -> None:
    for i in range(n):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        operations.create(
            _ctx(server, org, rng.choice(owners)),
            "leads",
            {
                "leadid": stable_id("demo", org, "lead", str(i)),
                "subject": f"Interest in {rng.choice(_TOPICS).lower()}",
                "firstname": first,
                "lastname": last,
                "companyname": f"{rng.choice(_COMPANY)} {rng.choice(_KIND)}",
                "emailaddress1": f"{first}.{last}.lead{i}@prospect.example".lower(),
            },
        )


def _opportunities(
    server: DataverseServer,
    org: str,
    rng: random.Random,
    owners: list[str],
    accounts: list[tuple[str, str]],
    n: int,
) -> None:
    for i in range(n):
        account_id, _ = accounts[i % len(accounts)] if accounts else (None, "")
        row: dict[str, Any] = {
            "opportunityid": stable_id("demo", org, "opportunity", str(i)),
            "name": f"{rng.choice(_TOPICS)} deal {i + 1}",
            "estimatedvalue": float(rng.randint(5, 500) * 1000),
            "closeprobability": rng.choice((10, 25, 50, 75, 90)),
        }
        if account_id:
            row["customerid_account@odata.bind"] = f"/accounts({account_id})"
        operations.create(_ctx(server, org, rng.choice(owners)), "opportunities", row)


def _today() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def _appointments(
    server: DataverseServer,
    org: str,
    rng: random.Random,
    owners: list[str],
    contacts: list[tuple[str, str]],
    n: int,
) -> None:
    today = _today()
    for i in range(n):
        owner = rng.choice(owners)
        day = today + timedelta(days=rng.randint(-30, 30))
        all_day = rng.random() < 0.1
        start = 0.0 if all_day else rng.randint(16, 34) / 2
        hours = 24.0 if all_day else rng.choice([0.5, 1.0, 1.5])
        parties: list[dict[str, Any]] = [
            {"participationtypemask": 7, "partyid_systemuser@odata.bind": f"/systemusers({owner})"}
        ]
        for contact_id, _ in rng.sample(contacts, min(len(contacts), rng.randint(1, 3))):
            parties.append(
                {
                    "participationtypemask": 5,
                    "partyid_contact@odata.bind": f"/contacts({contact_id})",
                }
            )
        if rng.random() < 0.3:
            parties.append(
                {"participationtypemask": 6, "addressused": f"guest{i}@external.example"}
            )
        body: dict[str, Any] = {
            "activityid": stable_id("demo", org, "appointment", str(i)),
            "subject": rng.choice(_TOPICS),
            "description": "Agenda: status, next steps.",
            "location": rng.choice(["Teams", "Room 1", "Customer site", "Cafe", None]),
            "scheduledstart": _moment(day, start),
            "scheduledend": _moment(day, start + hours),
            "scheduleddurationminutes": int(hours * 60),
            "isalldayevent": all_day,
            "appointment_activity_parties": parties,
        }
        if contacts and rng.random() < 0.5:
            body["regardingobjectid_contact_appointment@odata.bind"] = (
                f"/contacts({parties[1]['partyid_contact@odata.bind'][10:-1]})"
            )
        operations.create(_ctx(server, org, owner), "appointments", _with_party_ids(org, body))


# recurrencepatterntype: 0 Daily, 1 Weekly, 2 Monthly, 3 Yearly;
# patternendtype: 1 No end date, 2 Occurrences, 3 Pattern end date.
_PATTERNS: list[dict[str, Any]] = [
    {
        "recurrencepatterntype": 0,
        "interval": 1,
        "isweekdaypattern": True,
        "daysofweekmask": 62,
        "patternendtype": 2,
        "occurrences": 10,
    },
    {"recurrencepatterntype": 1, "interval": 1, "daysofweekmask": 2, "patternendtype": 1},
    {
        "recurrencepatterntype": 1,
        "interval": 2,
        "daysofweekmask": 20,
        "patternendtype": 3,
        "end_days": 90,
    },
    {
        "recurrencepatterntype": 2,
        "interval": 1,
        "dayofmonth": 15,
        "isnthmonthly": False,
        "patternendtype": 2,
        "occurrences": 6,
    },
    {
        "recurrencepatterntype": 2,
        "interval": 1,
        "isnthmonthly": True,
        "instance": 1,
        "daysofweekmask": 2,
        "patternendtype": 1,
    },
    {
        "recurrencepatterntype": 3,
        "interval": 1,
        "monthofyear": 3,
        "dayofmonth": 1,
        "isnthyearly": False,
        "patternendtype": 1,
    },
]


def _recurring(
    server: DataverseServer,
    org: str,
    rng: random.Random,
    owners: list[str],
    contacts: list[tuple[str, str]],
    n: int,
) -> None:
    today = _today()
    for i in range(n):
        pattern = dict(_PATTERNS[i % len(_PATTERNS)])
        owner = rng.choice(owners)
        first_day = today + timedelta(days=rng.randint(-20, 5))
        start_hour = rng.randint(8, 16)
        minutes = rng.choice([30, 60])
        end_days = pattern.pop("end_days", None)
        body: dict[str, Any] = {
            "activityid": stable_id("demo", org, "recurringappointmentmaster", str(i)),
            "subject": f"Recurring: {rng.choice(_TOPICS)}",
            "location": "Teams",
            "starttime": _moment(first_day, start_hour),
            "endtime": _moment(first_day, start_hour + minutes / 60),
            "duration": minutes,
            "patternstartdate": _local_midnight(server, org, owner, first_day),
            "firstdayofweek": 1,
            "isnthmonthly": False,
            "isnthyearly": False,
            "isregenerate": False,
            "isweekdaypattern": False,
            "recurringappointmentmaster_activity_parties": [
                {
                    "participationtypemask": 7,
                    "partyid_systemuser@odata.bind": f"/systemusers({owner})",
                },
                {
                    "participationtypemask": 5,
                    "partyid_contact@odata.bind": f"/contacts({rng.choice(contacts)[0]})",
                },
            ],
            **pattern,
        }
        if end_days:
            body["patternenddate"] = _local_midnight(
                server, org, owner, first_day + timedelta(days=end_days)
            )
        operations.create(
            _ctx(server, org, owner), "recurringappointmentmasters", _with_party_ids(org, body)
        )


def _tasks(
    server: DataverseServer,
    org: str,
    rng: random.Random,
    owners: list[str],
    contacts: list[tuple[str, str]],
    accounts: list[tuple[str, str]],
    n: int,
) -> None:
    today = _today()
    for i in range(n):
        state = rng.choice([(0, 2), (0, 2), (0, 3), (1, 5)])
        body: dict[str, Any] = {
            "activityid": stable_id("demo", org, "task", str(i)),
            "subject": f"{rng.choice(['Call', 'Send quote to', 'Follow up with', 'Prepare for'])} {rng.choice(_FIRST)}",
            "description": "Created by the sandbox.",
            "scheduledend": _moment(today + timedelta(days=rng.randint(-10, 20)), 17),
            "prioritycode": rng.choice([0, 1, 1, 2]),
            "percentcomplete": 100 if state[0] == 1 else rng.choice([0, 0, 25, 50]),
            "statecode": state[0],
            "statuscode": state[1],
        }
        if contacts and rng.random() < 0.5:
            body["regardingobjectid_contact_task@odata.bind"] = (
                f"/contacts({rng.choice(contacts)[0]})"
            )
        elif accounts and rng.random() < 0.5:
            body["regardingobjectid_account_task@odata.bind"] = (
                f"/accounts({rng.choice(accounts)[0]})"
            )
        operations.create(_ctx(server, org, rng.choice(owners)), "tasks", body)


def _emails(
    server: DataverseServer,
    org: str,
    rng: random.Random,
    users: list[Any],
    contacts: list[tuple[str, str]],
    n: int,
) -> None:
    today = _today()
    for i in range(n):
        user = rng.choice(users)
        user_id = user.systemuser_id(org)
        contact_id, contact_email = rng.choice(contacts)
        outgoing = rng.random() < 0.5
        me = {"partyid_systemuser@odata.bind": f"/systemusers({user_id})"}
        them = {"partyid_contact@odata.bind": f"/contacts({contact_id})"}
        sent = _moment(today - timedelta(days=rng.randint(0, 60)), rng.randint(16, 36) / 2)
        email_id = stable_id("demo", org, "email", str(i))
        ctx = _ctx(server, org, user_id)
        operations.create(
            ctx,
            "emails",
            _with_party_ids(
                org,
                {
                    "activityid": email_id,
                    "subject": f"Re: {rng.choice(_TOPICS)}",
                    "description": "<p>Hello, following up on our conversation.</p>",
                    "directioncode": outgoing,
                    "messageid": f"<{stable_id('demo-msg', org, str(i))}@sandbox.example>",
                    "sender": user.upn if outgoing else contact_email,
                    "torecipients": contact_email if outgoing else user.upn,
                    "actualend": sent,
                    "regardingobjectid_contact_email@odata.bind": f"/contacts({contact_id})",
                    "email_activity_parties": [
                        {"participationtypemask": 1, **(me if outgoing else them)},
                        {"participationtypemask": 2, **(them if outgoing else me)},
                    ],
                },
            ),
        )
        # Sent / Received (email.md StatusCode 3 / 4, state Completed): a state is set by an
        # update, and `senton` (read-only) is the service's own record of the sending.
        row = operations.update(
            ctx, "emails", email_id, {"statecode": 1, "statuscode": 3 if outgoing else 4}
        )
        row.values["senton"] = sent
