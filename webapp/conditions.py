"""The condition lines of the two filter builders: the wizard's sync filters and its offline
filters. Both read their lines from the posted form the same way and draw them with one macro
(`templates/wizard/_conditions.html`); each builder's field names carry its own prefix ("" or
"offline_"), so both builders live in one page's form data without mixing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sync.setup import user_filters
from sync.setup.messages import Msg
from sync.setup.user_filters import FieldDef


@dataclass(frozen=True)
class ConditionRow:
    """One condition line, as posted: its field (of the chosen kind or table only), the
    comparisons that field's type allows, and what was typed (`days`: "days from today", which
    only the sync filters' dates offer)."""

    index: int
    field: FieldDef | None
    op: str
    value: str
    days: str
    operators: tuple[tuple[str, Msg], ...]


def condition_rows(
    form: Mapping[str, str], field_of: Callable[[str], FieldDef | None], prefix: str = ""
) -> list[ConditionRow]:
    """The builder's lines: a field `field_of` does not know (the kind or table was changed) is
    dropped, an operator the field's type does not take falls back to the type's first, and a
    line whose field was just changed (`shown_field_N` is the one drawn before) starts empty."""
    rows = []
    for i in range(user_filters.MAX_CONDITIONS):
        op_name, value_name, days_name = (f"{prefix}{part}_{i}" for part in ("op", "value", "days"))
        column = form.get(f"{prefix}field_{i}", "")
        definition = field_of(column)
        allowed = user_filters.OPERATORS_BY_TYPE[definition.type] if definition else ()
        if form.get(f"{prefix}shown_field_{i}", column) != column:
            form = {**form, op_name: "", value_name: "", days_name: ""}
        op = form.get(op_name, "")
        operators = tuple(
            (o, user_filters.operator_label(definition, o)) for o in allowed if definition
        )
        rows.append(
            ConditionRow(
                i,
                definition,
                op if op in allowed else (allowed[0] if allowed else ""),
                form.get(value_name, ""),
                form.get(days_name, ""),
                operators,
            )
        )
    return rows
