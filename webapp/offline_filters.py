"""The wizard's offline filters of the user's own (issue 12, item 1): a builder in the "What to
sync" step's offline part, for the listed record types and any table typed by logical name.

Rules live in `sync.offline.filters`; this module reads the builder's form, asks the CRM (the
offline service's connection: the table's definitions, live counts, size estimates) and renders.
Routes hang on the Offline blueprint; the step's page takes `choices_context` for its part.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from flask import current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from sync.offline import filters as offline_filters
from sync.offline.filters import Estimate, TableChoice
from sync.offline.service import OfflineConnection
from sync.setup import choices as choices_step
from sync.setup import user_filters
from sync.setup.messages import N_, Msg, SetupError
from sync.setup.user_filters import FieldDef, UserFilter
from sync.sides import SideError
from webapp import i18n, offline, state
from webapp.conditions import ConditionRow, condition_rows

T = TypeVar("T")
TABLES_KEY = "mailbox_sync.offline_tables"
"""Where the app keeps what the builder read of tables (`offline_filters.TableCache`)."""


def _connected(work: Callable[[OfflineConnection], T]) -> tuple[T | None, Msg | None]:
    """`work` over the offline service's CRM connection; a failure as a message to show."""
    from webapp.wizard import failure

    try:
        connection = offline.service().connect()
    except (SideError, SetupError) as error:
        return None, failure(error)
    except Exception:  # noqa: BLE001 (no organization yet, sign-in missing: said, not raised)
        return None, N_("The CRM could not be reached. Check your network and retry.")
    try:
        return work(connection), None
    except (SetupError, SideError) as error:
        return None, failure(error)
    finally:
        connection.close()


def _table_name(form: Mapping[str, str]) -> str:
    picked = form.get("offline_table", "contacts")
    if picked == offline_filters.OTHER:
        return form.get("table_name", "").strip()
    return picked if picked in offline_filters.LISTED else "contacts"


def _rows(form: Mapping[str, str], fields: tuple[FieldDef, ...]) -> list[ConditionRow]:
    by_column = {f.column: f for f in fields}
    return condition_rows(form, by_column.get, prefix="offline_")


def _read_table(
    form: Mapping[str, str],
) -> tuple[TableChoice | None, tuple[FieldDef, ...], Msg | None]:
    """The chosen table and its fields, or why not (unknown table: the message is the error)."""
    name = _table_name(form)
    if not name:
        return None, (), None

    cache = current_app.extensions.setdefault(TABLES_KEY, offline_filters.TableCache())

    def read(connection: OfflineConnection) -> tuple[TableChoice, tuple[FieldDef, ...]]:
        return cache.table(connection.client, connection.org, connection.me, name)

    found, error = _connected(read)
    if found is None:
        return None, (), error
    return found[0], found[1], None


def builder_context(
    form: Mapping[str, str], error: Msg | None = None, read: bool = True
) -> dict[str, Any]:
    table, fields, table_error = _read_table(form) if read else (None, (), None)
    return {
        "offline_form": {**form, "offline_table": form.get("offline_table", "contacts")},
        "offline_table": table,
        "offline_rows": _rows(form, fields),
        "offline_fields": fields,
        "offline_tables": offline_filters.LISTED,
        "offline_other": offline_filters.OTHER,
        "offline_error": error or table_error,
        "offline_own": offline_filters.own_filters(state.database()),
        "offline_label": offline_filters.kind_label,
        "offline_describe": describe,
        "size_words": offline_filters.size_words,
        "offline_me": user_filters.ME_WORD,
    }


def estimates(
    found: list[UserFilter], builtin: Sequence[str] = ()
) -> tuple[dict[str, Estimate], Msg | None]:
    """Live count and size estimate per own offline filter and per built-in offline filter
    named in `builtin` (slug → Estimate)."""
    wanted: list[tuple[str, str, Sequence[Mapping[str, Any]]]] = [
        (f.slug, f.kind, f.conditions) for f in found
    ]
    for slug in builtin:
        definition = choices_step.BY_SLUG[slug]
        conditions = [{"field": c, "op": op, "value": v} for c, op, v in definition.conditions]
        wanted.append((slug, definition.kind, conditions))
    if not wanted:
        return {}, None

    def count(connection: OfflineConnection) -> dict[str, Estimate]:
        return {
            slug: offline_filters.estimate(
                connection.client,
                kind.removeprefix("offline:"),
                conditions,
                connection.me,
                connection.timezone,
            )
            for slug, kind, conditions in wanted
        }

    counted, error = _connected(count)
    return counted or {}, error


def describe(found: UserFilter) -> str:
    """A filter's conditions in short words: the field's label and the option's as the user
    chose them (kept with the condition: no CRM call here), else the column and the value."""
    parts = []
    for condition in found.conditions:
        op = user_filters.OPERATORS.get(str(condition["op"]))
        value = condition.get("value")
        if value == "me":
            shown = i18n.translate(user_filters.ME_WORD)
        else:
            shown = str(condition.get("shown") or ("" if value is None else value))
        words = i18n.translate(op) if op is not None else str(condition["op"])
        label = condition.get("label") or condition["field"]
        parts.append(f"{label} {words} {shown}".strip())
    return "; ".join(parts)


def choices_context(selected: list[str] | None, stored: Sequence[str] = ()) -> dict[str, Any]:
    """What the "What to sync" step shows of the offline filters: the user's own, and the size
    estimates of the ticked ones (built-in ones by `stored`, the saved choices)."""
    found = offline_filters.own_filters(state.database())
    ticked = [s for s in (stored if selected is None else selected) if choices_step.is_offline(s)]
    counted, error = estimates(found, ticked)
    return {
        **builder_context({}),  # the default table's fields at once (no load swap)
        "offline_own": found,
        "offline_estimates": counted,
        "offline_count_error": error,
    }


def offline_slugs() -> set[str]:
    """The wizard slugs (`user-<id>`) of the own offline filters: not messaging's."""
    return {f.slug for f in offline_filters.own_filters(state.database())}


def _allowed() -> Response | None:
    from webapp.wizard import current_profile, reachable

    profile = current_profile()
    if not reachable(profile, "choices"):
        return redirect(url_for("wizard.step", step=profile.current_step()))
    return None


def _builder(form: Mapping[str, str], error: Msg | None = None, redraw: bool = False) -> str:
    """The builder alone; `redraw`: for a change of table or field (the name box is kept)."""
    return render_template(
        "wizard/_offline_builder.html", redraw=redraw, **builder_context(form, error)
    )


@offline.bp.post("/filters/builder")
def filter_builder() -> Any:
    """htmx: redraw the offline builder for the chosen table (its fields read from the CRM)."""
    return _allowed() or _builder(dict(request.form.items()), redraw=True)


@offline.bp.post("/filters")
def add_filter() -> Any:
    """Add an offline filter of the user's own (enabled); htmx: the builder again and the new
    filter's line, ticked, with its live count and size estimate, in the step's form."""
    refused = _allowed()
    if refused is not None:
        return refused
    from webapp.wizard import go, is_htmx

    form = dict(request.form.items())
    table, fields, error = _read_table(form)
    name = form.get("offline_name", "")
    try:
        if table is None:
            raise SetupError(
                error or N_("Type the table's logical name, such as account."), "table_name"
            )
        rows = [
            (r.field.column if r.field else "", form.get(f"offline_op_{r.index}", ""), r.value)
            for r in _rows(form, fields)
        ]
        conditions = offline_filters.parse(fields, name, rows)
    except SetupError as bad:
        if is_htmx():
            return _builder(form, bad.msg)
        return go("wizard.step", step="choices")
    made = offline_filters.add(state.database(), table, name, conditions)
    if not is_htmx():
        return go("wizard.step", step="choices")
    counted, count_error = estimates([made])
    html = render_template(
        "wizard/_offline_filter_added.html",
        added=made,
        table=table,
        offline_estimates=counted,
        offline_count_error=count_error,
        **builder_context({"offline_table": form.get("offline_table", "contacts")}, read=False),
    )
    return Response(html, mimetype="text/html")


@offline.bp.post("/filters/<int:filter_id>/delete")
def delete_filter(filter_id: int) -> Any:
    refused = _allowed()
    if refused is not None:
        return refused
    from webapp.wizard import current_profile, go

    if filter_id in {f.id for f in offline_filters.own_filters(state.database())}:
        user_filters.delete_filter(current_profile(), filter_id)
    return go("wizard.step", step="choices")
