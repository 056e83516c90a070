"""The `$filter` parser on its own: precedence, literals, types and error messages."""

from __future__ import annotations

import pytest

from sandbox.dataverse.errors import ODataError
from sandbox.dataverse.odata_filter import normalize_datetime, parse_filter
from sandbox.dataverse.schema import ENTITIES

CONTACT = ENTITIES["contacts"]
ROW = {
    "firstname": "Ada",
    "lastname": "O'Neil",
    "birthdate": "1990-05-17",
    "modifiedon": "2026-11-25T10:00:00Z",
    "statecode": 0,
    "donotemail": False,
    "_parentcustomerid_value": "0a1b2c3d-0000-4000-8000-000000000001",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("firstname eq 'ada'", True),
        ("lastname eq 'O''Neil'", True),
        ("firstname eq 'Ada' or lastname eq 'x' and statecode eq 1", True),  # and binds tighter
        ("(firstname eq 'Ada' or lastname eq 'x') and statecode eq 1", False),
        ("not not (statecode eq 0)", True),
        ("donotemail eq false", True),
        ("emailaddress1 eq null and firstname ne null", True),
        ("_parentcustomerid_value eq 0A1B2C3D-0000-4000-8000-000000000001", True),
        ("modifiedon eq 2026-11-25T11:00:00+01:00", True),
        ("modifiedon gt 2026-11-25T10:00:00.500Z", False),
        ("modifiedon ge 2026-11-25", True),
        ("birthdate lt 1990-05-18", True),
        ("birthdate eq 1990-05-17", True),
        ("statecode lt 0.5", True),
        ("endswith(lastname, 'NEIL')", True),
        ("emailaddress1 gt 'a'", False),  # comparisons with null are false
        ("Microsoft.Dynamics.CRM.In(PropertyName='firstname',PropertyValues=['x','ADA'])", True),
        ("Microsoft.Dynamics.CRM.In(PropertyName='statecode',PropertyValues=['1','2'])", False),
        (
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='_parentcustomerid_value',"
            "PropertyValues=['0A1B2C3D-0000-4000-8000-000000000001']) or statecode eq 0",
            True,
        ),
        (
            "not Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=['O''Neil'])",
            False,
        ),
    ],
)
def test_predicates(text: str, expected: bool) -> None:
    assert parse_filter(text, CONTACT)(ROW) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Syntax error at position 0 in ''."),
        ("firstname eq", "Syntax error at position 12 in 'firstname eq'."),
        ("firstname eq 'a' and", "Syntax error at position 20"),
        ("(firstname eq 'a'", "Syntax error"),
        ("firstname eq 'a' firstname", "Syntax error at position 17"),
        ("firstname ~ 'a'", "Syntax error"),
        (
            "nosuch eq 1",
            "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'.",
        ),
        ("statecode eq 'x'", "incompatible types"),
        ("contains(statecode, 'x')", "No function signature"),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='nosuch',PropertyValues=['1'])",
            "Could not find a property named 'nosuch'",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='firstname',PropertyValues=['a' 'b'])",
            "Syntax error",
        ),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ODataError) as caught:
        parse_filter(text, CONTACT)
    assert caught.value.status == 400
    assert caught.value.code == "0x80060888"
    assert message in caught.value.message


def test_normalize_datetime() -> None:
    assert normalize_datetime("2026-11-25T11:30:00+01:00") == "2026-11-25T10:30:00Z"
    assert normalize_datetime("2026-11-25T10:30:00.123Z") == "2026-11-25T10:30:00Z"
    assert normalize_datetime("2026-11-25") == "2026-11-25T00:00:00Z"
