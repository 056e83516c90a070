"""GraphSide: a mailbox reached through Microsoft Graph, as the engine's `Side` (contacts, tasks,
appointments and series: `sync.graph.calendar`;
reads of messages, kind "messages:<folder>", for email tracking: `sync.graph.mail`).

Reads: the kind's delta (`/me/contacts/delta`, `/me/todo/lists/{id}/tasks/delta`) gives the ids
and ETags of what changed; the records the caller does not already hold at that ETag are then
read in JSON batches of 20 (with the extended properties or the task's open extension, which
a delta page does not carry). A refused delta link (410) is TokenExpired: the engine reads
everything again.

The CRM id key: on contacts the named extended property `convert.KEY_PROPERTY` (the one EWS
writes, so a mailbox moved from EWS to Graph keeps its keys), found with
`$filter=singleValueExtendedProperties/Any(...)`; on To Do tasks, which have no extended
properties, the open extension `convert.EXTENSION`.

Untracked marks: the same value `sync.mailbox.ews_marks` keeps, as the named string property
`untracked` of our property set on the hidden mail folder "Mailbox Sync for Dynamics 365"
(`isHidden`), the folder EWS uses for its claim. One home for both protocols.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from sync.graph import convert
from sync.graph.calendar import GraphCalendar
from sync.graph.client import GraphClient
from sync.mailbox import ews_marks
from sync.mailbox.claims import CLAIM_FOLDER_NAME
from sync.mailbox.fields import IDEMPOTENCY_PROPERTY_SET
from sync.sides import (
    CreateOp,
    Deleted,
    DeleteOp,
    Invalid,
    KnownVersions,
    NotFound,
    Page,
    Result,
    SideError,
    UpdateOp,
    Upsert,
    WriteOp,
    Written,
    update_refusal,
    write_grouped,
)

KINDS = ("contacts", "tasks", "appointments")
MARKS_PROPERTY = f"String {{{IDEMPOTENCY_PROPERTY_SET}}} Name untracked"


def _quote(value: str) -> str:
    return value.replace("'", "''")


class GraphSide:
    """A mailbox reached through Microsoft Graph. Kinds: contacts, tasks (To Do), appointments
    (the calendar, single events and series: `sync.graph.calendar`)."""

    name = "mailbox"
    marks_scope = ""
    """Whose untracked marks this side reads and writes: the synchronizing organization's id."""

    def __init__(self, client: GraphClient, task_list: str | None = None) -> None:
        self.client = client
        self._task_list = task_list
        self._marks_folder: str | None = None
        self.calendar = GraphCalendar(client)

    # --- paths ----------------------------------------------------------------------------

    @property
    def task_list(self) -> str:
        """The To Do list tasks sync with: the given one, else the default list ("Tasks")."""
        if self._task_list is None:
            lists = self.client.all("me/todo/lists")
            default = next((x for x in lists if x.get("wellknownListName") == "defaultList"), None)
            if default is None:
                raise NotFound("The mailbox has no default To Do list.", "ErrorItemNotFound")
            self._task_list = str(default["id"])
        return self._task_list

    def _collection(self, kind: str) -> str:
        if kind.startswith("messages:"):
            return f"me/mailFolders/{quote(kind.split(':', 1)[1], safe='')}/messages"
        if kind == "contacts":
            return "me/contacts"
        if kind == "tasks":
            return f"me/todo/lists/{self.task_list}/tasks"
        raise Invalid(f"The Graph side does not sync {kind!r} yet.", "unsupported_kind")

    def expand_query(self, kind: str) -> str:
        if kind == "tasks":
            return "$expand=extensions"
        if kind.startswith("messages:"):
            flt = quote(f"id eq '{convert.KEY_PROPERTY}'")
            return f"$expand=singleValueExtendedProperties($filter={flt})"
        ids = " or ".join(f"id eq '{p}'" for p in convert.CONTACT_PROPERTIES)
        return f"$expand=singleValueExtendedProperties($filter={quote(ids)})"

    def _item_url(self, kind: str, item_id: str) -> str:
        if kind.startswith("messages:"):  # a message answers by id in any folder
            return f"/me/messages/{quote(item_id, safe='')}"
        return f"/{self._collection(kind)}/{quote(item_id, safe='')}"

    # --- reading ---------------------------------------------------------------------------

    def to_upsert(self, kind: str, item: Mapping[str, Any]) -> Upsert:
        if kind.startswith("messages:"):
            fields = convert.message_to_vocab(item, kind.split(":", 1)[1])
        elif kind == "contacts":
            fields = convert.contact_to_vocab(item)
        else:
            fields = convert.task_to_vocab(item)
        return Upsert(
            id=str(item["id"]),
            version=item.get("@odata.etag"),
            fields=fields,
            key=convert.item_key(item),
        )

    def read_changes(
        self, kind: str, token: str | None, known: KnownVersions | None = None
    ) -> Iterator[Page]:
        """Pages of changes since the delta link `token` (None: everything)."""
        if kind == "appointments":
            yield from self.calendar.read_changes(token)
            return
        link: str | None = token or f"{self._collection(kind)}/delta"
        headers = {"Prefer": "odata.maxpagesize=100"}
        while link:
            page = self.client.get(link, headers)
            order: dict[str, str | None] = {}
            versions: dict[str, str] = {}
            for entry in page.get("value", []):
                item_id = str(entry["id"])
                order.pop(item_id, None)
                if "@removed" in entry:
                    order[item_id] = None
                    versions.pop(item_id, None)
                else:
                    order[item_id] = "upsert"
                    if entry.get("@odata.etag"):
                        versions[item_id] = str(entry["@odata.etag"])
            if known is not None and token is not None and versions:
                for item_id in set(known(versions)):
                    del order[item_id]
            fetched = self.read(kind, [i for i, what in order.items() if what])
            changes: list[Upsert | Deleted] = []
            for item_id, what in order.items():
                if what is None:
                    changes.append(Deleted(item_id))
                elif item_id in fetched:
                    changes.append(fetched[item_id])
            delta_link = page.get("@odata.deltaLink")
            link = page.get("@odata.nextLink")
            yield Page(changes=changes, token=delta_link, last=not link)

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        """The current state of the given items (batched GETs); missing ones are absent."""
        if not ids:
            return {}
        if kind == "appointments":
            return self.calendar.read(ids)
        answers = self.client.batch(
            [
                {"method": "GET", "url": f"{self._item_url(kind, i)}?{self.expand_query(kind)}"}
                for i in ids
            ]  # fmt: skip
        )
        out: dict[str, Upsert] = {}
        for item_id, answer in zip(ids, answers, strict=True):
            if isinstance(answer, NotFound):
                continue
            if isinstance(answer, SideError):
                raise answer
            out[item_id] = self.to_upsert(kind, answer)
        return out

    def find_by_key(self, kind: str, keys: Sequence[str]) -> dict[str, Upsert]:
        """Items carrying these CRM ids: one `$filter` on the key property per key (batched);
        To Do tasks are listed with their extensions (they cannot be filtered on one)."""
        found: dict[str, Upsert] = {}
        if not keys:
            return found
        if kind == "appointments":
            return self.calendar.find_by_key(keys)
        if kind == "tasks":
            wanted = set(keys)
            path = f"{self._collection(kind)}?$expand=extensions"
            for item in self.client.all(path):
                upsert = self.to_upsert(kind, item)
                if upsert.key in wanted and upsert.key not in found:
                    found[upsert.key] = upsert
            return found
        requests = []
        for key in keys:
            flt = (
                f"singleValueExtendedProperties/Any(ep: ep/id eq '{convert.KEY_PROPERTY}' "
                f"and ep/value eq '{_quote(key)}')"
            )
            requests.append(
                {
                    "method": "GET",
                    "url": f"/{self._collection(kind)}?$filter={quote(flt)}&{self.expand_query(kind)}",
                }
            )
        for key, answer in zip(keys, self.client.batch(requests), strict=True):
            if isinstance(answer, SideError):
                raise answer
            for item in answer.get("value", []):
                upsert = self.to_upsert(kind, item)
                if upsert.key == key and key not in found:
                    found[key] = upsert
        return found

    # --- writing ---------------------------------------------------------------------------

    def write(self, kind: str, ops: Sequence[WriteOp]) -> list[Result]:
        """Creates, updates and deletes in JSON batches; one result per op, in order."""
        if kind == "appointments":
            return self.calendar.write(ops)
        return write_grouped(kind, ops, self._create, self._update, self._delete)

    def _body(self, kind: str, fields: Mapping[str, Any], full: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
        if kind == "contacts":
            return convert.contact_to_graph(fields, full)
        return convert.task_to_graph(fields)

    def _create(self, kind: str, ops: Sequence[CreateOp]) -> list[Result]:
        requests = []
        for op in ops:
            body = self._body(kind, op.fields, op.fields)
            if kind == "contacts":
                props = body.setdefault("singleValueExtendedProperties", [])
                props.append({"id": convert.KEY_PROPERTY, "value": op.key})
            requests.append({"method": "POST", "url": f"/{self._collection(kind)}", "body": body})
        answers = self.client.batch(requests)
        if kind == "tasks":
            answers = self._add_task_extensions(ops, answers)
        results: list[Result] = []
        for op, answer in zip(ops, answers, strict=True):
            if isinstance(answer, SideError):
                results.append(answer)
                continue
            item = dict(answer)
            if kind == "tasks":
                ext = convert.task_extension_body(op.key, op.fields.get("percent_complete"))
                item["extensions"] = [ext]
            upsert = self.to_upsert(kind, item)
            fields = dict(upsert.fields)
            if kind == "contacts":  # extended properties are not in the answer: as sent
                for name in ("business_fax", "other_phone", "wedding_anniversary"):
                    fields[name] = op.fields.get(name) or None
            results.append(Written(upsert.id, upsert.version, fields))
        return results

    def _add_task_extensions(self, ops: Sequence[CreateOp], answers: list[Any]) -> list[Any]:
        """The key and percent of each new task, as its open extension; a task whose extension
        could not be written is deleted again, so a retried create does not find a twin."""
        made = [(i, a) for i, a in enumerate(answers) if not isinstance(a, SideError)]
        requests = [
            {
                "method": "POST",
                "url": f"{self._item_url('tasks', a['id'])}/extensions",
                "body": convert.task_extension_body(
                    ops[i].key, ops[i].fields.get("percent_complete")
                ),  # fmt: skip
            }
            for i, a in made
        ]
        failed = []
        for (index, answer), ext in zip(made, self.client.batch(requests), strict=True):
            if isinstance(ext, SideError):
                failed.append(answer["id"])
                answers[index] = ext
        if failed:
            self.client.batch(
                [{"method": "DELETE", "url": self._item_url("tasks", i)} for i in failed]
            )
        return answers

    def _update(self, kind: str, ops: Sequence[UpdateOp]) -> list[Result]:
        current = self.read(kind, [op.id for op in ops])
        results: list[Result | None] = [None] * len(ops)
        requests, where = [], []
        for index, op in enumerate(ops):
            now = current.get(op.id)
            refused = update_refusal(op, now, "item")
            if refused is not None or now is None:
                results[index] = refused
                continue
            full = {**now.fields, **op.fields}
            body = self._body(kind, op.fields, full)
            headers = {"If-Match": now.version} if now.version else {}
            if body:
                requests.append({"method": "PATCH", "url": self._item_url(kind, op.id), "body": body, "headers": headers})  # fmt: skip
                where.append((index, "item"))
            if kind == "tasks" and "percent_complete" in op.fields:
                ext = convert.task_extension_body(now.key, full.get("percent_complete"))
                requests.append({"method": "PATCH", "url": f"{self._item_url(kind, op.id)}/extensions/{convert.EXTENSION}", "body": ext})  # fmt: skip
                where.append((index, "extension"))
            results[index] = Written(op.id, now.version, full)
        for (index, what), answer in zip(where, self.client.batch(requests), strict=True):
            if isinstance(answer, SideError):
                results[index] = answer
            elif what == "item" and isinstance(results[index], Written):
                written = results[index]
                assert isinstance(written, Written)
                version = answer.get("@odata.etag") if isinstance(answer, dict) else None
                results[index] = Written(written.id, version or written.version, written.fields)
        return [r if r is not None else NotFound("not applied") for r in results]

    def _delete(self, kind: str, ops: Sequence[DeleteOp]) -> list[Result]:
        requests = [
            {
                "method": "DELETE",
                "url": self._item_url(kind, op.id),
                "headers": {"If-Match": op.version} if op.version else {},
            }
            for op in ops
        ]
        results: list[Result] = []
        for op, answer in zip(ops, self.client.batch(requests), strict=True):
            if isinstance(answer, NotFound):
                results.append(Written(op.id, None))  # gone already: what was asked
            elif isinstance(answer, SideError):
                results.append(answer)
            else:
                results.append(Written(op.id, None))
        return results

    # --- untracked marks -------------------------------------------------------------------

    def _marks_folder_id(self) -> str:
        if self._marks_folder is None:
            folders = self.client.all("me/mailFolders?includeHiddenFolders=true")
            found = next((f for f in folders if f.get("displayName") == CLAIM_FOLDER_NAME), None)
            if found is None:
                found = self.client.post(
                    "me/mailFolders", {"displayName": CLAIM_FOLDER_NAME, "isHidden": True}
                )
            self._marks_folder = str(found["id"])
        return self._marks_folder

    def _marks_raw(self) -> str | None:
        folder = self.client.get(
            f"me/mailFolders/{self._marks_folder_id()}?$expand=singleValueExtendedProperties"
            f"({quote(f'$filter=id eq {chr(39)}{MARKS_PROPERTY}{chr(39)}')})"
        )
        for prop in folder.get("singleValueExtendedProperties") or []:
            if str(prop.get("id", "")).lower() == MARKS_PROPERTY.lower():
                return str(prop.get("value") or "")
        return None

    def load_untracked(self, kind: str) -> set[str]:
        return set(ews_marks.decode(self._marks_raw(), self.marks_scope).get(kind, []))

    def save_untracked(self, kind: str, crm_ids: Collection[str]) -> None:
        marks = ews_marks.decode(self._marks_raw(), self.marks_scope)
        marks[kind] = sorted(crm_ids)
        value = ews_marks.encode(self.marks_scope, marks)
        self.client.patch(
            f"me/mailFolders/{self._marks_folder_id()}",
            {"singleValueExtendedProperties": [{"id": MARKS_PROPERTY, "value": value}]},
        )

    def begin_run(self) -> None:
        """Nothing is kept between runs (the calendar drops the read its two kinds share)."""
        self.calendar.begin_run()
