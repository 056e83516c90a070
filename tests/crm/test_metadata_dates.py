"""The CRM side reads table definitions and the user's time zone, and writes through them:
UserLocal days as the user's midnight, states after creates, nothing a column refuses, and the
CreateException message; reads give days in the user's zone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sandbox.identity import user_by_upn
from sync.crm import metadata
from sync.crm.client import DataverseClient
from sync.crm.metadata import DATE_ONLY, TIME_ZONE_INDEPENDENT, USER_LOCAL, Column, Metadata
from sync.crm.side import DataverseSide
from sync.kinds import recurrence
from sync.kinds.tasks import TASKS
from sync.sides import CreateOp, Invalid, UpdateOp, Written
from tests.crm.conftest import ALICE, Sandbox

PARIS, TOKYO, NEW_YORK = (
    ZoneInfo("Europe/Paris"),
    ZoneInfo("Asia/Tokyo"),
    ZoneInfo("America/New_York"),
)
LOCAL = Column("scheduledend", behaviour=USER_LOCAL, format="DateAndTime")
LOCAL_DAY = Column("patternstartdate", behaviour=USER_LOCAL, format=DATE_ONLY)


def _me() -> str:
    user = user_by_upn(ALICE)
    assert user is not None
    return user.systemuser_id("contoso")


@pytest.fixture
def zone_code(client: DataverseClient) -> Iterator[Any]:
    """Set alice's usersettings.timezonecode for a test (and forget what the side read)."""

    def set_code(code: int) -> None:
        client.update("usersettingscollection", _me(), {"timezonecode": code}, if_match="*")
        metadata.forget(client.api_url)

    yield set_code
    set_code(92)


def test_a_day_written_to_a_user_local_column_is_the_users_midnight() -> None:
    """behavior-format-date-time-attribute.md, "Submitting through the API": a UserLocal value
    without offset is stored as UTC, so the client applies the user's offset itself."""
    assert metadata.to_service("2027-03-15", LOCAL, PARIS) == "2027-03-14T23:00:00Z"
    assert metadata.to_service("2027-03-15", LOCAL_DAY, TOKYO) == "2027-03-14T15:00:00Z"
    assert metadata.to_service("2027-07-15", LOCAL, NEW_YORK) == "2027-07-15T04:00:00Z"
    assert metadata.to_service("2027-03-15T10:00:00+01:00", LOCAL, PARIS) == "2027-03-15T09:00:00Z"
    date_only = Column("birthdate", behaviour=DATE_ONLY, format=DATE_ONLY)
    assert metadata.to_service("1980-02-29", date_only, TOKYO) == "1980-02-29"
    independent = Column("checkin", behaviour=TIME_ZONE_INDEPENDENT, format="DateAndTime")
    assert metadata.to_service("2027-03-15T06:00:00Z", independent, TOKYO) == "2027-03-15T15:00:00Z"


def test_a_user_local_moment_read_as_a_day_is_the_users_day() -> None:
    """The day a UserLocal value shows is the one in the user's time zone (the behaviour page:
    "Retrieving the formatted value converts from UTC to the user's current time zone")."""
    read = metadata.from_service("2027-03-14T23:00:00Z", LOCAL, PARIS)
    assert read == "2027-03-15T00:00:00+01:00"
    assert read[:10] == "2027-03-15"
    assert metadata.from_service("1980-02-29", LOCAL, PARIS) == "1980-02-29"


def test_definitions_and_time_zone_are_read_once_per_organization(
    sandbox: Sandbox, client: DataverseClient, zone_code: Any
) -> None:
    """query-metadata-web-api.md (EntityDefinitions(LogicalName=…)/Attributes, the
    DateTimeAttributeMetadata cast) and usersettings.md (timezonecode)."""
    zone_code(105)
    before = client.request_count
    found = Metadata(client)
    task = found.table("task")
    assert task.columns["scheduledend"] == Column(
        "scheduledend", True, True, USER_LOCAL, "DateAndTime"
    )
    assert task.columns["actualend"].shows_a_day
    appointment = found.table("appointment")
    assert not appointment.columns["statecode"].valid_for_create
    assert not appointment.columns["instancetypecode"].valid_for_update
    assert found.time_zone(_me()) == PARIS
    assert client.request_count - before == 5  # two per table, one for the zone
    again = Metadata(client)
    assert again.table("task") == task and again.time_zone(_me()) == PARIS
    assert client.request_count - before == 5
    metadata.forget(client.api_url)
    assert Metadata(client).table("task") == task
    assert client.request_count - before == 7


def test_task_due_dates_are_the_users_days_east_of_utc(
    client: DataverseClient, zone_code: Any
) -> None:
    """task.md: ScheduledEnd is UserLocal (Format DateAndTime). A Tokyo user's task due on
    15 March is stored as 14 March 15:00 UTC; read back, the kind sees 15 March (reading the UTC
    date gave 14 March; writing midnight UTC gave a due date 9 hours into the day)."""
    zone_code(235)
    side = DataverseSide(client, owner_id=_me())
    key = str(uuid.uuid4())
    [written] = side.write(
        "tasks", [CreateOp(key, TASKS.crm_create({"scheduledend": "2027-03-15"}))]
    )
    assert isinstance(written, Written), written
    raw = client.get("tasks", key, ["scheduledend"])
    assert raw["scheduledend"] == "2027-03-14T15:00:00Z"
    row = side.read("tasks", [key])[key].fields
    assert TASKS.crm_values(row)["scheduledend"] == "2027-03-15"


def test_a_series_is_written_with_valid_columns_and_user_local_pattern_dates(
    client: DataverseClient, zone_code: Any
) -> None:
    """recurringappointmentmaster.md: PatternStartDate is UserLocal with Format DateOnly (an
    Edm.DateTimeOffset: a bare date is refused), FirstDayOfWeek is not valid for update."""
    zone_code(105)
    side = DataverseSide(client, owner_id=_me())
    doc = {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "weekdays": ["Monday"],
            "first_day_of_week": "Monday",
        },
        "range": {"type": "numbered", "start": "2027-03-15", "end": None, "count": 3},
    }
    columns = {"subject": "Weekly", "starttime": "2027-03-15T08:00:00Z",
               "endtime": "2027-03-15T09:00:00Z", "duration": 60, **recurrence.to_columns(doc)}  # fmt: skip
    key = str(uuid.uuid4())
    [made] = side.write("recurringappointmentmasters", [CreateOp(key, columns)])
    assert isinstance(made, Written), made
    assert (
        client.get("recurringappointmentmasters", key)["patternstartdate"] == "2027-03-14T23:00:00Z"
    )
    assert recurrence.from_columns(made.fields) == recurrence.normalize(doc)
    longer = {**recurrence.to_columns({**doc, "range": {**doc["range"], "count": 4}})}
    [updated] = side.write("recurringappointmentmasters", [UpdateOp(key, None, longer)])
    assert isinstance(updated, Written), updated  # firstdayofweek left out of the update
    assert updated.fields["occurrences"] == 4
    raw = DataverseClient(client.api_url, client.token_provider, retry=client.retry)
    with pytest.raises(Invalid):
        raw.update("recurringappointmentmasters", key, {"patternstartdate": "2027-03-22"})


def test_an_appointment_is_created_then_given_its_state(client: DataverseClient) -> None:
    """appointment.md: StateCode "IsValidForCreate False"; SetState is a PATCH of statecode and
    statuscode. The side sends both in one change set: the create, then the state."""
    side = DataverseSide(client, owner_id=_me())
    key = str(uuid.uuid4())
    fields = {"subject": "Free time", "scheduledstart": "2027-03-16T09:00:00Z",
              "scheduledend": "2027-03-16T10:00:00Z", "statecode": 0, "statuscode": 1}  # fmt: skip
    Metadata(client).table("appointment"), Metadata(client).time_zone(_me())  # read before
    before = client.request_count
    [written] = side.write("appointments", [CreateOp(key, fields)])
    assert isinstance(written, Written), written
    assert client.request_count - before == 1  # one $batch
    assert (written.fields["statecode"], written.fields["statuscode"]) == (0, 1)
    with pytest.raises(Invalid):
        client.create("appointments", fields, id=str(uuid.uuid4()))


def test_create_exception_is_posted_as_the_message(client: DataverseClient) -> None:
    """CreateException is bound to the recurringappointmentmaster collection (its Web API
    action reference); the side posts a CreateOp holding only the message's parameters."""
    side = DataverseSide(client, owner_id=_me())
    master = str(uuid.uuid4())
    columns = {"subject": "Daily", "starttime": "2027-04-01T08:00:00Z", "endtime": "2027-04-01T08:30:00Z",
               "duration": 30, "recurrencepatterntype": 0, "interval": 1,
               "patternstartdate": "2027-04-01", "patternendtype": 2, "occurrences": 3}  # fmt: skip
    assert isinstance(
        side.write("recurringappointmentmasters", [CreateOp(master, columns)])[0], Written
    )
    bind = {
        "seriesid_recurringappointmentmaster@odata.bind": f"/recurringappointmentmasters({master})"
    }
    message = {
        "CreateException": {
            "Target": bind,
            "OriginalStartDate": "2027-04-02T08:00:00Z",
            "IsDeleted": True,
        }
    }
    [result] = side.write("appointments", [CreateOp(str(uuid.uuid4()), message)])
    assert isinstance(result, Written) and result.version is None
    row = client.get("recurringappointmentmasters", master, ["deletedexceptionslist"])
    assert row["deletedexceptionslist"] == "2027-04-02T08:00:00Z"
