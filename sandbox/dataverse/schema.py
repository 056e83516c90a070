"""The tables the sandbox serves: columns (typed), lookups and collection navigation properties.

Column names follow Microsoft's entity reference (powerapps-docs `reference/entities/*.md`); only
the columns a mailbox sync plausibly touches are listed. Unknown names get the real errors, so a
client that works here does not send columns the real service would reject.

For the tables whose reference we follow column by column (appointment, recurringappointmentmaster,
task, usersettings: the `rules` of their EntityDef), each column also carries the reference's
IsValidForCreate / IsValidForUpdate (the "Read-only columns/attributes" lists and the rows that
say False), and every date-time column its DateTimeBehavior and Format, which
`EntityDefinitions(...)/Attributes` serves as metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Column types: str, memo, int, dec, bool, dt (date and time, UTC), date (date only), guid, pick.

_SYSTEM = (
    "createdon:dt modifiedon:dt versionnumber:int overriddencreatedon:dt importsequencenumber:int"
)
_ADDRESS = " ".join(
    f"address{n}_{part}"
    for n in (1, 2)
    for part in (
        "line1",
        "line2",
        "line3",
        "city",
        "stateorprovince",
        "postalcode",
        "country",
        "county",
        "telephone1",
        "name",
    )
)
_ACTIVITY = (
    "subject description:memo scheduledstart:dt scheduledend:dt actualstart:dt actualend:dt "
    "actualdurationminutes:int scheduleddurationminutes:int prioritycode:pick category subcategory "
    "activitytypecode isregularactivity:bool isbilled:bool isworkflowcreated:bool "
    "statecode:pick statuscode:pick exchangeitemid exchangeweblink sortdate:dt senton:dt "
    "timezoneruleversionnumber:int utcconversiontimezonecode:int"
)
_APPOINTMENT_LIKE = (
    "location isalldayevent:bool globalobjectid outlookownerapptid:int ismapiprivate:bool "
    "isonlinemeeting:bool onlinemeetingjoinurl onlinemeetingid onlinemeetingtype:pick "
    "isunsafe:int attachmentcount:int modifiedfieldsmask"
)


def _columns(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in spec.split():
        name, _, kind = item.partition(":")
        out[name] = kind or "str"
    return out


@dataclass(frozen=True)
class Lookup:
    """A lookup column `_<column>_value` and the navigation properties that set it."""

    column: str
    navs: dict[str, str]
    """navigation property → target entity set ('activitypointers' = any activity table)."""
    readonly: bool = False


@dataclass(frozen=True)
class Collection:
    """A one-to-many navigation property: child set and the child's lookup column pointing back."""

    name: str
    child_set: str
    child_lookup: str


USER_LOCAL, DATE_ONLY, TIME_ZONE_INDEPENDENT = "UserLocal", "DateOnly", "TimeZoneIndependent"
"""The three DateTimeBehavior values (behavior-format-date-time-attribute.md)."""
DATE_AND_TIME = "DateAndTime"
"""A DateTimeFormat value; the other one is "DateOnly"."""


@dataclass(frozen=True)
class Rules:
    """What a table's reference says beyond names and types: columns false for IsValidForCreate
    and/or IsValidForUpdate, and date-time columns whose behaviour or format is not the default
    (UserLocal, DateAndTime; a `date` column is DateOnly/DateOnly)."""

    read_only: frozenset[str] = frozenset()
    not_for_create: frozenset[str] = frozenset()
    not_for_update: frozenset[str] = frozenset()
    dates: dict[str, tuple[str, str]] = field(default_factory=dict)
    """column → (DateTimeBehavior, Format)."""
    creatable: bool = True
    """False for tables whose reference lists no Create message (usersettings)."""


@dataclass
class EntityDef:
    entity_set: str
    logical_name: str
    key: str
    columns: dict[str, str]
    lookups: list[Lookup] = field(default_factory=list)
    collections: list[Collection] = field(default_factory=list)
    default_state: tuple[int, int] | None = (0, 1)
    owned: bool = True
    computes_fullname: bool = False
    rules: Rules | None = None
    """The reference's column rules, enforced on writes; None: a table the sandbox keeps lenient
    (system columns are ignored on writes, as before)."""

    def __post_init__(self) -> None:
        self.columns[self.key] = "guid"
        for lookup in self.lookups:
            self.columns[f"_{lookup.column}_value"] = "guid"
        self.nav_index: dict[str, tuple[Lookup, str]] = {
            nav: (lookup, target) for lookup in self.lookups for nav, target in lookup.navs.items()
        }
        self.collection_index = {c.name: c for c in self.collections}
        self.lookup_index = {lookup.column: lookup for lookup in self.lookups}

    def date_rule(self, column: str) -> tuple[str, str]:
        """(DateTimeBehavior, Format) of a `dt` or `date` column."""
        if self.rules and column in self.rules.dates:
            return self.rules.dates[column]
        if self.columns.get(column) == "date":
            return DATE_ONLY, DATE_ONLY
        return USER_LOCAL, DATE_AND_TIME

    def valid_for_create(self, column: str) -> bool:
        rules = self.rules
        return rules is None or not (column in rules.read_only or column in rules.not_for_create)

    def valid_for_update(self, column: str) -> bool:
        rules = self.rules
        if column == self.key:
            return False
        return rules is None or not (column in rules.read_only or column in rules.not_for_update)


def _standard_lookups(owned: bool = True) -> list[Lookup]:
    lookups = [
        Lookup("createdby", {"createdby": "systemusers"}, readonly=True),
        Lookup("modifiedby", {"modifiedby": "systemusers"}, readonly=True),
    ]
    if owned:
        lookups.append(Lookup("ownerid", {"ownerid": "systemusers"}))
        lookups.append(Lookup("owningbusinessunit", {"owningbusinessunit": "businessunits"}, True))
    return lookups


def _regarding(activity: str) -> Lookup:
    return Lookup(
        "regardingobjectid",
        {
            f"regardingobjectid_{t}_{activity}": s
            for t, s in (
                ("contact", "contacts"),
                ("account", "accounts"),
                ("lead", "leads"),
                ("opportunity", "opportunities"),
            )
        },
    )


def _activity(
    entity_set: str,
    logical: str,
    extra: str,
    state: tuple[int, int],
    parties: bool = True,
    lookups: tuple[Lookup, ...] = (),
    children: tuple[Collection, ...] = (),
    rules: Rules | None = None,
) -> EntityDef:
    collections = list(children)
    if parties:
        collections.append(
            Collection(f"{logical}_activity_parties", "activityparties", "activityid")
        )
    collections.append(
        Collection(f"{logical}_activity_mime_attachment", "activitymimeattachments", "objectid")
    )
    return EntityDef(
        entity_set,
        logical,
        "activityid",
        _columns(f"{_ACTIVITY} {extra} {_SYSTEM}"),
        [*_standard_lookups(), _regarding(logical), *lookups],
        collections,
        default_state=state,
        rules=rules,
    )


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The "Read-only columns/attributes" lists (false for both IsValidForCreate and IsValidForUpdate)
# and the columns whose reference rows say IsValidForCreate/IsValidForUpdate False, by logical
# name, of the columns this sandbox has: powerapps-docs reference/entities/appointment.md,
# recurringappointmentmaster.md, task.md.
_ACTIVITY_READ_ONLY = (
    "activitytypecode createdby createdon createdonbehalfby exchangerate isregularactivity "
    "modifiedby modifiedon modifiedonbehalfby onholdtime owningbusinessunit owningteam "
    "owninguser versionnumber"
)
APPOINTMENT_RULES = Rules(
    read_only=_names(
        f"{_ACTIVITY_READ_ONLY} attachmentcount instancetypecode isunsafe modifiedfieldsmask "
        "originalstartdate safedescription seriesid"
    ),
    not_for_create=_names("statecode"),
    not_for_update=_names("importsequencenumber overriddencreatedon"),
    dates={"overriddencreatedon": (USER_LOCAL, DATE_ONLY)},
)
RECURRING_MASTER_RULES = Rules(
    read_only=_names(
        f"{_ACTIVITY_READ_ONLY} deletedexceptionslist expansionstatecode groupid instancetypecode "
        "isunsafe lastexpandedinstancedate nextexpansioninstancedate ruleid safedescription "
        "scheduledend scheduledstart"
    ),
    not_for_update=_names("firstdayofweek importsequencenumber overriddencreatedon"),
    dates={
        "patternstartdate": (USER_LOCAL, DATE_ONLY),
        "patternenddate": (USER_LOCAL, DATE_ONLY),
        "effectivestartdate": (USER_LOCAL, DATE_ONLY),
        "overriddencreatedon": (USER_LOCAL, DATE_ONLY),
    },
)
TASK_RULES = Rules(
    read_only=_names(f"{_ACTIVITY_READ_ONLY} scheduleddurationminutes"),
    dates={
        "actualstart": (USER_LOCAL, DATE_ONLY),
        "actualend": (USER_LOCAL, DATE_ONLY),
        "overriddencreatedon": (USER_LOCAL, DATE_ONLY),
    },
)
USERSETTINGS_RULES = Rules(creatable=False)
"""usersettings.md lists Retrieve, RetrieveMultiple and Update only."""

# --- email tracking (h1b): emails, their parties and attachments, the organization row ---------
EMAIL_RULES = Rules(
    read_only=_names(
        f"{_ACTIVITY_READ_ONLY} attachmentcount compressed conversationindex correlationmethod "
        "emailsender inreplyto isunsafe safedescription scheduleddurationminutes senton"
    ),
    not_for_create=_names("statecode"),
    not_for_update=_names("importsequencenumber overriddencreatedon"),
    dates={
        "actualstart": (USER_LOCAL, DATE_ONLY),
        "actualend": (USER_LOCAL, DATE_ONLY),
        "overriddencreatedon": (USER_LOCAL, DATE_ONLY),
    },
)
"""email.md: its "Read-only columns/attributes" list (ConversationIndex, InReplyTo, SentOn,
AttachmentCount, … are set by the service, never by a client), ActualStart/ActualEnd
UserLocal with Format DateOnly. The page lists StateCode among the writable columns without
saying for which message: as for the other activities (appointment.md: "IsValidForCreate
False"), a state is set by an update after the create."""
ATTACHMENT_RULES = Rules(read_only=_names("filesize versionnumber"))
"""activitymimeattachment.md: FileSize and VersionNumber are read-only (the service computes
the size from the body)."""
ACTIVITYPARTY_RULES = Rules(
    read_only=_names(
        "addressusedemailcolumnnumber donotemail donotfax donotphone donotpostalmail "
        "instancetypecode ispartydeleted scheduledend scheduledstart versionnumber"
    ),
    creatable=False,
)
"""activityparty.md: the table's only message is RetrieveMultiple (no Create, no Delete):
parties are written inline with their activity, or replaced with `PUT <activity>(<id>)/
<activity>_activity_parties` (associate-disassociate-entities-using-web-api.md)."""
ORGANIZATION_RULES = Rules(creatable=False)
"""organization.md lists Retrieve, RetrieveMultiple and Update (no Create, no Delete)."""
DEFAULT_MAX_UPLOAD_FILE_SIZE = 5_242_880
"""organization.maxuploadfilesize's default: "5 MB (5242880 bytes)" (attachment-annotation-
files.md, File size limits)."""
DEFAULT_BLOCKED_ATTACHMENTS = (
    "ade;adp;app;asa;ashx;asmx;asp;bas;bat;cdx;cer;chm;class;cmd;com;config;cpl;crt;csh;dll;exe;"
    "fxp;hlp;hta;htr;htw;ida;idc;idq;inf;ins;isp;its;jar;js;jse;ksh;lnk;mad;maf;mag;mam;maq;mar;"
    "mas;mat;mau;mav;maw;mda;mdb;mde;mdt;mdw;mdz;msc;msh;msh1;msh1xml;msh2;msh2xml;mshxml;msi;"
    "msp;mst;ops;pcd;pif;prf;prg;printer;pst;reg;rem;scf;scr;sct;shb;shs;shtm;shtml;soap;stm;"
    "tmp;url;vb;vbe;vbs;vsmacros;vss;vst;vsw;ws;wsc;wsf;wsh;svg"
)
"""organization.blockedattachments' default value (files-images-overview.md, "Block files by
extension")."""

SERIES_COLUMNS = _names(
    "recurrencepatterntype interval daysofweekmask dayofmonth instance monthofyear "
    "firstdayofweek patternstartdate patternenddate patternendtype occurrences starttime endtime "
    "duration isnthmonthly isnthyearly isweekdaypattern utcconversiontimezonecode"
)
"""A master's recurrence information: changing one of them re-expands the series."""


_PERSON = (
    "firstname middlename lastname fullname nickname salutation suffix jobtitle department "
    "emailaddress1 emailaddress2 emailaddress3 telephone1 telephone2 telephone3 mobilephone fax "
    "pager websiteurl description:memo yomifirstname yomilastname"
)

ENTITIES: dict[str, EntityDef] = {}


def _register(*defs: EntityDef) -> None:
    for entity in defs:
        ENTITIES[entity.entity_set] = entity


_register(
    EntityDef(
        "contacts",
        "contact",
        "contactid",
        _columns(
            f"{_PERSON} {_ADDRESS} birthdate:date anniversary:date gendercode:pick "
            "familystatuscode:pick spousesname assistantname assistantphone managername "
            "managerphone governmentid donotemail:bool donotphone:bool "
            "preferredcontactmethodcode:pick company statecode:pick statuscode:pick "
            f"{_SYSTEM}"
        ),
        [
            *_standard_lookups(),
            Lookup(
                "parentcustomerid",
                {"parentcustomerid_account": "accounts", "parentcustomerid_contact": "contacts"},
            ),
        ],
        computes_fullname=True,
    ),
    EntityDef(
        "accounts",
        "account",
        "accountid",
        _columns(
            f"name accountnumber telephone1 telephone2 telephone3 fax emailaddress1 emailaddress2 "
            f"emailaddress3 websiteurl description:memo industrycode:pick revenue:dec "
            f"numberofemployees:int tickersymbol {_ADDRESS} statecode:pick statuscode:pick "
            f"{_SYSTEM}"
        ),
        [
            *_standard_lookups(),
            Lookup("primarycontactid", {"primarycontactid": "contacts"}),
            Lookup("parentaccountid", {"parentaccountid": "accounts"}),
        ],
    ),
    EntityDef(
        "leads",
        "lead",
        "leadid",
        _columns(
            f"subject companyname {_PERSON} {_ADDRESS} leadsourcecode:pick "
            f"leadqualitycode:pick statecode:pick statuscode:pick {_SYSTEM}"
        ),
        [
            *_standard_lookups(),
            Lookup("parentaccountid", {"parentaccountid": "accounts"}),
            Lookup("parentcontactid", {"parentcontactid": "contacts"}),
            Lookup(
                "customerid", {"customerid_account": "accounts", "customerid_contact": "contacts"}
            ),
        ],
        computes_fullname=True,
    ),
    # opportunity.md (Sales): `name` is the primary name; estimatedvalue is Money (a decimal
    # here), customerid a Customer lookup to an account or a contact
    EntityDef(
        "opportunities",
        "opportunity",
        "opportunityid",
        _columns(
            f"name description:memo estimatedvalue:dec estimatedclosedate:date "
            f"closeprobability:int statecode:pick statuscode:pick {_SYSTEM}"
        ),
        [
            *_standard_lookups(),
            Lookup("parentaccountid", {"parentaccountid": "accounts"}),
            Lookup("parentcontactid", {"parentcontactid": "contacts"}),
            Lookup(
                "customerid", {"customerid_account": "accounts", "customerid_contact": "contacts"}
            ),
        ],
    ),
    EntityDef(
        "systemusers",
        "systemuser",
        "systemuserid",
        _columns(
            "fullname firstname middlename lastname domainname internalemailaddress "
            "personalemailaddress windowsliveid azureactivedirectoryobjectid:guid isdisabled:bool "
            "accessmode:pick title jobtitle mobilephone address1_telephone1 "
            f"{_SYSTEM}"
        ),
        [
            *_standard_lookups(owned=False),
            Lookup("defaultmailbox", {"defaultmailbox": "mailboxes"}),
            Lookup("businessunitid", {"businessunitid": "businessunits"}),
        ],
        default_state=None,
        owned=False,
        computes_fullname=True,
    ),
    EntityDef(
        "mailboxes",
        "mailbox",
        "mailboxid",
        _columns(
            "name emailaddress incomingemaildeliverymethod:pick outgoingemaildeliverymethod:pick "
            "actdeliverymethod:pick incomingemailstatus:pick outgoingemailstatus:pick actstatus:pick "
            "emailrouteraccessapproval:pick isemailaddressapprovedbyo365admin:bool "
            "testemailconfigurationscheduled:bool testemailconfigurationretrycount:int "
            "enabledforincomingemail:bool enabledforoutgoingemail:bool enabledforact:bool "
            "ewsurl isforwardmailbox:bool isserviceaccount:bool username "
            "processemailreceivedafter:dt processingstatecode:int statecode:pick statuscode:pick "
            f"{_SYSTEM}"
        ),
        [
            *_standard_lookups(),
            Lookup("regardingobjectid", {"regardingobjectid_systemuser": "systemusers"}),
        ],
    ),
    _activity(
        "appointments",
        "appointment",
        f"{_APPOINTMENT_LIKE} instancetypecode:pick originalstartdate:dt lastonholdtime:dt "
        "onholdtime:int",
        (3, 5),
        # An occurrence of a series (instancetypecode 2 instance, 3 exception) points to its
        # recurringappointmentmaster (relationship recurringappointmentmaster_appointment).
        lookups=(
            Lookup(
                "seriesid", {"seriesid_recurringappointmentmaster": "recurringappointmentmasters"}
            ),
        ),
        rules=APPOINTMENT_RULES,
    ),
    _activity(
        "recurringappointmentmasters",
        "recurringappointmentmaster",
        f"{_APPOINTMENT_LIKE} recurrencepatterntype:pick interval:int daysofweekmask:int "
        "dayofmonth:int instance:pick monthofyear:pick firstdayofweek:int patternstartdate:dt "
        "patternenddate:dt patternendtype:pick occurrences:int starttime:dt endtime:dt "
        "duration:int isnthmonthly:bool isnthyearly:bool isregenerate:bool "
        "isweekdaypattern:bool seriesstatus:bool effectivestartdate:dt effectiveenddate:dt "
        "expansionstatecode:pick instancetypecode:pick deletedexceptionslist:memo "
        "nextexpansioninstancedate:dt lastexpandedinstancedate:dt",
        (3, 5),
        children=(
            Collection("recurringappointmentmaster_appointment", "appointments", "seriesid"),
        ),
        rules=RECURRING_MASTER_RULES,
    ),
    _activity(
        "tasks",
        "task",
        "percentcomplete:int crmtaskassigneduniqueid:guid lastonholdtime:dt onholdtime:int",
        (0, 2),
        rules=TASK_RULES,
    ),
    _activity(
        "emails",
        "email",
        "sender torecipients directioncode:bool messageid inreplyto conversationindex "
        "trackingtoken mimetype attachmentcount:int readreceiptrequested:bool "
        "deliveryreceiptrequested:bool deliveryprioritycode:pick submittedby "
        "emailsender:guid isunsafe:int safedescription:memo conversationtrackingid:guid "
        "emailtrackingid:guid baseconversationindexhash:int notifications:pick compressed:bool "
        "correlationmethod:pick",
        (0, 1),
        rules=EMAIL_RULES,
    ),
    EntityDef(
        "activityparties",
        "activityparty",
        "activitypartyid",
        _columns(
            "participationtypemask:pick addressused addressusedemailcolumnnumber:int "
            "ispartydeleted:bool instancetypecode:pick donotemail:bool donotphone:bool "
            "donotfax:bool donotpostalmail:bool scheduledstart:dt scheduledend:dt effort:dec "
            "exchangeentryid createdon:dt modifiedon:dt versionnumber:int"
        ),
        [
            Lookup(
                "activityid",
                {
                    "activityid_appointment": "appointments",
                    "activityid_email": "emails",
                    "activityid_task": "tasks",
                    "activityid_recurringappointmentmaster": "recurringappointmentmasters",
                    "activityid_activitypointer": "activitypointers",
                },
            ),
            Lookup(
                "partyid",
                {
                    "partyid_contact": "contacts",
                    "partyid_account": "accounts",
                    "partyid_lead": "leads",
                    "partyid_systemuser": "systemusers",
                },
            ),
            Lookup("ownerid", {"ownerid": "systemusers"}, readonly=True),
        ],
        default_state=None,
        owned=False,
        rules=ACTIVITYPARTY_RULES,
    ),
    EntityDef(
        "activitymimeattachments",
        "activitymimeattachment",
        "activitymimeattachmentid",
        _columns(
            "filename mimetype body:memo filesize:int subject attachmentnumber:int "
            f"objecttypecode attachmentcontentid {_SYSTEM}"
        ),
        [
            *_standard_lookups(owned=False),
            Lookup(
                "objectid",
                {
                    "objectid_activitypointer": "activitypointers",
                    "objectid_email": "emails",
                    "objectid_appointment": "appointments",
                    "objectid_task": "tasks",
                },
            ),
        ],
        default_state=None,
        owned=False,
        rules=ATTACHMENT_RULES,
    ),
    # The organization row (organization.md; one per organization, keyed by WhoAmI's
    # OrganizationId): the attachment limits email tracking must respect.
    EntityDef(
        "organizations",
        "organization",
        "organizationid",
        _columns(
            "name maxuploadfilesize:int blockedattachments:memo maxfolderbasedtrackingmappings:int "
            "trackingprefix trackingtokeniddigits:int emailcorrelationenabled:bool "
            "createdon:dt modifiedon:dt versionnumber:int"
        ),
        [],
        default_state=None,
        owned=False,
        rules=ORGANIZATION_RULES,
    ),
    # A user's preferences (reference/entities/usersettings.md), keyed by the user's
    # systemuserid; `timezonecode` is the zone UserLocal dates are shown in.
    EntityDef(
        "usersettingscollection",
        "usersettings",
        "systemuserid",
        _columns(
            "timezonecode:int timezonebias:int timezonedaylightbias:int localeid:int "
            "uilanguageid:int helplanguageid:int dateformatstring timeformatstring "
            "dateseparator timeseparator paginglimit:int versionnumber:int"
        ),
        [Lookup("businessunitid", {"businessunitid": "businessunits"})],
        default_state=None,
        owned=False,
        rules=USERSETTINGS_RULES,
    ),
    # Notes: a system table every organization has (reference/entities/annotation.md). The
    # POP3 synchronizing-computer claim lives in one; no custom table exists (a real
    # organization has none until someone customizes it).
    EntityDef(
        "annotations",
        "annotation",
        "annotationid",
        _columns(
            "subject notetext:memo isdocument:bool filename mimetype documentbody:memo "
            f"filesize:int langid objecttypecode stepid {_SYSTEM}"
        ),
        [
            *_standard_lookups(),
            Lookup(
                "objectid",
                {
                    "objectid_contact": "contacts",
                    "objectid_account": "accounts",
                    "objectid_lead": "leads",
                    "objectid_mailbox": "mailboxes",
                    "objectid_appointment": "appointments",
                    "objectid_task": "tasks",
                    "objectid_email": "emails",
                    "objectid_recurringappointmentmaster": "recurringappointmentmasters",
                },
            ),
        ],
        default_state=None,
    ),
)

ACTIVITY_SETS = ("appointments", "recurringappointmentmasters", "tasks", "emails")
"""The tables an `activitypointers(<id>)` reference may point into."""
LOGICAL_TO_SET = {e.logical_name: e.entity_set for e in ENTITIES.values()}

TIME_ZONES: dict[int, tuple[str, str]] = {
    0: ("Dateline Standard Time", "Etc/GMT+12"),
    2: ("Hawaiian Standard Time", "Pacific/Honolulu"),
    3: ("Alaskan Standard Time", "America/Anchorage"),
    4: ("Pacific Standard Time", "America/Los_Angeles"),
    10: ("Mountain Standard Time", "America/Denver"),
    15: ("US Mountain Standard Time", "America/Phoenix"),
    20: ("Central Standard Time", "America/Chicago"),
    25: ("Canada Central Standard Time", "America/Regina"),
    35: ("Eastern Standard Time", "America/New_York"),
    50: ("Atlantic Standard Time", "America/Halifax"),
    65: ("E. South America Standard Time", "America/Sao_Paulo"),
    85: ("GMT Standard Time", "Europe/London"),
    90: ("Greenwich Standard Time", "Atlantic/Reykjavik"),
    92: ("UTC", "Etc/UTC"),
    95: ("Central Europe Standard Time", "Europe/Budapest"),
    100: ("Central European Standard Time", "Europe/Warsaw"),
    105: ("Romance Standard Time", "Europe/Paris"),
    110: ("W. Europe Standard Time", "Europe/Berlin"),
    120: ("Egypt Standard Time", "Africa/Cairo"),
    125: ("FLE Standard Time", "Europe/Kiev"),
    130: ("GTB Standard Time", "Europe/Bucharest"),
    135: ("Israel Standard Time", "Asia/Jerusalem"),
    140: ("South Africa Standard Time", "Africa/Johannesburg"),
    145: ("Russian Standard Time", "Europe/Moscow"),
    150: ("Arab Standard Time", "Asia/Riyadh"),
    190: ("India Standard Time", "Asia/Calcutta"),
    210: ("China Standard Time", "Asia/Shanghai"),
    215: ("Singapore Standard Time", "Asia/Singapore"),
    225: ("W. Australia Standard Time", "Australia/Perth"),
    230: ("Korea Standard Time", "Asia/Seoul"),
    235: ("Tokyo Standard Time", "Asia/Tokyo"),
    255: ("AUS Eastern Standard Time", "Australia/Sydney"),
    290: ("New Zealand Standard Time", "Pacific/Auckland"),
}
"""The time zones the sandbox knows: usersettings.timezonecode → (timezonedefinition
standardname, IANA zone). The docs give no list (usersettings.md: "use the
TimeZoneDefinition.TimeZoneCode column"); the codes are Microsoft's Time Zone Index Values
(support.microsoft.com/help/973627) in decimal, 92 (UTC) as Dataverse's timezonedefinitions
carry it; the IANA zones are CLDR's windowsZones mapping of the standard names."""
