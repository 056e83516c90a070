"""Recurring calendar series: occurrence expansion, occurrence ids, exceptions, deletions.

A master keeps its Recurrence element as sent. Occurrences are computed in the wall-clock time of
the master's StartTimeZone (so a weekly 09:00 meeting stays at 09:00 across DST). An occurrence has
an id derived from the master id and its 1-based instance index; changing it creates an exception
item with that id; deleting it records the index. Either changes the master (new change key).
"""

from __future__ import annotations

import base64
import calendar
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sandbox.ews.store import Item, Mailbox, iso
from sandbox.ews.xml import Element, EwsError, copy, el, find, local, sub, t, text

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
INDEX = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": -1}
MONTHS = {name: i for i, name in enumerate(calendar.month_name) if name}
MAX_OPEN_ENDED = 730  # occurrences generated for a series without an end
_OCC = b"SBXOCC1|"


def occurrence_id(master_id: str, index: int) -> str:
    return base64.b64encode(_OCC + f"{master_id}|{index}".encode()).decode()


def parse_occurrence_id(ident: str) -> tuple[str, int] | None:
    try:
        raw = base64.b64decode(ident, validate=True)
    except ValueError:
        return None
    if not raw.startswith(_OCC):
        return None
    master, _, index = raw[len(_OCC) :].decode().rpartition("|")
    return master, int(index)


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _zone(item: Item) -> ZoneInfo:
    node = item.fields.get("StartTimeZone")
    if node is None:
        node = item.fields.get("MeetingTimeZone")
    name = node.get("Id") if node is not None else None
    if not name:
        return ZoneInfo("UTC")
    try:
        from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

        return ZoneInfo(MS_TIMEZONE_TO_IANA_MAP.get(name, name))
    except (ImportError, ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _days(node: Element | None) -> list[int]:
    """Weekday numbers (Monday 0) for a DaysOfWeek value, incl. Day / Weekday / WeekendDay."""
    out: list[int] = []
    for word in ((node.text or "") if node is not None else "").split():
        if word == "Day":
            out += list(range(7))
        elif word == "Weekday":
            out += list(range(5))
        elif word == "WeekendDay":
            out += [5, 6]
        elif word in DAYS:
            out.append(DAYS.index(word))
    return sorted(set(out))


def _nth(year: int, month: int, days: list[int], which: int) -> date | None:
    """The `which`-th (1-4, or -1 for last) day of `month` that is one of `days`."""
    count = calendar.monthrange(year, month)[1]
    matching = [
        date(year, month, d) for d in range(1, count + 1) if date(year, month, d).weekday() in days
    ]
    if not matching:
        return None
    return (
        matching[-1] if which == -1 else (matching[which - 1] if which <= len(matching) else None)
    )


def _clamp(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _add_months(start: date, months: int) -> tuple[int, int]:
    total = start.year * 12 + start.month - 1 + months
    return total // 12, total % 12 + 1


def _candidates(pattern: Element, start: date) -> Iterator[date]:
    """Occurrence dates of a pattern from `start` on (unbounded; the caller stops)."""
    kind = local(pattern)
    interval = int(text(pattern, "t:Interval") or "1")
    if kind == "DailyRecurrence":
        day = start
        while True:
            yield day
            day += timedelta(days=interval)
    elif kind == "WeeklyRecurrence":
        days = _days(find(pattern, "t:DaysOfWeek")) or [start.weekday()]
        first_day = find(pattern, "t:FirstDayOfWeek")
        fdow = DAYS.index(first_day.text) if first_day is not None and first_day.text in DAYS else 6
        week = start - timedelta(days=(start.weekday() - fdow) % 7)
        while True:
            for offset in range(7):
                day = week + timedelta(days=offset)
                if day >= start and day.weekday() in days:
                    yield day
            week += timedelta(weeks=interval)
    elif kind in ("AbsoluteMonthlyRecurrence", "RelativeMonthlyRecurrence"):
        step = 0
        while True:
            year, month = _add_months(start, step)
            if kind == "AbsoluteMonthlyRecurrence":
                day_node = find(pattern, "t:DayOfMonth")
                candidate: date | None = _clamp(year, month, int(day_node.text or "1") if day_node is not None else start.day)  # fmt: skip
            else:
                index = find(pattern, "t:DayOfWeekIndex")
                candidate = _nth(year, month, _days(find(pattern, "t:DaysOfWeek")), INDEX.get(index.text or "First", 1) if index is not None else 1)  # fmt: skip
            if candidate is not None and candidate >= start:
                yield candidate
            step += interval
    elif kind in ("AbsoluteYearlyRecurrence", "RelativeYearlyRecurrence"):
        month_node = find(pattern, "t:Month")
        month = (
            MONTHS.get(month_node.text or "", start.month)
            if month_node is not None
            else start.month
        )
        year = start.year
        while True:
            if kind == "AbsoluteYearlyRecurrence":
                day_node = find(pattern, "t:DayOfMonth")
                candidate = _clamp(year, month, int(day_node.text or "1") if day_node is not None else start.day)  # fmt: skip
            else:
                index = find(pattern, "t:DayOfWeekIndex")
                candidate = _nth(year, month, _days(find(pattern, "t:DaysOfWeek")), INDEX.get(index.text or "First", 1) if index is not None else 1)  # fmt: skip
            if candidate is not None and candidate >= start:
                yield candidate
            year += 1
    else:
        yield start


def occurrences(master: Item) -> list[tuple[int, datetime, datetime]]:
    """(instance index, start, end) in UTC of every occurrence of a series (deleted ones too)."""
    rec = master.fields.get("Recurrence")
    start, end = _moment(master.value("Start")), _moment(master.value("End"))
    if rec is None or start is None or end is None or len(rec) < 2:
        return []
    zone = _zone(master)
    local_start = start.astimezone(zone)
    duration = end - start
    pattern, boundary = rec[0], rec[1]
    first_text = find(boundary, "t:StartDate")
    first = local_start.date()
    if first_text is not None and first_text.text:
        first = date.fromisoformat(first_text.text[:10])
    limit = MAX_OPEN_ENDED
    until: date | None = None
    if local(boundary) == "NumberedRecurrence":
        limit = int(find(boundary, "t:NumberOfOccurrences").text or "1")  # type: ignore[union-attr]
    elif local(boundary) == "EndDateRecurrence":
        until = date.fromisoformat((find(boundary, "t:EndDate").text or "")[:10])  # type: ignore[union-attr]
    out: list[tuple[int, datetime, datetime]] = []
    for day in _candidates(pattern, first):
        if until is not None and day > until or len(out) >= limit:
            break
        begin = datetime.combine(day, local_start.timetz().replace(tzinfo=None), zone)
        out.append(
            (
                len(out) + 1,
                begin.astimezone(ZoneInfo("UTC")),
                begin.astimezone(ZoneInfo("UTC")) + duration,
            )
        )
    return out


def _virtual(master: Item, index: int, begin: datetime, finish: datetime) -> Item:
    fields = {
        k: v
        for k, v in master.fields.items()
        if k not in ("Recurrence", "ModifiedOccurrences", "DeletedOccurrences")
    }
    fields["Start"] = el(t("Start"), iso(begin))
    fields["End"] = el(t("End"), iso(finish))
    fields["OriginalStart"] = el(t("OriginalStart"), iso(begin))
    item = Item(
        id=occurrence_id(master.id, index),
        kind="CalendarItem",
        folder_id=master.folder_id,
        fields=fields,
        version=master.version,
    )
    item.master_id, item.index = master.id, index
    item.created, item.modified = master.created, master.modified
    return item


def occurrence(mbx: Mailbox, master: Item, index: int) -> Item:
    """The item for one occurrence: its exception if changed, else a computed occurrence."""
    if index in master.deleted_occurrences:
        raise EwsError(
            "ErrorCalendarOccurrenceIsDeletedFromRecurrence", "The occurrence was deleted."
        )
    if index in master.exceptions:
        return mbx.items[master.exceptions[index]]
    for number, begin, finish in occurrences(master):
        if number == index:
            return _virtual(master, index, begin, finish)
    raise EwsError(
        "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
        "The occurrence index is out of the recurrence range.",
    )


def _master(mbx: Mailbox, ident: str) -> Item:
    master = mbx.item(ident)
    if master.kind != "CalendarItem" or "Recurrence" not in master.fields:
        raise EwsError("ErrorItemNotFound", "The specified object was not found in the store.")
    return master


def resolve_occurrence(mbx: Mailbox, node: Element) -> Item:
    """OccurrenceItemId (master + index) or RecurringMasterItemId (occurrence id) to an item."""
    if local(node) == "RecurringMasterItemId":
        ident = node.get("OccurrenceId", "")
        parsed = parse_occurrence_id(ident)
        if parsed is not None:
            return _master(mbx, parsed[0])
        item = mbx.item(ident)
        return _master(mbx, item.master_id) if item.master_id else item
    master = _master(mbx, node.get("RecurringMasterId", ""))
    return occurrence(mbx, master, int(node.get("InstanceIndex", "0")))


def resolve_id(mbx: Mailbox, ident: str) -> Item | None:
    """An occurrence id that is not (yet) an exception item."""
    parsed = parse_occurrence_id(ident)
    if parsed is None:
        return None
    return occurrence(mbx, _master(mbx, parsed[0]), parsed[1])


def materialise(mbx: Mailbox, item: Item) -> Item:
    """Make a computed occurrence a stored exception (before it is changed)."""
    if item.master_id is None or item.id in mbx.items:
        return item
    master = mbx.items[item.master_id]
    item.fields = {k: copy(v) for k, v in item.fields.items()}
    mbx.items[item.id] = item
    master.exceptions[item.index] = item.id
    return item


def align_master(item: Item) -> None:
    """A series' Start/End move to its first occurrence when the pattern does not fall on the
    start day, as Exchange does."""
    if item.master_id is not None or "Recurrence" not in item.fields:
        return
    found = occurrences(item)
    if not found:
        return
    _index, begin, finish = found[0]
    if iso(begin) != item.value("Start"):
        item.fields["Start"] = el(t("Start"), iso(begin))
        item.fields["End"] = el(t("End"), iso(finish))


def after_update(mbx: Mailbox, item: Item, fields: dict[str, Element], changed: set[str]) -> None:
    """A changed series drops its exceptions; a changed occurrence becomes an exception."""
    if item.master_id is not None:
        materialise(mbx, item)
        master = mbx.items[item.master_id]
        mbx.touch_item(master, {"ModifiedOccurrences"})
        return
    if "Recurrence" in changed or "Start" in changed:
        align = Item(id=item.id, kind=item.kind, folder_id=item.folder_id, fields=fields)
        align_master(align)
        for exception_id in item.exceptions.values():
            mbx.items.pop(exception_id, None)
        item.exceptions.clear()
        item.deleted_occurrences.clear()


def delete_occurrence(mbx: Mailbox, node: Element) -> None:
    target = resolve_occurrence(mbx, node)
    delete_occurrence_item(mbx, target)


def delete_occurrence_item(mbx: Mailbox, target: Item) -> None:
    if target.master_id is None:
        raise EwsError("ErrorItemNotFound", "The specified object was not found in the store.")
    master = mbx.items[target.master_id]
    master.exceptions.pop(target.index, None)
    mbx.items.pop(target.id, None)
    master.deleted_occurrences.add(target.index)
    mbx.touch_item(master, {"DeletedOccurrences"})


def _occurrence_elem(tag: str, item: Item) -> Element:
    node = el(t(tag))
    sub(node, t("ItemId"), Id=item.id, ChangeKey=item.change_key)
    sub(node, t("Start"), item.value("Start") or "")
    sub(node, t("End"), item.value("End") or "")
    sub(node, t("OriginalStart"), item.value("OriginalStart") or item.value("Start") or "")
    return node


def occurrence_info(mbx: Mailbox, item: Item, name: str) -> Element | None:
    """FirstOccurrence / LastOccurrence / ModifiedOccurrences / DeletedOccurrences of a master."""
    if item.master_id is not None or "Recurrence" not in item.fields:
        return None
    all_occurrences = occurrences(item)
    if name == "ModifiedOccurrences":
        if not item.exceptions:
            return None
        node = el(t(name))
        for index in sorted(item.exceptions):
            node.append(_occurrence_elem("Occurrence", mbx.items[item.exceptions[index]]))
        return node
    if name == "DeletedOccurrences":
        if not item.deleted_occurrences:
            return None
        node = el(t(name))
        starts = {i: b for i, b, _ in all_occurrences}
        for index in sorted(item.deleted_occurrences):
            if index in starts:
                sub(sub(node, t("DeletedOccurrence")), t("Start"), iso(starts[index]))
        return node
    alive = [o for o in all_occurrences if o[0] not in item.deleted_occurrences]
    if not alive:
        return None
    index, begin, finish = alive[0] if name == "FirstOccurrence" else alive[-1]
    if name == "LastOccurrence" and len(all_occurrences) >= MAX_OPEN_ENDED:
        return None  # no end: Exchange leaves LastOccurrence out
    target = occurrence(mbx, item, index)
    return _occurrence_elem(name, target)


def expand_view(mbx: Mailbox, items: list[Item], view: Element) -> list[Item]:
    """Items and occurrences overlapping a CalendarView window, by start."""
    start, end = _moment(view.get("StartDate")), _moment(view.get("EndDate"))
    out: list[Item] = []
    for item in items:
        if "Recurrence" in item.fields:
            for index, begin, finish in occurrences(item):
                if end is not None and begin >= end:
                    break
                if index in item.deleted_occurrences or (start is not None and finish <= start):
                    continue
                out.append(occurrence(mbx, item, index))
            continue
        first, last = _moment(item.value("Start")), _moment(item.value("End"))
        if first is None or last is None:
            continue
        if (end is None or first < end) and (start is None or last > start):
            out.append(item)
    out.sort(key=lambda i: i.value("Start") or "")
    return out
