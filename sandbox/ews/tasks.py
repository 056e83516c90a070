"""A task's progress as Exchange keeps it: Status, PercentComplete and CompleteDate agree.

The EWS reference (Status and PercentComplete elements): setting PercentComplete to 100, setting
CompleteDate and setting Status to Completed have the same effect, and in a request that sets
two or more of them the last one processed decides; e.g. PercentComplete 100, CompleteDate and
Status NotStarted, in that order, leave Status NotStarted, no CompleteDate and PercentComplete 0.
Only these documented moves are made; other values are stored as sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from sandbox.ews.store import iso, now
from sandbox.ews.xml import Element, el, t

PROGRESS = ("Status", "PercentComplete", "CompleteDate")


def _value(fields: dict[str, Element], name: str) -> str | None:
    node = fields.get(name)
    return (node.text or "").strip() if node is not None else None


def _complete(fields: dict[str, Element], date: str | None) -> None:
    fields["Status"] = el(t("Status"), "Completed")
    fields["PercentComplete"] = el(t("PercentComplete"), "100")
    fields["CompleteDate"] = el(t("CompleteDate"), date or iso(now()))


def settle_progress(fields: dict[str, Element], order: Iterable[str]) -> set[str]:
    """Apply the progress fields a request set, in its `order`, as Exchange does, to `fields`
    (the item's fields with the request's applied). Returns the other fields that changed as
    a consequence, for the item's change log."""
    names = [n for n in order if n in PROGRESS]
    requested = {n: fields[n] for n in names if n in fields}
    derived: set[str] = set()
    for name in names:
        if name in requested:  # each as the request set it, before what follows from it
            fields[name] = requested[name]
        start = {n: _value(fields, n) for n in PROGRESS}
        if _completes(name, start):
            _complete(fields, start["CompleteDate"])
        elif name == "Status" and start["Status"] == "NotStarted":
            fields["PercentComplete"] = el(t("PercentComplete"), "0")
            fields.pop("CompleteDate", None)
        derived |= {n for n in PROGRESS if n != name and _value(fields, n) != start[n]}
    return derived


def _completes(name: str, values: dict[str, str | None]) -> bool:
    """Whether setting `name` to its value completes the task (the three equivalent moves)."""
    value = values[name]
    if name == "CompleteDate":
        return bool(value)
    if name == "Status":
        return value == "Completed"
    return _is_hundred(value)


def _is_hundred(value: str | None) -> bool:
    try:
        return value is not None and float(value) >= 100
    except ValueError:
        return False
