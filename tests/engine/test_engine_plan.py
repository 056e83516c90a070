"""The plan's decisions, one per action, and the run's guards (over memory sides)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sync.engine import ChangeSet, EngineSettings, KindResult, apply_actions, plan, reverse_conflict
from sync.engine.plan import (
    CreateCrm,
    CreateMailbox,
    DeleteMailbox,
    DropLink,
    Untrack,
    Update,
)
from sync.engine.state import UNTRACKED, LinkRow, MemoryLinkStore
from sync.kinds.contacts import CONTACTS
from sync.mailbox.fields import TRACKED_CATEGORY
from sync.memory import MemoryMailbox
from sync.sides import Throttled, Unavailable, Upsert
from tests.engine.engine_world import ME, NOW, World

SETTINGS = EngineSettings(me=ME, clock=lambda: NOW)


def _linked(world: World, **crm_fields: object) -> tuple[str, str]:
    row = world.crm.put("contacts", {"firstname": "Ann", "lastname": "Lee", **crm_fields})
    world.sync()
    return row.id, world.item_for(row.id)


def _crm(record_id: str, **fields: object) -> Upsert:
    return Upsert(record_id, "v1", {"_ownerid_value": ME, "statecode": 0, **fields})


# --- pure plan ---------------------------------------------------------------------------------


def test_plan_creates_on_mailbox_only_records_in_the_filter() -> None:
    crm = ChangeSet(full=True)
    crm.add(_crm("c1", lastname="In"))
    crm.add(Upsert("c2", "v1", {"_ownerid_value": "someone-else", "statecode": 0}))
    crm.add(_crm("c3", statecode=1))
    actions = plan(CONTACTS, [], crm, ChangeSet(), SETTINGS)
    assert [type(a) for a in actions] == [CreateMailbox]
    assert actions[0].crm_id == "c1"  # type: ignore[union-attr]


def test_plan_creates_in_crm_only_tracked_items() -> None:
    mailbox = ChangeSet()
    mailbox.add(Upsert("m1", "k1", {"surname": "Tracked", "categories": [TRACKED_CATEGORY]}))
    mailbox.add(Upsert("m2", "k1", {"surname": "Private"}))
    [action] = plan(CONTACTS, [], ChangeSet(), mailbox, SETTINGS)
    assert isinstance(action, CreateCrm)
    assert action.mailbox_id == "m1" and action.values["lastname"] == "Tracked"


def test_plan_deletes_untracks_and_drops() -> None:
    links = [LinkRow("c1", "m1"), LinkRow("c2", "m2"), LinkRow("c3", "m3")]
    crm = ChangeSet(deleted={"c1", "c3"})
    mailbox = ChangeSet(deleted={"m2", "m3"})
    actions = {type(a): a for a in plan(CONTACTS, links, crm, mailbox, SETTINGS)}
    assert actions[DeleteMailbox].link.crm_id == "c1"  # type: ignore[attr-defined]
    assert actions[Untrack].link.crm_id == "c2"  # type: ignore[attr-defined]
    assert actions[DropLink].link.crm_id == "c3"  # type: ignore[attr-defined]


def test_plan_update_only_changed_fields_both_ways() -> None:
    base = {"firstname": "Ann", "lastname": "Lee", "jobtitle": None}
    values = {n: base.get(n) for n in CONTACTS.field_names}
    link = LinkRow("c1", "m1", "v1", "k1", CONTACTS.fingerprint(values),
                   CONTACTS.fingerprint(values), {"crm": values, "mailbox": values})  # fmt: skip
    crm, mailbox = ChangeSet(), ChangeSet()
    crm.add(_crm("c1", firstname="Ann", lastname="Lee", jobtitle="CEO"))
    mailbox.add(Upsert("m1", "k2", {"given_name": "Anne", "surname": "Lee"}))
    [action] = plan(CONTACTS, [link], crm, mailbox, SETTINGS)
    assert isinstance(action, Update)
    assert action.crm_patch == {"firstname": "Anne"}
    assert action.mailbox_patch == {"jobtitle": "CEO"}
    assert action.conflicts == []


def test_plan_nothing_when_only_the_version_of_an_unmapped_field_changed(world: World) -> None:
    crm_id, item_id = _linked(world)
    world.mailbox.edit("contacts", item_id, {"categories": [TRACKED_CATEGORY, "Red"]})
    result = world.sync()
    assert result.changed == 0
    assert world.sync().changed == 0


# --- merge and conflicts ------------------------------------------------------------------------


def test_conflict_crm_wins_by_default_recorded_and_reversible(world: World) -> None:
    crm_id, item_id = _linked(world)
    world.crm.edit("contacts", crm_id, {"jobtitle": "CRM title"})
    world.mailbox.edit("contacts", item_id, {"job_title": "Mailbox title", "nickname": "Annie"})
    result = world.sync()
    assert result.conflicts == 1
    assert world.items()[item_id]["job_title"] == "CRM title"
    assert world.crm_rows()[crm_id]["nickname"] == "Annie"  # the other field merged, not lost
    [conflict] = world.store.conflicts("contacts")
    assert (conflict.field, conflict.crm_value, conflict.mailbox_value, conflict.winner) == (
        "jobtitle", "CRM title", "Mailbox title", "crm")  # fmt: skip

    assert reverse_conflict(CONTACTS, conflict, world.crm, world.mailbox, world.store) is None
    world.sync()
    assert world.crm_rows()[crm_id]["jobtitle"] == "Mailbox title"
    assert world.items()[item_id]["job_title"] == "Mailbox title"
    assert world.store.conflicts("contacts")[0].reversed
    assert world.sync().changed == 0


def test_conflict_policy_mailbox_and_field_direction(world: World) -> None:
    crm_id, item_id = _linked(world)
    world.crm.edit("contacts", crm_id, {"jobtitle": "A", "department": "X"})
    world.mailbox.edit("contacts", item_id, {"job_title": "B", "department": "Y"})
    world.sync(conflict_policy="mailbox", directions={"contacts": {"department": "to_mailbox"}})
    assert world.crm_rows()[crm_id]["jobtitle"] == "B"  # policy: mailbox wins
    assert world.items()[item_id]["department"] == "X"  # direction: CRM → mailbox decides
    assert [c.field for c in world.store.conflicts("contacts")] == ["jobtitle"]


def test_one_way_field_ignores_changes_from_the_other_side(world: World) -> None:
    crm_id, item_id = _linked(world, **{
        "_parentcustomerid_value": "acc-1",
        "_parentcustomerid_value@OData.Community.Display.V1.FormattedValue": "Contoso"})  # fmt: skip
    assert world.items()[item_id]["company_name"] == "Contoso"
    world.mailbox.edit("contacts", item_id, {"company_name": "Typo Inc"})
    assert world.sync().crm.updated == 0
    assert "company" not in world.crm_rows()[crm_id]


# --- deletes, filters, untrack -----------------------------------------------------------------


def test_crm_delete_removes_mailbox_copy_and_mailbox_delete_untracks(world: World) -> None:
    a, item_a = _linked(world)
    b = world.crm.put("contacts", {"lastname": "B"}).id
    world.sync()
    item_b = world.item_for(b)
    world.crm.remove("contacts", a)
    world.mailbox.remove("contacts", item_b)
    result = world.sync()
    assert result.mailbox.deleted == 1 and result.untracked == 1
    assert item_a not in world.items()
    assert b in world.crm_rows()  # never deleted in the CRM
    [link] = world.store.load_links("contacts")
    assert link.crm_id == b and link.state == UNTRACKED
    world.crm.edit("contacts", b, {"jobtitle": "changed"})
    assert world.sync().mailbox.created == 0  # untracked stays untracked


def test_record_leaving_the_filter_leaves_the_mailbox_and_stays_in_crm(world: World) -> None:
    crm_id, item_id = _linked(world)
    world.crm.edit("contacts", crm_id, {"statecode": 1})
    assert world.sync().mailbox.deleted == 1
    assert item_id not in world.items() and crm_id in world.crm_rows()
    world.crm.edit("contacts", crm_id, {"statecode": 0})
    assert world.sync().mailbox.created == 1


def test_changing_the_filter_rereads_and_applies_it(world: World) -> None:
    crm_id, item_id = _linked(world, jobtitle="Dev")
    only_ceos = [[{"field": "jobtitle", "op": "eq", "value": "CEO"}]]
    result = world.sync(filters={"contacts": only_ceos})
    assert result.mailbox.deleted == 1 and item_id not in world.items()


# --- idempotency, reinstall, tokens ----------------------------------------------------------------


def test_fresh_install_relinks_everything_and_creates_nothing(world: World) -> None:
    for i in range(4):
        world.crm.put("contacts", {"lastname": f"C{i}"})
    world.tracked_item(surname="FromMailbox")
    world.sync()
    before_crm, before_items = dict(world.crm_rows()), dict(world.items())
    world.store = MemoryLinkStore()
    result = world.sync()
    assert result.crm.created == 0 and result.mailbox.created == 0
    assert result.relinked == 5
    assert world.crm_rows() == before_crm and world.items() == before_items
    assert world.sync().changed == 0


def test_a_create_whose_item_exists_already_relinks_it_and_writes_nothing(world: World) -> None:
    """A retried mailbox create (the first attempt's answer lost) finds the item by its key."""
    crm_id = world.crm.put("contacts", {"lastname": "Once"}).id
    item = world.mailbox.put("contacts", {"surname": "Once"}, key=crm_id)
    values = CONTACTS.crm_values(world.crm.records("contacts")[crm_id].fields)
    result = KindResult("contacts")

    apply_actions(CONTACTS, [CreateMailbox(crm_id, "v1", values)], world.crm, world.mailbox,
                  world.store, world.settings(), result)  # fmt: skip

    assert (result.mailbox.created, result.relinked) == (0, 1)
    assert list(world.items()) == [item.id] and world.item_for(crm_id) == item.id
    # maybe made by another writer after this run's read: the next run checks it is still
    # there (a change feed forgets an item made and deleted after its position)
    assert result.made_in_mailbox == [item.id]


def test_fresh_install_keeps_untracked_copies_out_of_the_mailbox(world: World) -> None:
    kept, untracked = (world.crm.put("contacts", {"lastname": n}).id for n in ("Kept", "Gone"))
    world.sync()
    world.mailbox.remove("contacts", world.item_for(untracked))
    assert world.sync().untracked == 1
    assert world.mailbox.untracked == {"contacts": {untracked}}  # recorded in the mailbox

    world.store = MemoryLinkStore()  # a new install: only the mailbox remembers
    result = world.sync()
    assert result.mailbox.created == 0 and result.crm.created == 0 and result.relinked == 1
    assert sorted(f["surname"] for f in world.items().values()) == ["Kept"]
    assert world.store.untracked_ids("contacts") == {untracked}
    assert kept not in world.store.untracked_ids("contacts")

    # the CRM record deleted: its mark goes too
    world.crm.remove("contacts", untracked)
    world.sync()
    assert world.mailbox.untracked == {"contacts": set()}


def test_marks_the_mailbox_refused_are_written_by_a_later_run(world: World) -> None:
    crm_id = world.crm.put("contacts", {"lastname": "Gone"}).id
    world.sync()
    world.mailbox.remove("contacts", world.item_for(crm_id))
    refuse = True

    def save_untracked(kind: str, crm_ids: Any) -> None:
        if refuse:
            raise Unavailable("server busy")
        MemoryMailbox.save_untracked(world.mailbox, kind, crm_ids)

    world.mailbox.save_untracked = save_untracked  # type: ignore[method-assign]
    assert world.sync().untracked == 1  # the run itself succeeds
    assert world.mailbox.untracked == {}
    world.sync()
    assert world.mailbox.untracked == {}
    refuse = False
    world.sync()
    assert world.mailbox.untracked == {"contacts": {crm_id}}
    world.mailbox.calls.clear()
    world.sync()
    assert world.mailbox.calls["save_untracked"] == 0  # written once, not every run


def test_expired_token_means_a_full_read_without_duplicates(world: World) -> None:
    _linked(world)
    world.crm.expire_tokens("contacts")
    world.mailbox.expire_tokens("contacts")
    result = world.sync()
    assert result.changed == 0 and len(world.items()) == 1


def test_quiet_run_costs_one_read_per_side(world: World) -> None:
    _linked(world)
    world.sync()
    world.crm.calls.clear()
    world.mailbox.calls.clear()
    loads: list[str] = []
    load_links = world.store.load_links
    world.store.load_links = lambda kind: loads.append(kind) or load_links(kind)
    assert world.sync().changed == 0
    assert dict(world.crm.calls) == {"read_changes": 1}
    assert dict(world.mailbox.calls) == {"read_changes": 1}
    assert loads == []  # no full table of links for a quiet run


def test_throttled_and_unavailable_items_are_parked_then_retried_without_duplicates(
    world: World,
) -> None:
    for i in range(3):
        world.crm.put("contacts", {"lastname": f"C{i}"})
    world.tracked_item(surname="M")
    answers = iter([Throttled("busy", retry_after=120), Unavailable("reset"), None, None])
    world.mailbox.hook = lambda where, kind, op: next(answers) if where == "before" else None
    world.crm.hook = lambda where, kind, op: Throttled("busy") if where == "before" else None
    result = world.sync()
    assert result.errors == 3 and result.mailbox.created == 1
    world.mailbox.hook = world.crm.hook = None
    assert world.sync().errors == 0  # not due yet: nothing retried, nothing lost
    world.now += timedelta(hours=1)
    result = world.sync()
    assert result.mailbox.created == 2 and result.crm.created == 1
    surnames = sorted(f.get("surname") for f in world.items().values())
    assert surnames == ["C0", "C1", "C2", "M"]
    assert len(world.crm_rows()) == 4
    assert world.sync().changed == 0


def test_alert_after_repeated_failures(world: World) -> None:
    world.crm.put("contacts", {"lastname": "Stuck"})
    world.mailbox.hook = lambda where, kind, op: Unavailable("down") if where == "before" else None
    for _ in range(5):
        world.sync()
        world.now += timedelta(days=1)
    assert [a[0] for a in world.store.alerts] == ["item-failed"]


# --- emptied-side guard ---------------------------------------------------------------------------


def test_emptied_mailbox_stops_the_run_and_changes_nothing(world: World) -> None:
    for i in range(8):
        world.crm.put("contacts", {"lastname": f"C{i}"})
    world.sync()
    for item_id in list(world.items()):
        world.mailbox.remove("contacts", item_id)
    world.mailbox.expire_tokens("contacts")  # a full read that lists nothing
    result = world.sync()
    assert result.stopped == "side-emptied" and result.changed == 0
    assert [a[0] for a in world.store.alerts] == ["side-emptied"]
    assert all(lk.state == "synced" for lk in world.store.load_links("contacts"))
    result = world.sync(confirm_emptied=True)
    assert result.untracked == 8 and len(world.crm_rows()) == 8


def test_emptied_crm_stops_the_run(world: World) -> None:
    for i in range(8):
        world.crm.put("contacts", {"lastname": f"C{i}"})
    world.sync()
    for crm_id in list(world.crm_rows()):
        world.crm.remove("contacts", crm_id)
    world.crm.expire_tokens("contacts")
    assert world.sync().stopped == "side-emptied"
    assert len(world.items()) == 8
