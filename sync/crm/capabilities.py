"""What the signed-in user may do in an organization, asked without changing anything.

For the setup check and `run.py doctor`: the read depth a security role gives on each synced
table (RetrieveUserPrivilegeByPrivilegeName, powerapps-docs
`developer/data-platform/security-access-coding.md`) and whether a table has change tracking
enabled (its definition's `ChangeTrackingEnabled`: EntityMetadata.ChangeTrackingEnabled, "True
if change tracking is enabled"; `use-change-tracking-synchronize-data-external-systems.md`).
The definitions of all synced tables come in one request (`EntityDefinitions?$select=
LogicalName,ChangeTrackingEnabled&$filter=LogicalName eq '…' or …`: query-metadata-web-api.md,
"you can use $filter on any properties which use primitive or enumeration values … There is no
paging"). When the depth and the setting together tell the answer, the service is not asked
again; when either is unknown, one tracked request for one row (the probe) asks whether the
service tracks the table for this user — the answer the sync will meet.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync.crm.client import (
    NOT_TRACKED,
    PRIVILEGE_DENIED,
    ChangeTrackingRefused,
    DataverseClient,
    query_string,
)
from sync.sides import SideError

log = logging.getLogger(__name__)

DEPTHS = ("None", "Basic", "Local", "Deep", "Global")
"""The Web API's PrivilegeDepth names, narrowest first ("None": not granted)."""
DEPTH_WORDS = {
    "None": "no",
    "Basic": "user-level",
    "Local": "business-unit-level",
    "Deep": "parent: child business-unit-level",
    "Global": "organization-level",
}
"""How the security role editor names each depth (User, Business Unit, Parent: Child Business
Units, Organization)."""

SYNCED_TABLES: Mapping[str, tuple[str, str, str]] = {
    "contacts": ("contact", "contactid", "prvReadContact"),
    "appointments": ("appointment", "activityid", "prvReadActivity"),
    "recurringappointmentmasters": ("recurringappointmentmaster", "activityid", "prvReadActivity"),
    "tasks": ("task", "activityid", "prvReadActivity"),
}
"""entity set → (logical name, key, read privilege). Activities share `prvReadActivity`: the
security role has one Activity row (the App for Outlook deployment page lists prvReadActivity
next to prvReadContact)."""


def widest(depths: list[Any]) -> str:
    """The widest of the depths several roles give ("None" for none). The Web API answers the
    names; numbers (0 Basic … 3 Global, the PrivilegeDepth enum values) are read too."""
    best = 0
    for depth in depths:
        if isinstance(depth, int) and not isinstance(depth, bool) and 0 <= depth <= 3:
            best = max(best, depth + 1)
        elif isinstance(depth, str) and depth in DEPTHS:
            best = max(best, DEPTHS.index(depth))
    return DEPTHS[best]


def privilege_depth(client: DataverseClient, user_id: str, privilege: str) -> str:
    """The user's depth of one privilege, from all their roles (team roles included)."""
    path = (
        f"systemusers({user_id})/Microsoft.Dynamics.CRM."
        f"RetrieveUserPrivilegeByPrivilegeName(PrivilegeName='{privilege}')"
    )
    data = client.get_json(path)
    privileges = data.get("RolePrivileges") if isinstance(data, Mapping) else None
    return widest([p.get("Depth") for p in privileges or [] if isinstance(p, Mapping)])


def tracking_settings(client: DataverseClient, logical_names: Iterable[str]) -> dict[str, bool]:
    """Each table's `ChangeTrackingEnabled`, in one request; tables the answer does not give
    (definitions not readable, a table the organization lacks) are left out."""
    names = sorted(set(logical_names))
    if not names:
        return {}
    condition = " or ".join(f"LogicalName eq '{name}'" for name in names)
    try:
        data = client.get_json(
            "EntityDefinitions"
            + query_string(select=["LogicalName", "ChangeTrackingEnabled"], filter=condition)
        )
    except SideError as error:
        log.info("table definitions not readable (%s): change tracking will be probed", error)
        return {}
    found: dict[str, bool] = {}
    for row in data.get("value", []) if isinstance(data, Mapping) else []:
        if not isinstance(row, Mapping):
            continue
        name, value = row.get("LogicalName"), row.get("ChangeTrackingEnabled")
        if isinstance(name, str) and name in names and isinstance(value, bool):
            found[name] = value
    return found


def change_tracking_enabled(client: DataverseClient, logical_name: str) -> bool | None:
    """The table definition's `ChangeTrackingEnabled`; None when definitions cannot be read."""
    return tracking_settings(client, [logical_name]).get(logical_name)


def probe_change_tracking(
    client: DataverseClient, entity_set: str, key: str
) -> ChangeTrackingRefused | None:
    """One tracked request for one row: None when the service tracks the table for this user,
    else its refusal. Other errors (sign-in, network) are raised."""
    try:
        next(iter(client.track_changes(entity_set, select=[key], page_size=1)), None)
    except ChangeTrackingRefused as refused:
        return refused
    return None


@dataclass(frozen=True)
class TableAccess:
    """What one synced table allows this user."""

    entity_set: str
    logical_name: str
    privilege: str
    depth: str | None
    """The read depth; None when the roles could not be asked."""
    tracked: bool | None
    """The table's change tracking setting; None when its definition could not be read."""
    refusal: ChangeTrackingRefused | None
    """Why the service refused a tracked read (None: it tracks changes for this user)."""

    @property
    def change_tracking(self) -> bool:
        return self.refusal is None

    @property
    def tracking_disabled(self) -> bool:
        """The table itself is not tracked (by its definition, or the service's refusal)."""
        return self.tracked is False or (
            self.refusal is not None and self.refusal.reason == "disabled"
        )

    @property
    def depth_short(self) -> bool:
        """The role gives less than the organization-level read change tracking needs."""
        if self.depth is not None:
            return self.depth != "Global"
        return self.refusal is not None and self.refusal.reason == "privilege"


_ASKED = ""
"""The key a `tracking` cache holds once the definitions were asked for (no table's name)."""


def _known_refusal(
    logical_name: str, privilege: str, depth: str | None, tracked: bool | None
) -> tuple[bool, ChangeTrackingRefused | None]:
    """(whether the depth and the setting tell the answer, the refusal they imply): a read
    below organization level is refused for the privilege (checked first, as the sandbox and
    the privilege text users report show), an untracked table as disabled."""
    if depth is not None and depth != "Global":
        message = (
            f"{privilege} is granted at {DEPTH_WORDS.get(depth, depth)} depth; change tracking "
            "needs organization-level read."
        )
        return True, ChangeTrackingRefused(message, PRIVILEGE_DENIED, "privilege")
    if tracked is False:
        message = f"Entity {logical_name} isn't enabled for change tracking."
        return True, ChangeTrackingRefused(message, NOT_TRACKED, "disabled")
    return depth is not None and tracked is True, None


def table_access(
    client: DataverseClient,
    user_id: str,
    entity_set: str,
    depths: dict[str, str | None] | None = None,
    tracking: dict[str, bool] | None = None,
) -> TableAccess:
    """Ask the roles, the definition and (when those do not tell) the service about one
    synced table. `depths` caches privilege depths between tables (the activities share one
    privilege); `tracking` caches the tables' change tracking settings: given empty, it is
    filled for every synced table with one request."""
    logical, key, privilege = SYNCED_TABLES[entity_set]
    cache = depths if depths is not None else {}
    if privilege not in cache:
        try:
            cache[privilege] = privilege_depth(client, user_id, privilege)
        except SideError:
            cache[privilege] = None
    settings = tracking if tracking is not None else {}
    if _ASKED not in settings:
        names = [t[0] for t in SYNCED_TABLES.values()] if tracking is not None else [logical]
        settings.update(tracking_settings(client, names))
        settings[_ASKED] = True  # asked once, whatever the answer: a failure is not repeated
    tracked = settings.get(logical)
    known, refusal = _known_refusal(logical, privilege, cache[privilege], tracked)
    return TableAccess(
        entity_set=entity_set,
        logical_name=logical,
        privilege=privilege,
        depth=cache[privilege],
        tracked=tracked,
        refusal=refusal if known else probe_change_tracking(client, entity_set, key),
    )
