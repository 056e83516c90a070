"""Security roles and per-table change tracking of the sandbox Dataverse, and the refusals the
real service answers when either is missing.

What it models (strict, the default):

- A role gives each user a read depth per table: Basic (user), Local (business unit), Deep
  (parent: child business units) or Global (organization), or None. Microsoft's
  `PrivilegeDepth`: Basic "only … objects that are owned by, or shared with, the user"; Local
  "… in the user's current business unit"; Global "… anywhere within the organization".
  Each sandbox organization has one business unit, so Local and Deep read every row; Basic
  reads the user's own rows; None is refused with "Principal user … is missing prvRead…
  privilege" (0x80040220).
- Change tracking (`Prefer: odata.track-changes`, delta links) needs organization-level
  (Global) read: "The calling user must have organization level read access to the table. If
  the user has limited read access, the system throws a privilege check error."
  (powerapps-docs `developer/data-platform/use-change-tracking-synchronize-data-external-systems.md`);
  the error text is the one users report (`SecLib::CheckPrivilege failed. … Required Depth:
  Global …`, MicrosoftDocs/powerapps-docs issue #3883).
- A table must have change tracking enabled ("Before retrieving the changes for a table, make
  sure that the change tracking is enabled for that table", same page); otherwise
  0x80072491 `ChangeTrackingNotEnabledForEntity` "Entity {0} isn't enabled for change
  tracking." (the Web service error codes list).
- `systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivilegeByPrivilegeName(PrivilegeName='…')`
  answers `RolePrivileges` (Depth, PrivilegeId, BusinessUnitId, PrivilegeName), empty when the
  user lacks the privilege (powerapps-docs `developer/data-platform/security-access-coding.md`).

Lenient mode (`strict=False`, `run.py sandbox --lenient`) refuses nothing of this: every user
reads every table at Global depth and every table is change-tracked, as before this module.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from sandbox.dataverse.errors import ODataError
from sandbox.dataverse.identity_bridge import business_unit_id
from sandbox.dataverse.schema import EntityDef
from sandbox.identity import stable_id

DEPTHS = ("None", "Basic", "Local", "Deep", "Global")
"""The Web API's PrivilegeDepth names, narrowest first ("None": not granted)."""
PRIVILEGE_DENIED = "0x80040220"
"""SecLib's privilege check (KB 953962: "Error Number: 0x80040220 … SecLib::CrmCheckPrivilege
failed"; KB 2619752: "is missing prvReadUserQuery privilege … ErrorCode: -2147220960")."""
NOT_TRACKED = "0x80072491"
"""ChangeTrackingNotEnabledForEntity (Web service error codes)."""

PRIVILEGE_TABLE: Mapping[str, str] = {
    "contacts": "Contact",
    "accounts": "Account",
    "leads": "Lead",
    "opportunities": "Opportunity",
    "systemusers": "User",
    "mailboxes": "Mailbox",
    "appointments": "Activity",
    "recurringappointmentmasters": "Activity",
    "tasks": "Activity",
    "emails": "Activity",
    "annotations": "Note",
}
"""The table part of each privilege name ("prv+Verb+Table"): activities share `prvReadActivity`
(the Dynamics 365 App for Outlook deployment page lists prvReadActivity, prvReadContact,
prvReadMailbox). Sets not listed here are not checked."""
_VERBS = ("Create", "Read", "Write", "Delete", "AppendTo", "Append", "Assign", "Share")
_FUNCTION = re.compile(
    r"^systemusers\((?P<user>[0-9A-Fa-f-]{36})\)/(?:Microsoft\.Dynamics\.CRM\.)?"
    r"RetrieveUserPrivilegeByPrivilegeName\(PrivilegeName='(?P<name>[^']*)'\)$"
)
DEFAULT_TRACKED = frozenset(
    {
        "contacts",
        "accounts",
        "leads",
        "opportunities",
        "appointments",
        "recurringappointmentmasters",
        "tasks",
        "emails",
    }
)
"""Tables the sandbox starts with change tracking on (tests switch them off per organization)."""


@dataclass(frozen=True)
class Role:
    """A security role, as far as reading goes: the read depth per privilege table ("*": any)."""

    name: str
    read: Mapping[str, str]

    def depth(self, table: str) -> str:
        return self.read.get(table, self.read.get("*", "None"))


ORGANIZATION_READER = Role("Salesperson (organization read)", {"*": "Global"})
BUSINESS_UNIT_READER = Role("Business unit reader", {"*": "Local"})
USER_READER = Role("User-level reader", {"*": "Basic"})


def privilege_id(name: str) -> str:
    """A stable PrivilegeId per privilege name (real ids are fixed per organization too)."""
    return stable_id("privilege", name.lower())


def privilege_name(verb: str, entity_set: str) -> str | None:
    """`prvReadContact` for ("Read", "contacts"); None for a table the sandbox does not check."""
    table = PRIVILEGE_TABLE.get(entity_set)
    return f"prv{verb}{table}" if table else None


@dataclass
class SecurityPolicy:
    """Who reads what, which tables are change-tracked, and whether refusals are answered."""

    strict: bool = True
    roles: dict[tuple[str, str], Role] = field(default_factory=dict)
    """(organization, systemuserid) → role; a user without one reads at Global depth."""
    untracked: set[tuple[str, str]] = field(default_factory=set)
    """(organization, entity set) whose change tracking is off."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- configuration (demo data, tests) -------------------------------------------------

    def assign(self, org: str, user_id: str, role: Role) -> None:
        with self._lock:
            self.roles[(org, user_id.lower())] = role

    def set_change_tracking(self, org: str, entity_set: str, enabled: bool) -> None:
        with self._lock:
            if enabled:
                self.untracked.discard((org, entity_set))
            else:
                self.untracked.add((org, entity_set))

    # --- what is in force -----------------------------------------------------------------

    def depth(self, org: str, user_id: str | None, table: str) -> str:
        """The user's read depth on a privilege table (Global in lenient mode)."""
        if not self.strict or user_id is None:
            return "Global"
        with self._lock:
            role = self.roles.get((org, user_id.lower()), ORGANIZATION_READER)
        return role.depth(table)

    def change_tracking(self, org: str, entity_set: str) -> bool:
        """Whether the table is change-tracked (always, in lenient mode)."""
        if not self.strict:
            return True
        with self._lock:
            return entity_set in DEFAULT_TRACKED and (org, entity_set) not in self.untracked

    # --- refusals -------------------------------------------------------------------------

    def check_read(self, org: str, user_id: str | None, entity: EntityDef) -> None:
        """A read of a table the user has no read privilege on: 403 0x80040220."""
        name = privilege_name("Read", entity.entity_set)
        if name is None or user_id is None:
            return
        if self.depth(org, user_id, PRIVILEGE_TABLE[entity.entity_set]) == "None":
            raise ODataError(
                403,
                PRIVILEGE_DENIED,
                f"Principal user (Id={user_id}, type=8, roleCount=1, "
                f"privilegeCount={self._count(org, user_id)}, accessMode=0), is missing {name} "
                f"privilege (Id={privilege_id(name)}) for entity '{entity.logical_name}'. "
                f"context.Caller={user_id}",
            )

    def check_track_changes(self, org: str, user_id: str | None, entity: EntityDef) -> None:
        """Change tracking needs Global read on the table and tracking enabled on it."""
        name = privilege_name("Read", entity.entity_set)
        if name is not None and user_id is not None:
            depth = self.depth(org, user_id, PRIVILEGE_TABLE[entity.entity_set])
            if depth != "Global":
                raise ODataError(
                    403,
                    PRIVILEGE_DENIED,
                    f"SecLib::CheckPrivilege failed. User: {user_id}, PrivilegeName: {name}, "
                    f"PrivilegeId: {privilege_id(name)}, Required Depth: Global, "
                    f"BusinessUnitId: {business_unit_id(org)}, MetadataCache Privileges Count: "
                    f"{len(PRIVILEGE_TABLE) * len(_VERBS)}, User Privileges Count: "
                    f"{self._count(org, user_id)}",
                )
        if not self.change_tracking(org, entity.entity_set):
            raise ODataError(
                400, NOT_TRACKED, f"Entity {entity.logical_name} isn't enabled for change tracking."
            )

    def row_filter(
        self, org: str, user_id: str | None, entity: EntityDef
    ) -> Callable[[Mapping[str, Any]], bool] | None:
        """Basic (user-level) read sees the user's own rows only; None when nothing is hidden."""
        table = PRIVILEGE_TABLE.get(entity.entity_set)
        if table is None or user_id is None or not entity.owned:
            return None
        if self.depth(org, user_id, table) != "Basic":
            return None
        me = user_id.lower()
        return lambda values: str(values.get("_ownerid_value") or "").lower() == me

    # --- RetrieveUserPrivilegeByPrivilegeName --------------------------------------------

    def role_privileges(self, org: str, user_id: str, name: str) -> list[dict[str, str]]:
        """The `RolePrivileges` of the function's answer: one entry per role that grants it
        (the sandbox gives each user one role), none when the user lacks it."""
        verb = next((v for v in _VERBS if name.lower().startswith(f"prv{v.lower()}")), None)
        if verb is None:
            return []
        table = name[3 + len(verb) :]
        known = {t.lower(): t for t in PRIVILEGE_TABLE.values()}
        if table.lower() not in known:
            return []
        # writing is not modelled: every user holds the other verbs at Global depth
        depth = self.depth(org, user_id, known[table.lower()]) if verb == "Read" else "Global"
        if depth == "None":
            return []
        canonical = f"prv{verb}{known[table.lower()]}"
        return [
            {
                "Depth": depth,
                "PrivilegeId": privilege_id(canonical),
                "BusinessUnitId": business_unit_id(org),
                "PrivilegeName": canonical,
            }
        ]

    def _count(self, org: str, user_id: str) -> int:
        tables = set(PRIVILEGE_TABLE.values())
        readable = sum(1 for t in tables if self.depth(org, user_id, t) != "None")
        return readable + len(tables) * (len(_VERBS) - 1)


def privilege_call(resource: str) -> tuple[str, str] | None:
    """(systemuserid, privilege name) when `resource` (the path after `/api/data/v9.x/`)
    calls RetrieveUserPrivilegeByPrivilegeName; None otherwise."""
    match = _FUNCTION.match(unquote(resource))
    return (match.group("user").lower(), match.group("name")) if match else None


_POLICIES: weakref.WeakKeyDictionary[Any, SecurityPolicy] = weakref.WeakKeyDictionary()


def attach(store: Any, policy: SecurityPolicy) -> None:
    """Bind a policy to a server's store, so every request on that store (`$batch` parts too)
    meets it without threading it through the routing."""
    _POLICIES[store] = policy


def policy_for(store: Any) -> SecurityPolicy | None:
    """The policy bound to `store`; None for a store used without a server (no checks)."""
    return _POLICIES.get(store)
