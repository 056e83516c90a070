"""FindItem: restrictions (field URIs and extended properties), sorting, indexed paging,
calendar views."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sandbox.ews.items import Shape, addresses, field_value, render_item, uri_name
from sandbox.ews.ops.common import resolve_folder
from sandbox.ews.store import Item, Mailbox
from sandbox.ews.xml import (
    Element,
    EwsError,
    SoapFault,
    children,
    find,
    findall,
    local,
    m,
    response_message,
    sub,
    t,
    text,
    wrap_messages,
)

if TYPE_CHECKING:
    from sandbox.ews.server import Ctx

COMPARE = {
    "IsEqualTo": lambda c: c == 0,
    "IsNotEqualTo": lambda c: c != 0,
    "IsGreaterThan": lambda c: c > 0,
    "IsGreaterThanOrEqualTo": lambda c: c >= 0,
    "IsLessThan": lambda c: c < 0,
    "IsLessThanOrEqualTo": lambda c: c <= 0,
}


def _values(mbx: Mailbox, item: Item, name: str) -> list[str]:
    """All values of a field (multi-valued fields such as Categories give several)."""
    node = item.fields.get(name)
    if node is not None and not name.startswith("ext:"):
        strings = findall(node, "t:String")
        if strings:
            return [s.text or "" for s in strings]
    value = field_value(mbx, item, name)
    if value is None:
        return []
    if name.startswith("ext:") and "\n" in value:
        return value.split("\n")
    return [value]


def _uri_values(mbx: Mailbox, item: Item, uri: Element) -> list[str]:
    """Values for a FieldURI / ExtendedFieldURI, or one entry of an indexed contact field."""
    name = uri_name(uri)
    if local(uri) != "IndexedFieldURI":
        return _values(mbx, item, name)
    container = item.fields.get(name)
    key = uri.get("FieldIndex", "")
    entry = next((e for e in findall(container, "t:Entry") if e.get("Key") == key), None)
    if entry is None:
        return []
    path = uri.get("FieldURI", "")
    if path.count(":") >= 2:  # contacts:PhysicalAddress:City
        part = find(entry, f"t:{path.split(':')[2]}")
        return [part.text or ""] if part is not None else []
    return [entry.text or ""]


def _as_moment(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


_BOOL = {"true": "1", "false": "0"}


def compare(left: str, right: str) -> int:
    """Dates as moments, numbers as numbers, otherwise case-insensitive text."""
    if left.lower() in _BOOL or right.lower() in _BOOL:
        # exchangelib writes booleans as 1/0; Exchange answers true/false.
        left, right = _BOOL.get(left.lower(), left), _BOOL.get(right.lower(), right)
    a, b = _as_moment(left), _as_moment(right)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    try:
        x, y = float(left), float(right)
        return (x > y) - (x < y)
    except ValueError:
        pass
    la, lb = left.lower(), right.lower()
    return (la > lb) - (la < lb)


def _operand(mbx: Mailbox, item: Item, node: Element) -> list[str]:
    const = find(node, "t:Constant")
    if const is not None:
        return [const.get("Value", "")]
    inner = next(iter(node), None)
    return _uri_values(mbx, item, inner) if inner is not None else []


def matches(mbx: Mailbox, item: Item, node: Element) -> bool:
    kind = local(node)
    if kind == "And":
        return all(matches(mbx, item, c) for c in node)
    if kind == "Or":
        return any(matches(mbx, item, c) for c in node)
    if kind == "Not":
        return not matches(mbx, item, node[0])
    if kind == "Exists":
        return bool(_uri_values(mbx, item, node[0]))
    if kind in COMPARE:
        left = _uri_values(mbx, item, node[0])
        right = _operand(mbx, item, find(node, "t:FieldURIOrConstant"))
        test = COMPARE[kind]
        if not left:
            return kind == "IsNotEqualTo"
        if kind == "IsNotEqualTo":
            return all(test(compare(a, b)) for a in left for b in right)
        return any(test(compare(a, b)) for a in left for b in right)
    if kind == "Contains":
        mode = node.get("ContainmentMode", "Substring")
        ignore_case = "IgnoreCase" in node.get("ContainmentComparison", "Exact")
        constant = find(node, "t:Constant")
        needle = constant.get("Value", "") if constant is not None else ""
        for value in _uri_values(mbx, item, node[0]):
            hay, pin = (value.lower(), needle.lower()) if ignore_case else (value, needle)
            if mode == "FullString" and hay == pin:
                return True
            if mode == "Prefixed" and hay.startswith(pin):
                return True
            if mode in ("Substring", "ExactPhrase") and pin in hay:
                return True
            if mode in ("PrefixOnWords", "PrefixOnWordsInexact") and any(
                w.startswith(pin) for w in hay.split()
            ):
                return True
        return False
    if kind == "Excludes":
        values = _uri_values(mbx, item, node[0])
        mask = find(node, "t:Bitmask")
        bits = int((mask.get("Value", "0") if mask is not None else "0"), 0)
        return all(int(v or "0", 0) & bits == 0 for v in values)
    raise SoapFault("ErrorSchemaValidation", f"Unsupported restriction element {kind}.")


def _query_matches(mbx: Mailbox, item: Item, query: str) -> bool:
    """A small AQS subset: every word (or `field:word`) must occur in subject, body or sender."""
    fields = {
        "subject": item.value("Subject") or "",
        "body": item.value("Body") or "",
        "from": " ".join(f"{n} {a}" for n, a in addresses(item, "From")),
    }
    everything = " ".join(fields.values()).lower()
    for word in query.split():
        name, _, value = word.partition(":")
        if value and name.lower() in fields:
            if value.strip('"').lower() not in fields[name.lower()].lower():
                return False
        elif word.strip('"').lower() not in everything:
            return False
    return True


def _sort(mbx: Mailbox, items: list[Item], order: Element | None) -> list[Item]:
    if order is None:
        return items
    from functools import cmp_to_key

    for field_order in reversed(findall(order, "t:FieldOrder")):
        name = uri_name(field_order[0])
        reverse = field_order.get("Order", "Ascending") == "Descending"

        def cmp(a: Item, b: Item, name: str = name) -> int:
            va, vb = field_value(mbx, a, name), field_value(mbx, b, name)
            if va is None or vb is None:
                return (va is None) - (vb is None)
            return compare(va, vb)

        items = sorted(items, key=cmp_to_key(cmp), reverse=reverse)
    return items


def find_item(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox
    shape = Shape.parse(find(req, "m:ItemShape"))
    restriction = find(req, "m:Restriction")
    view = find(req, "m:IndexedPageItemView")
    calendar = find(req, "m:CalendarView")
    messages = []
    for node in children(req, "m:ParentFolderIds"):
        try:
            folder = resolve_folder(mbx, node)
            items = [mbx.items[i] for i in folder.items]
            if req.get("Traversal", "Shallow") in ("Associated", "SoftDeleted"):
                items = []  # no folder-associated or soft-deleted items are kept
            if calendar is not None:
                from sandbox.ews.recurrence import expand_view

                items = expand_view(mbx, items, calendar)
            query = text(req, "m:QueryString")
            if query:
                items = [i for i in items if _query_matches(mbx, i, query)]
            if restriction is not None and len(restriction):
                items = [i for i in items if matches(mbx, i, restriction[0])]
            items = _sort(mbx, items, find(req, "m:SortOrder"))
            total = len(items)
            offset, limit = 0, total
            if view is not None:
                offset = int(view.get("Offset", "0"))
                limit = int(view.get("MaxEntriesReturned", str(total)))
                if view.get("BasePoint", "Beginning") == "End":
                    offset = max(0, total - offset - limit)
            elif calendar is not None and calendar.get("MaxEntriesReturned"):
                limit = int(calendar.get("MaxEntriesReturned", "0"))
                if total > limit:
                    raise EwsError(
                        "ErrorCalendarViewRangeTooBig",
                        "The calendar view range has more items than MaxEntriesReturned.",
                    )
            page = items[offset : offset + limit]
            msg = response_message("FindItemResponseMessage")
            root = sub(msg, m("RootFolder"))
            if calendar is None:
                root.set("IndexedPagingOffset", str(offset + len(page)))
            root.set("TotalItemsInView", str(total))
            root.set("IncludesLastItemInRange", "true" if offset + len(page) >= total else "false")
            out = sub(root, t("Items"))
            for item in page:
                out.append(render_item(mbx, item, shape))
        except EwsError as exc:
            msg = response_message("FindItemResponseMessage", exc)
        messages.append(msg)
    return wrap_messages("FindItem", messages)
