"""Resolving email addresses to CRM records, for activity parties (organizer, attendees).

Dynamics resolves a party address to a contact, user, lead or account that carries it; an
address nobody carries stays as `addressused`. Looked up once per address per run (a cache),
only when the engine writes parties to the CRM, so a quiet sync costs nothing here.
"""

from __future__ import annotations

from sync.crm.client import DataverseClient

LOOKUP_ORDER: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("contacts", "contactid", ("emailaddress1", "emailaddress2", "emailaddress3"), "contact"),
    ("systemusers", "systemuserid", ("internalemailaddress",), "systemuser"),
    ("leads", "leadid", ("emailaddress1",), "lead"),
    ("accounts", "accountid", ("emailaddress1",), "account"),
)


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PartyResolver:
    """`resolve(email)` for the appointment kinds: {"partyid_<entity>@odata.bind": "/set(id)"}."""

    def __init__(self, client: DataverseClient) -> None:
        self.client = client
        self._cache: dict[str, dict[str, str] | None] = {}

    def __call__(self, email: str) -> dict[str, str] | None:
        address = email.strip().lower()
        if not address or "@" not in address:
            return None
        if address not in self._cache:
            self._cache[address] = self._lookup(address)
        return self._cache[address]

    def _lookup(self, address: str) -> dict[str, str] | None:
        for entity_set, key, columns, logical_name in LOOKUP_ORDER:
            condition = " or ".join(f"{column} eq {_quoted(address)}" for column in columns)
            for page in self.client.iter_pages(entity_set, select=[key], filter=condition, top=1):
                for row in page:
                    return {f"partyid_{logical_name}@odata.bind": f"/{entity_set}({row[key]})"}
        return None
