"""A series' zone in the recurring kind (the master's utcconversiontimezonecode ⇄ the item's
time zone), the engine not reading series occurrence rows it does not take, and a deleted-
occurrence list that cannot be read whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sync.engine import MemoryLinkStore, sync_kind
from sync.kinds import exceptions
from sync.kinds.appointments import APPOINTMENTS, RECURRING_APPOINTMENTS, recurring_kind
from sync.memory import MemoryCrm, MemoryMailbox
from sync.sides import Upsert
from tests.engine.engine_world import ME, NOW, World
from tests.engine.test_engine_kinds import APPOINTMENT_ROW, MASTER_ROW

NEW_YORK = {**MASTER_ROW, "utcconversiontimezonecode": 35}


def test_the_mailbox_copy_takes_the_masters_zone_not_the_profiles() -> None:
    """recurringappointmentmaster.md: UTCConversionTimeZoneCode, the "Time zone code that was in
    use when the record was created": 35 is Eastern Standard Time (Microsoft's time zone index
    values), which Exchange knows as America/New_York."""
    tokyo = recurring_kind(timezone="Asia/Tokyo")
    values = tokyo.crm_values(NEW_YORK)
    assert values["recurrence"]["zone"] == "Eastern Standard Time"
    item = tokyo.mailbox_create(values)
    assert item["timezone"] == "America/New_York"
    assert item["recurrence"] == {k: values["recurrence"][k] for k in ("pattern", "range")}
    assert tokyo.mailbox_values(item) == values
    # and back: the CRM series made from it carries the zone's code
    assert tokyo.crm_create(tokyo.mailbox_values(item))["utcconversiontimezonecode"] == 35


def test_zones_compare_by_windows_name_and_unknown_ones_fall_back() -> None:
    """Europe/Madrid and Europe/Paris are one Windows zone (Romance Standard Time, code 105):
    the same series zone on both sides. A code the app does not list, or an item without a
    zone, gives the kind's zone (the profile's): the copy was made in it."""
    kind = recurring_kind(timezone="Asia/Tokyo")
    madrid = {"recurrence": kind.mailbox_create(kind.crm_values(MASTER_ROW))["recurrence"],
              "timezone": "Europe/Madrid"}  # fmt: skip
    assert kind.field("recurrence").mailbox_value(madrid)["zone"] == "Romance Standard Time"
    assert kind.crm_create(kind.mailbox_values(madrid))["utcconversiontimezonecode"] == 105
    unlisted = kind.crm_values({**MASTER_ROW, "utcconversiontimezonecode": 1})
    assert unlisted["recurrence"]["zone"] == "Tokyo Standard Time"
    assert kind.mailbox_create(unlisted)["timezone"] == "Asia/Tokyo"
    bare = {"recurrence": madrid["recurrence"]}
    assert kind.field("recurrence").mailbox_value(bare)["zone"] == "Tokyo Standard Time"


def test_a_zone_changed_in_the_mailbox_reaches_the_master() -> None:
    world = World(MemoryCrm(me=ME), MemoryMailbox(), MemoryLinkStore(), RECURRING_APPOINTMENTS)
    master = world.crm.put("recurringappointmentmasters", {**NEW_YORK, "_ownerid_value": ME})
    assert world.sync().mailbox.created == 1
    item_id = world.item_for(master.id)
    assert world.items()[item_id]["timezone"] == "America/New_York"
    world.mailbox.edit("appointments", item_id, {"timezone": "Europe/Paris"})
    assert world.sync().crm.updated == 1
    assert world.crm_rows()[master.id]["utcconversiontimezonecode"] == 105
    assert world.sync().changed == 0


class CountingCrm(MemoryCrm):
    """Notes the ids read by id."""

    def __init__(self) -> None:
        super().__init__(me=ME)
        self.read_ids: list[str] = []

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        self.read_ids += list(ids)
        return super().read(kind, ids)


def test_series_occurrence_rows_are_not_read_again_by_id() -> None:
    """The single-appointment kind reads changed rows again by id (for their parties); a
    series' instance and exception rows (instancetypecode 2 and 3) are not its own, so only
    their change-feed fields are used (an exception names its series for the series' run)."""
    crm, mailbox, store = CountingCrm(), MemoryMailbox(), MemoryLinkStore()
    master = crm.put("recurringappointmentmasters", {**MASTER_ROW, "_ownerid_value": ME})
    single = crm.put("appointments", {**APPOINTMENT_ROW, "_ownerid_value": ME})
    instance = crm.put("appointments", {**APPOINTMENT_ROW, "instancetypecode": 2,
                                        "_seriesid_value": master.id})  # fmt: skip
    moved = crm.put("appointments", {**APPOINTMENT_ROW, "instancetypecode": 3,
                                     "_seriesid_value": master.id})  # fmt: skip
    world = World(crm, mailbox, store, APPOINTMENTS)
    result = sync_kind(APPOINTMENTS, crm, mailbox, store, world.settings(clock=lambda: NOW))
    assert result.mailbox.created == 1
    assert single.id in crm.read_ids
    assert instance.id not in crm.read_ids and moved.id not in crm.read_ids
    # the exception's series is still noted for the series kind's next run
    assert master.id in store.get_token("recurringappointments", "touched")


def test_a_deleted_list_that_cannot_be_read_whole_is_read_in_parts() -> None:
    """recurringappointmentmaster.md gives DeletedExceptionsList as a Memo ("List of deleted
    instances of the recurring appointment series") without a format: moments on lines, with a
    blank between date and time, or in other offsets, are all read; what is no moment is left
    out instead of failing the series."""
    text = "2027-03-15T09:00:00Z\r\n2027-03-22 09:00:00;oops, 2027-03-29T11:00:00+02:00"
    assert exceptions.parse_deleted_list(text) == [
        "2027-03-15T09:00:00Z", "2027-03-22T09:00:00Z", "2027-03-29T09:00:00Z"]  # fmt: skip
    row: dict[str, Any] = {**MASTER_ROW, "deletedexceptionslist": text}
    value = RECURRING_APPOINTMENTS.crm_values(row)["exceptions"]
    assert value["deleted"] == ["2027-03-15T09:00:00Z", "2027-03-22T09:00:00Z",
                                "2027-03-29T09:00:00Z"]  # fmt: skip
