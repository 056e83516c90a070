"""FindItem: restrictions (field URIs and extended properties), sorting, indexed paging,
calendar views.

A restriction is evaluated by a `Restriction` made once per request: it reads each item's field
values once (not once per condition), and answers an Or of IsEqualTo conditions on one field
against plain text constants (the adapter's lookup of 200 CRM ids) by set membership."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sandbox.ews.items import Shape, addresses, field_value, render_item, uri_name
from sandbox.ews.ops.common import per_node, resolve_folder
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
    sub,
    t,
    text,
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


def _is_plain_text(value: str) -> bool:
    """Whether `compare` treats `value` as text only (not a boolean, number or moment), so that
    equality with it is equality of lower-cased strings."""
    if value.lower() in _BOOL or _as_moment(value) is not None:
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


MAX_FILTER_EXPRESSIONS = 255
"""EWS refuses a restriction of more filter expressions (ErrorRestrictionTooLong)."""
_FILTERS = {"And", "Or", "Not", "Exists", "Contains", "Excludes", *COMPARE}


def _uri_key(uri: Element) -> tuple[str, str, str, str]:
    """What identifies the values a URI element reads (equal for equal URIs in other nodes)."""
    return (local(uri), uri_name(uri), uri.get("FieldURI", ""), uri.get("FieldIndex", ""))


class Restriction:
    """One request's restriction, evaluated item by item with per-item value memos."""

    def __init__(self, mbx: Mailbox, root: Element) -> None:
        self.mbx = mbx
        self.root = root
        count = sum(1 for node in root.iter() if local(node) in _FILTERS)
        if count > MAX_FILTER_EXPRESSIONS:
            raise EwsError(
                "ErrorRestrictionTooLong",
                f"The restriction contains {count} filter expressions; at most "
                f"{MAX_FILTER_EXPRESSIONS} are allowed.",
            )
        self._values: dict[tuple[int, tuple[str, str, str, str]], list[str]] = {}
        self._sets: dict[int, tuple[Element, frozenset[str]] | None] = {}

    def __call__(self, item: Item) -> bool:
        return self.matches(item, self.root)

    def values(self, item: Item, uri: Element) -> list[str]:
        """`_uri_values`, read once per item and field for the whole request."""
        key = (id(item), _uri_key(uri))
        found = self._values.get(key)
        if found is None:
            found = self._values[key] = _uri_values(self.mbx, item, uri)
        return found

    def _equal_set(self, node: Element) -> tuple[Element, frozenset[str]] | None:
        """For an Or whose children are all IsEqualTo(the same field, a plain text constant):
        that field's URI and the lower-cased constants; else None."""
        if id(node) in self._sets:
            return self._sets[id(node)]
        found: tuple[Element, frozenset[str]] | None = None
        uri, constants = None, []
        for child in node:
            const = find(child, "t:FieldURIOrConstant/t:Constant")
            if local(child) != "IsEqualTo" or len(child) == 0 or const is None:
                break
            value = const.get("Value", "")
            if not _is_plain_text(value):
                break
            if uri is None:
                uri = child[0]
            elif _uri_key(child[0]) != _uri_key(uri):
                break
            constants.append(value.lower())
        else:
            if uri is not None:
                found = (uri, frozenset(constants))
        self._sets[id(node)] = found
        return found

    def _operand(self, item: Item, node: Element) -> list[str]:
        const = find(node, "t:Constant")
        if const is not None:
            return [const.get("Value", "")]
        inner = next(iter(node), None)
        return self.values(item, inner) if inner is not None else []

    def matches(self, item: Item, node: Element) -> bool:
        kind = local(node)
        if kind == "And":
            return all(self.matches(item, c) for c in node)
        if kind == "Or":
            equal_set = self._equal_set(node)
            if equal_set is not None:
                # Same answer as comparing one by one: a plain text constant equals a value
                # exactly when their lower-cased texts are equal (see `compare`).
                uri, wanted = equal_set
                return any(v.lower() in wanted for v in self.values(item, uri))
            return any(self.matches(item, c) for c in node)
        if kind == "Not":
            return not self.matches(item, node[0])
        if kind == "Exists":
            return bool(self.values(item, node[0]))
        if kind in COMPARE:
            left = self.values(item, node[0])
            right = self._operand(item, find(node, "t:FieldURIOrConstant"))
            test = COMPARE[kind]
            if not left:
                return kind == "IsNotEqualTo"
            if kind == "IsNotEqualTo":
                return all(test(compare(a, b)) for a in left for b in right)
            return any(test(compare(a, b)) for a in left for b in right)
        return _match_other(self, item, node, kind)


def matches(mbx: Mailbox, item: Item, node: Element) -> bool:
    """Whether `item` satisfies the restriction `node` (one item; see `Restriction` for many)."""
    return Restriction(mbx, node)(item)


def _match_other(restriction: Restriction, item: Item, node: Element, kind: str) -> bool:
    """Contains and Excludes."""
    if kind == "Contains":
        mode = node.get("ContainmentMode", "Substring")
        ignore_case = "IgnoreCase" in node.get("ContainmentComparison", "Exact")
        constant = find(node, "t:Constant")
        needle = constant.get("Value", "") if constant is not None else ""
        for value in restriction.values(item, node[0]):
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
        values = restriction.values(item, node[0])
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
    """Items in the SortOrder's order. Ties (times the wire gives to the second) fall back to
    the order the items arrived in, in the primary key's direction, as the store's finer times
    order them in Exchange: the newest first for "DateTimeReceived Descending"."""
    if order is None:
        return items
    from functools import cmp_to_key

    orders = findall(order, "t:FieldOrder")
    if not orders:
        return items
    newest_first = orders[0].get("Order", "Ascending") == "Descending"
    items = sorted(items, key=lambda i: (i.created, i.content_seq), reverse=newest_first)
    for field_order in reversed(orders):
        name = uri_name(field_order[0])
        sign = -1 if field_order.get("Order", "Ascending") == "Descending" else 1

        def cmp(a: Item, b: Item, name: str = name, sign: int = sign) -> int:
            va, vb = field_value(mbx, a, name), field_value(mbx, b, name)
            if va is None or vb is None:
                return sign * ((va is None) - (vb is None))
            return sign * compare(va, vb)

        items = sorted(items, key=cmp_to_key(cmp))
    return items


_NOT_IN_FIND_ITEM = {
    "Body",
    "UniqueBody",
    "TextBody",
    "NormalizedBody",
    "Attachments",
    "MimeContent",
    "ToRecipients",
    "CcRecipients",
    "BccRecipients",
    "ReplyTo",
    "InternetMessageHeaders",
}
"""What FindItem never returns: "any of the message body formats or the recipient lists"
(finditem-operation.md); Body, Attachments, InternetMessageHeaders, To/Cc/BccRecipients and
ReplyTo are "No" for FindItem in email-properties-and-elements-in-ews-in-exchange.md, Table 1
("you cannot extend … the FindItem operation to retrieve … ToRecipients, CcRecipients, and
BccRecipients")."""
_NAME_ONLY = {"From", "Sender", "Organizer"}
"""finditem-operation.md: FindItem "returns only the Name (EmailAddressType) element and does
not return the EmailAddress (NonEmptyStringType) element" of a message's From and Sender and a
calendar item's Organizer."""


def _summary(node: Element) -> Element:
    """An item as FindItem answers it (a summary: see `_NOT_IN_FIND_ITEM`, `_NAME_ONLY`)."""
    for child in list(node):
        name = local(child)
        if name in _NOT_IN_FIND_ITEM:
            node.remove(child)
        elif name in _NAME_ONLY:
            for mailbox in child.iter(t("Mailbox")):
                for part in list(mailbox):
                    if local(part) != "Name":
                        mailbox.remove(part)
    return node


def find_item(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox
    shape = Shape.parse(find(req, "m:ItemShape"))
    restriction = find(req, "m:Restriction")
    view = find(req, "m:IndexedPageItemView")
    calendar = find(req, "m:CalendarView")

    def answer(node: Element, msg: Element) -> None:
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
            test = Restriction(mbx, restriction[0])
            items = [i for i in items if test(i)]
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
        root = sub(msg, m("RootFolder"))
        if calendar is None:
            root.set("IndexedPagingOffset", str(offset + len(page)))
        root.set("TotalItemsInView", str(total))
        root.set("IncludesLastItemInRange", "true" if offset + len(page) >= total else "false")
        out = sub(root, t("Items"))
        for item in page:
            out.append(_summary(render_item(mbx, item, shape)))

    return per_node("FindItem", children(req, "m:ParentFolderIds"), answer)
