"""Contacts: CRM `contacts` ⇄ the mailbox's Contacts folder.

The company shown in the mailbox comes from the contact's parent account or contact
(`parentcustomerid`), one way: a typed company name cannot be turned into a CRM lookup safely.
"""

from __future__ import annotations

from typing import Any

from sync.kinds.base import Direction, FieldMap, Fields, Kind, norm, norm_date, norm_text, simple

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
PARENT = "_parentcustomerid_value"


def _street(prefix: str) -> FieldMap:
    """Street lines 1–3 of a CRM address as one multi-line mailbox street."""
    lines = tuple(f"{prefix}_line{i}" for i in (1, 2, 3))
    target = "business_street" if prefix == "address1" else "home_street"

    def read(row: Fields) -> Any:
        parts = [str(row[c]) for c in lines if row.get(c)]
        return "\n".join(parts) or None

    def write(value: Any) -> dict[str, Any]:
        split = str(value).split("\n") if value else []
        parts = [*split[:2], "\n".join(split[2:])] if len(split) > 2 else split
        return {c: (parts[i] if i < len(parts) else None) for i, c in enumerate(lines)}

    return FieldMap(
        name=f"{prefix}_street",
        mailbox=(target,),
        crm_read=read,
        crm_write=write,
        crm_columns=lines,
        normalize=norm_text,
    )


def _company_read(row: Fields) -> Any:
    return row.get(PARENT + FORMATTED) or row.get("parentcustomerid_name")


def _address(prefix: str, mailbox_prefix: str) -> list[FieldMap]:
    parts = [
        ("city", "city"),
        ("stateorprovince", "state"),
        ("postalcode", "postal_code"),
        ("country", "country"),
    ]
    return [_street(prefix)] + [
        simple(f"{prefix}_{crm}", f"{mailbox_prefix}_{mbx}") for crm, mbx in parts
    ]


CONTACTS = Kind(
    crm_reads_only_mapped=True,
    name="contacts",
    entity_set="contacts",
    primary_key="contactid",
    folder="contacts",
    title_fields=("firstname", "middlename", "lastname"),
    title_field="emailaddress1",
    fields=(
        simple("firstname", "given_name"),
        simple("middlename", "middle_name"),
        simple("lastname", "surname"),
        simple("suffix", "generation"),
        simple("nickname", "nickname"),
        simple("jobtitle", "job_title"),
        simple("department", "department"),
        FieldMap(
            name="company",
            mailbox=("company_name",),
            direction=Direction.TO_MAILBOX,
            crm_read=_company_read,
            crm_write=lambda _value: {},
            crm_columns=(PARENT,),
        ),
        simple("emailaddress1", "email_address_1"),
        simple("emailaddress2", "email_address_2"),
        simple("emailaddress3", "email_address_3"),
        simple("telephone1", "business_phone"),
        simple("telephone2", "home_phone"),
        simple("mobilephone", "mobile_phone"),
        simple("telephone3", "other_phone"),
        simple("fax", "business_fax"),
        *_address("address1", "business"),
        *_address("address2", "home"),
        simple("birthdate", "birthday", normalize=norm_date),
        simple("anniversary", "wedding_anniversary", normalize=norm_date),
        simple("websiteurl", "business_homepage"),
        simple("description", "body", normalize=norm_text),
    ),
    default_filters=(
        (
            {"field": "_ownerid_value", "op": "eq", "value": "me"},
            {"field": "statecode", "op": "eq", "value": 0},
        ),
    ),
)
"""My active contacts by default (owner is me, status active)."""

__all__ = ["CONTACTS", "norm"]
