"""The tables the sandbox serves: columns (typed), lookups and collection navigation properties.

Column names follow Microsoft's entity reference (powerapps-docs `reference/entities/*.md`); only
the columns a mailbox sync plausibly touches are listed. Unknown names get the real errors, so a
client that works here does not send columns the real service would reject.
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

    def __post_init__(self) -> None:
        self.columns[self.key] = "guid"
        for lookup in self.lookups:
            self.columns[f"_{lookup.column}_value"] = "guid"
        self.nav_index: dict[str, tuple[Lookup, str]] = {
            nav: (lookup, target) for lookup in self.lookups for nav, target in lookup.navs.items()
        }
        self.collection_index = {c.name: c for c in self.collections}
        self.lookup_index = {lookup.column: lookup for lookup in self.lookups}


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
        {f"regardingobjectid_{t}_{activity}": f"{t}s" for t in ("contact", "account", "lead")},
    )


def _activity(
    entity_set: str,
    logical: str,
    extra: str,
    state: tuple[int, int],
    parties: bool = True,
    lookups: tuple[Lookup, ...] = (),
    children: tuple[Collection, ...] = (),
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
    )


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
        f"{_APPOINTMENT_LIKE} instancetypecode:pick originalstartdate:dt",
        (3, 5),
        # An occurrence of a series (instancetypecode 2 instance, 3 exception) points to its
        # recurringappointmentmaster (relationship recurringappointmentmaster_appointment).
        lookups=(
            Lookup(
                "seriesid", {"seriesid_recurringappointmentmaster": "recurringappointmentmasters"}
            ),
        ),
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
    ),
    _activity(
        "tasks",
        "task",
        "percentcomplete:int crmtaskassigneduniqueid:guid",
        (0, 2),
    ),
    _activity(
        "emails",
        "email",
        "sender torecipients directioncode:bool messageid inreplyto conversationindex "
        "trackingtoken mimetype attachmentcount:int readreceiptrequested:bool "
        "deliveryreceiptrequested:bool deliveryprioritycode:pick submittedby "
        "emailsender:guid isunsafe:int safedescription:memo conversationtrackingid:guid "
        "emailtrackingid:guid baseconversationindexhash:int notifications:pick compressed:bool",
        (0, 1),
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
    ),
    EntityDef(
        "mbs_syncclaims",
        "mbs_syncclaim",
        "mbs_syncclaimid",
        _columns(
            "mbs_name mbs_systemuserid mbs_instanceid mbs_instancename statecode:pick "
            f"statuscode:pick {_SYSTEM}"
        ),
        _standard_lookups(),
    ),
)

ACTIVITY_SETS = ("appointments", "recurringappointmentmasters", "tasks", "emails")
"""The tables an `activitypointers(<id>)` reference may point into."""
LOGICAL_TO_SET = {e.logical_name: e.entity_set for e in ENTITIES.values()}
