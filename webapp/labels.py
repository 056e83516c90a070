"""People's words for the engine's names: kinds and the fields of their field maps.

The engine and the store speak in CRM column names (`telephone1`, `scheduledend`) and kind names
(`recurringappointments`); pages show these labels instead, translated (as the CRM's own forms
label the same columns: Business Phone, Due Date).
"""

from __future__ import annotations

from sync.setup.messages import N_, Msg
from webapp.i18n import translate

KIND_NAMES: dict[str, Msg] = {
    "contacts": N_("Contact"),
    "appointments": N_("Appointment"),
    "recurringappointments": N_("Recurring appointment"),
    "tasks": N_("Task"),
    "email": N_("Email"),
}

FIELD_LABELS: dict[str, Msg] = {
    "firstname": N_("First name"),
    "middlename": N_("Middle name"),
    "lastname": N_("Last name"),
    "suffix": N_("Suffix"),
    "nickname": N_("Nickname"),
    "jobtitle": N_("Job title"),
    "department": N_("Department"),
    "company": N_("Company"),
    "emailaddress1": N_("Email"),
    "emailaddress2": N_("Email 2"),
    "emailaddress3": N_("Email 3"),
    "telephone1": N_("Business phone"),
    "telephone2": N_("Home phone"),
    "telephone3": N_("Other phone"),
    "mobilephone": N_("Mobile phone"),
    "fax": N_("Fax"),
    "address1_street": N_("Business street"),
    "address1_city": N_("Business city"),
    "address1_stateorprovince": N_("Business state/province"),
    "address1_postalcode": N_("Business ZIP/postal code"),
    "address1_country": N_("Business country/region"),
    "address2_street": N_("Home street"),
    "address2_city": N_("Home city"),
    "address2_stateorprovince": N_("Home state/province"),
    "address2_postalcode": N_("Home ZIP/postal code"),
    "address2_country": N_("Home country/region"),
    "birthdate": N_("Birthday"),
    "anniversary": N_("Anniversary"),
    "websiteurl": N_("Website"),
    "description": N_("Description"),
    "subject": N_("Subject"),
    "scheduledstart": N_("Start"),
    "scheduledend": N_("End"),
    "statuscode": N_("Status"),
    "percentcomplete": N_("Percent complete"),
    "prioritycode": N_("Priority"),
    "actualend": N_("Completed on"),
    "category": N_("Category"),
    "location": N_("Location"),
    "isalldayevent": N_("All-day event"),
    "parties": N_("Organizer and attendees"),
    "series_times": N_("Series times"),
    "recurrence": N_("Recurrence"),
    "exceptions": N_("Changed or deleted occurrences"),
}


def kind_name(kind: str) -> str:
    """The kind in people's words (the engine's name when it has no label yet)."""
    label = KIND_NAMES.get(kind)
    if label is None and kind.startswith("offline:"):  # [offline2] offline conflicts' kinds
        from sync.setup.choices import KIND_LABELS

        table = kind.removeprefix("offline:")
        label = KIND_LABELS.get(kind) or N_("%(table)s (offline)", table=table)
    return translate(label) if label else kind


def field_label(field: str) -> str:
    """The field's label (its column name when it has no label yet)."""
    label = FIELD_LABELS.get(field)
    return translate(label) if label else field
