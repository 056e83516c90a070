"""The stored choices of this install (the profile), read and written through the settings table.

The wizard's current step is *derived* from what is stored, never kept as a separate
"step" value, so a restart (or a second browser tab) always lands on the first step not done.
"""

from __future__ import annotations

import dataclasses
import socket
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from sync.settings import get_setting, set_setting
from sync.setup.messages import N_, Msg
from sync.setup.ports import MailboxConfig, OrgInfo
from sync.setup.vault import Vault
from sync.store.db import Database
from sync.store.models import Organization

STEPS = ("organization", "mailbox", "instance", "choices", "done")
STEP_TITLES: dict[str, Msg] = {
    "signin": N_("Sign in"),
    "organization": N_("Organization"),
    "mailbox": N_("Mailbox"),
    "instance": N_("Synchronizing computer"),
    "choices": N_("What to sync"),
    "done": N_("Done"),
}
"""What the step bar calls each step; signing in (webapp/signin.py) comes before them."""

# setting keys (other modules read some of them: the dashboard reads the messaging ones)
SIGNED_IN_UPN = "account_upn"  # written by webapp/signin.py after sign-in
MAILBOX = "mailbox"
MAILBOX_TESTED = "mailbox_tested"
INSTANCE_ID = "instance_id"
INSTANCE_NAME = "instance_name"
INSTANCE_DECIDED = "instance_decided"
MESSAGING_ENABLED = "messaging_enabled"
MESSAGING_DISABLED_REASON = "messaging_disabled_reason"
MESSAGING_HOLDER = "messaging_holder"  # the synchronizing computer's name, while not this one
CHOICES_SAVED = "choices_saved"
CRM_USER = "crm_user"

MAILBOX_PASSWORD = "mailbox_password"
SMTP_PASSWORD = "smtp_password"


class Profile:
    """This install's setup choices over one data dir's database and vault."""

    def __init__(self, database: Database, data_dir: Path | str) -> None:
        self.database = database
        self.data_dir = Path(data_dir)
        self.vault = Vault(data_dir, database)  # the consent to clear secrets is stored there

    # -- plain values ---------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        value = get_setting(self.database, key)
        return default if value is None else value

    def set(self, key: str, value: Any) -> None:
        set_setting(self.database, key, value)

    @property
    def signed_in_upn(self) -> str | None:
        value: str | None = self.get(SIGNED_IN_UPN)
        return value

    # -- organizations ----------------------------------------------------------------------
    def organizations(self) -> list[Organization]:
        with self.database.session() as session:
            return list(session.scalars(select(Organization).order_by(Organization.added_at)))

    def synchronizing_org(self) -> OrgInfo | None:
        for row in self.organizations():
            if row.role == "synchronizing":
                return _org_info(row)
        return None

    def connected_orgs(self) -> list[OrgInfo]:
        return [_org_info(r) for r in self.organizations() if r.role == "connected"]

    # -- mailbox -------------------------------------------------------------------------------
    def mailbox(self) -> MailboxConfig | None:
        stored = self.get(MAILBOX)
        if not stored:
            return None
        known = {f.name for f in dataclasses.fields(MailboxConfig)}
        return MailboxConfig(**{k: v for k, v in stored.items() if k in known})

    def save_mailbox(self, config: MailboxConfig, secrets: dict[str, str]) -> None:
        """Store the mailbox choice; a new password replaces the old, an empty one keeps it."""
        self.set(MAILBOX, dataclasses.asdict(config))
        for name, value in secrets.items():
            if value:
                self.vault.set(name, value)

    def mailbox_secrets(self) -> dict[str, str]:
        found = {name: self.vault.get(name) for name in (MAILBOX_PASSWORD, SMTP_PASSWORD)}
        return {k: v for k, v in found.items() if v}

    # -- this install ---------------------------------------------------------------------
    @property
    def instance_id(self) -> str:
        """A random id made once per install (per data dir)."""
        value = self.get(INSTANCE_ID)
        if not value:
            value = str(uuid.uuid4())
            self.set(INSTANCE_ID, value)
        return str(value)

    @property
    def instance_name(self) -> str:
        """The name other computers show for this one (the host name unless changed)."""
        return str(self.get(INSTANCE_NAME) or socket.gethostname())

    @property
    def messaging_enabled(self) -> bool:
        return bool(self.get(MESSAGING_ENABLED, True))

    def set_messaging(self, enabled: bool, reason: str = "", holder: str = "") -> None:
        """`reason` (English) is for logs and `status --json`; pages say it from `holder`."""
        self.set(MESSAGING_ENABLED, enabled)
        self.set(MESSAGING_DISABLED_REASON, "" if enabled else reason)
        self.set(MESSAGING_HOLDER, "" if enabled else holder)

    # -- where the wizard is --------------------------------------------------------------
    def step_done(self, step: str) -> bool:
        if step == "organization":
            return self.synchronizing_org() is not None
        if step == "mailbox":
            return self.mailbox() is not None and bool(self.get(MAILBOX_TESTED))
        if step == "instance":
            return bool(self.get(INSTANCE_DECIDED))
        if step == "choices":
            return bool(self.get(CHOICES_SAVED))
        return False

    def current_step(self) -> str:
        """The first step not done yet ("done" once every step is)."""
        return next((s for s in STEPS[:-1] if not self.step_done(s)), "done")

    def is_complete(self) -> bool:
        return self.current_step() == "done"


def _org_info(row: Organization) -> OrgInfo:
    return OrgInfo(row.id, row.unique_name, row.friendly_name, row.url, row.api_url)
