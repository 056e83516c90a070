"""The CRM side reads a kind with `$select` of the columns the kind needs (issue 13: less held
in memory, fewer bytes from the service) — never fewer than those.

Dataverse returns every column of a row without `$select` (query-data-web-api.md: "always
include the $select query option ... otherwise all columns are returned"), and a delta link
keeps the `$select` of the read that made it (use-change-tracking-synchronize-data-external-
systems.md: the deltaLink of `accounts?$select=name,accountnumber,telephone1,fax` repeats that
`$select`). So a link made before a column was needed must not be used for a read that needs it:
its rows would come without the column, read as cleared."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from sync.crm.side import CT_PREFIX
from sync.kinds.contacts import CONTACTS
from sync.sides import TokenExpired
from tests.e2e.harness import make_agent, seed_contacts, start_pair


def selected(link: str) -> set[str]:
    return set(parse_qs(urlsplit(link).query)["$select"][0].split(","))


def test_contacts_are_read_with_the_mapped_and_filtered_columns_only(tmp_path: Path) -> None:
    with start_pair(tmp_path) as pair:
        seed_contacts(pair, 4)
        city = [[{"field": "address1_city", "op": "eq", "value": "Leeds"}]]
        agent = make_agent(pair, filters={"contacts": city})
        result = agent.sync(["contacts"])["contacts"]
        assert result.errors == 0 and len(agent.links("contacts")) == 4
        token = agent.store.get_token("contacts", "crm")
        assert token is not None and token.startswith(CT_PREFIX)
        columns = selected(token.removeprefix(CT_PREFIX))
        assert set(CONTACTS.crm_select) <= columns  # every mapped column, key and modifiedon
        assert "address1_city" in columns and "modifiedon" in columns
        # columns nothing maps or filters on are not read, though the table has them
        with pair.crm_client() as client:
            assert "governmentid" in client.get_json("contacts?$top=1")["value"][0]
        assert "governmentid" not in columns and "importsequencenumber" not in columns
        # and the mailbox got every mapped field
        ids = [link.mailbox_id for link in agent.links("contacts") if link.mailbox_id]
        items = pair.mailbox_side().read("contacts", ids).values()
        assert sorted(i.fields["given_name"] for i in items) == [f"CFirst{n}" for n in range(4)]
        assert {i.fields["job_title"] for i in items} == {"Buyer", "Engineer", "Director"}
        assert all(i.fields["email_address_1"].endswith("@customer.example") for i in items)
    assert all(i.fields["business_city"] == "Leeds" for i in items)


def test_a_delta_link_without_a_needed_column_is_read_again_in_full(tmp_path: Path) -> None:
    with start_pair(tmp_path) as pair:
        seed_contacts(pair, 2)
        side = pair.crm_side()
        side.select_columns("contacts", ["firstname"])
        pages = list(side.read_changes("contacts", None))
        link = pages[-1].token
        assert link is not None and selected(link.removeprefix(CT_PREFIX)) == {
            "contactid",
            "firstname",
        }
        assert list(side.read_changes("contacts", link))[-1].changes == []  # same columns: used
        side.select_columns("contacts", ["firstname", "lastname"])
        with pytest.raises(TokenExpired):
            list(side.read_changes("contacts", link))
        # a link made with every column (before `$select` was used) carries them all: kept
        everything = pair.crm_side()
        full_link = list(everything.read_changes("contacts", None))[-1].token
        assert full_link is not None and "$select" not in full_link
        assert list(side.read_changes("contacts", full_link))[-1].changes == []
