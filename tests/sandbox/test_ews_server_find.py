"""Sandbox FindItem restrictions at the size the adapter sends: an Or of many IsEqualTo on the
key property (set membership, each item's values read once), the 255-expression limit, and Ors
that must still be compared condition by condition."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from exchangelib import Q
from exchangelib.errors import ErrorRestrictionTooLong
from exchangelib.items import Contact

from sandbox.ews.ops import find
from sandbox.ews.testing import account, register_crmid, running_server
from tests.sandbox.ews_helpers import ALICE

N_CONTACTS = 60


@pytest.fixture(scope="module")
def alice() -> Iterator[Any]:
    with running_server(demo=False) as server:
        register_crmid()
        box = account(server, ALICE)
        box.bulk_create(
            box.contacts,
            [
                Contact(
                    folder=box.contacts,
                    display_name=f"G{i} S{i}",
                    given_name=f"G{i}",
                    surname=f"S{i}",
                    crmid=f"Key-{i}",
                )  # fmt: skip
                for i in range(N_CONTACTS)
            ],
        )
        yield box


def keys_found(box: Any, keys: list[str]) -> list[str]:
    return sorted(c.crmid for c in box.contacts.filter(crmid__in=keys).only("crmid"))


def test_an_or_of_keys_finds_each_once_case_insensitively(alice: Any) -> None:
    wanted = [f"key-{i}" for i in range(0, N_CONTACTS, 3)] + ["KEY-7", "no-such-key"]
    expected = sorted({f"Key-{i}" for i in range(0, N_CONTACTS, 3)} | {"Key-7"})
    assert keys_found(alice, wanted) == expected


def test_each_items_values_are_read_once_per_request(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = find._uri_values

    def counting(mbx: Any, item: Any, uri: Any) -> list[str]:
        calls.append(item.id)
        return real(mbx, item, uri)

    monkeypatch.setattr(find, "_uri_values", counting)
    keys = [f"Key-{i}" for i in range(50)]
    assert len(keys_found(alice, keys)) == 50
    # one read per contact for the whole Or (not one per contact per key)
    assert len(calls) == len(set(calls)) == N_CONTACTS


def test_200_keys_are_accepted_and_more_than_255_expressions_refused(alice: Any) -> None:
    keys = [f"Key-{i}" for i in range(200)]
    assert len(keys_found(alice, keys)) == N_CONTACTS
    with pytest.raises(ErrorRestrictionTooLong):
        keys_found(alice, [f"Key-{i}" for i in range(255)])  # the Or makes 256


def test_ors_on_other_fields_or_numbers_are_compared_one_by_one(alice: Any) -> None:
    mixed = alice.contacts.filter(Q(crmid="Key-1") | Q(given_name="g2") | Q(surname="S3"))
    assert sorted(c.crmid for c in mixed) == ["Key-1", "Key-2", "Key-3"]
    # Number-like constants compare as numbers: "007.0" finds "7" (no text shortcut).
    alice.bulk_create(
        alice.contacts,
        [Contact(folder=alice.contacts, display_name="Seven", given_name="Seven", crmid="7")],
    )
    numbers = alice.contacts.filter(crmid__in=["007.0", "no-such-key"])
    assert [c.given_name for c in numbers] == ["Seven"]
