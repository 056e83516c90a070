"""A hypothesis state machine over the offline work: offline edits, creates and deletes,
server edits and deletes meanwhile, then going online (crashed once at a chosen point, then
again): every field ends as the merge rules say, every clash and every delete/edit crossing is a
recorded conflict, every create is on the server once, nothing is left queued.

The server is a stub Dataverse behind httpx's MockTransport with the conditional-operation rules
of powerapps-docs webapi/perform-conditional-operations-using-web-api.md (stale `If-Match` →
412; `If-Match: *` on a missing row → 404; a second create of an id → 412 "A record with
matching key values already exists."), so hundreds of runs take seconds; the same rules are
checked over real HTTP against the sandbox in test_go_offline_online.py."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import uuid
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from sync.crm.client import DataverseClient, RetryPolicy
from sync.offline.replay import Replayer
from sync.offline.store import OfflineStore
from sync.store.db import DB_FILE, Database, open_database, sqlite_url
from sync.store.models import ConflictRecord, OfflineChange, OfflineRow, OfflineTable

API = "http://127.0.0.1/org/api/data/v9.2/"
ORG = "org"
FIELDS = ("a", "b", "c")
ROWS = [str(uuid.UUID(int=n + 1)) for n in range(3)]
_ONE = re.compile(r"/contacts\((?P<id>[^)]+)\)$")


class Crash(BaseException):
    pass


@cache
def _migrated() -> Path:
    """One migrated empty database file, copied for each run (migrating costs more than a run)."""
    folder = Path(tempfile.mkdtemp())
    open_database(folder).dispose()
    return folder / DB_FILE


class StubDataverse:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[dict[str, Any], int]] = {
            r: ({"contactid": r, **dict.fromkeys(FIELDS, 0)}, 1) for r in ROWS
        }

    def _error(self, status: int, code: str, message: str) -> httpx.Response:
        return httpx.Response(status, json={"error": {"code": code, "message": message}})

    def _row(self, row_id: str) -> dict[str, Any]:
        fields, version = self.rows[row_id]
        return {**fields, "@odata.etag": f'W/"{version}"'}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        match = _ONE.search(request.url.path)
        if request.method == "POST":
            body = json.loads(request.content)
            row_id = body["contactid"]
            if row_id in self.rows:
                return self._error(412, "0x80040237", "A record with matching key values already exists.")  # fmt: skip
            self.rows[row_id] = (body, 1)
            return httpx.Response(204, headers={"OData-EntityId": f"{API}contacts({row_id})"})
        assert match is not None
        row_id = match["id"]
        if row_id not in self.rows:
            return self._error(404, "0x80040217", f"contact With Id = {row_id} Does Not Exist")
        wanted = request.headers.get("If-Match")
        if wanted and wanted != "*" and wanted != f'W/"{self.rows[row_id][1]}"':
            return self._error(412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided.")  # fmt: skip
        if request.method == "GET":
            return httpx.Response(200, json=self._row(row_id))
        if request.method == "DELETE":
            del self.rows[row_id]
            return httpx.Response(204)
        fields, version = self.rows[row_id]
        self.rows[row_id] = ({**fields, **json.loads(request.content)}, version + 1)
        return httpx.Response(200, json=self._row(row_id))

    def edit(self, row_id: str, field: str, value: int) -> None:
        fields, version = self.rows[row_id]
        self.rows[row_id] = ({**fields, field: value}, version + 1)


class OfflineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        shutil.copy(_migrated(), Path(self.dir) / DB_FILE)
        self.database = Database(sqlite_url(Path(self.dir)))
        self.server = StubDataverse()
        columns = [{"name": f, "attribute": f, "type": "int", "create": True, "update": True}
                   for f in FIELDS]  # fmt: skip
        with self.database.session() as session:
            session.add(OfflineTable(org=ORG, entity_set="contacts", logical_name="contact",
                                     key="contactid", title_column=None, columns=columns))  # fmt: skip
            for row_id in ROWS:
                fields = dict(self.server.rows[row_id][0])
                session.add(OfflineRow(org=ORG, entity_set="contacts", row_id=row_id, title="",
                                       fields=fields, base=dict(fields), etag='W/"1"',
                                       state="clean"))  # fmt: skip
        self.store = OfflineStore(self.database, ORG)
        self.mine: dict[str, dict[str, int]] = {r: {} for r in ROWS}
        self.local_deleted: set[str] = set()
        self.server_touched: set[str] = set()
        self.server_deleted: set[str] = set()
        self.created: dict[str, dict[str, int] | None] = {}
        self.crash_at: tuple[str, int] | None = None

    @rule(row=st.sampled_from(ROWS), field=st.sampled_from(FIELDS), value=st.integers(0, 2))
    def offline_edit(self, row: str, field: str, value: int) -> None:
        if row not in self.local_deleted:
            self.store.update("contacts", row, {field: value})
            self.mine[row][field] = value

    @rule(row=st.sampled_from(ROWS))
    def offline_delete(self, row: str) -> None:
        if row not in self.local_deleted:
            self.store.delete("contacts", row)
            self.local_deleted.add(row)

    @rule(value=st.integers(0, 2), then_delete=st.booleans())
    def offline_create(self, value: int, then_delete: bool) -> None:
        row_id = self.store.create("contacts", {"a": value})
        self.created[row_id] = {"a": value}
        if then_delete:
            self.store.delete("contacts", row_id)
            self.created[row_id] = None

    @rule(row=st.sampled_from(ROWS), field=st.sampled_from(FIELDS), value=st.integers(0, 2))
    def server_edit(self, row: str, field: str, value: int) -> None:
        if row not in self.server_deleted:
            self.server.edit(row, field, value)
            self.server_touched.add(row)

    @rule(row=st.sampled_from(ROWS))
    def server_delete(self, row: str) -> None:
        if row not in self.server_deleted:
            del self.server.rows[row]
            self.server_deleted.add(row)

    @rule(point=st.sampled_from(["before-call", "after-call"]), nth=st.integers(1, 4))
    def crash_when_going_online(self, point: str, nth: int) -> None:
        self.crash_at = (point, nth)

    def teardown(self) -> None:
        try:
            self._go_online_and_check()
        finally:
            self.database.dispose()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _replayer(self, fault: Any = None) -> Replayer:
        client = DataverseClient(API, lambda: "t", transport=httpx.MockTransport(self.server),
                                 retry=RetryPolicy(max_retries=0))  # fmt: skip
        return Replayer(self.database, ORG, client, "server", None, fault)

    def _go_online_and_check(self) -> None:
        before = {r: dict(self.server.rows[r][0]) for r in ROWS if r in self.server.rows}
        if self.crash_at is not None:
            point, nth = self.crash_at
            seen = [0]

            def fault(where: str, _item: OfflineChange) -> None:
                if where == point:
                    seen[0] += 1
                    if seen[0] == nth:
                        raise Crash

            with suppress(Crash):
                self._replayer(fault).replay()
        self._replayer().replay()
        assert self.store.pending() == []
        with self.database.session() as session:
            conflicts = {(c.crm_id, c.field) for c in session.query(ConflictRecord)}
        for row in ROWS:
            base = dict.fromkeys(FIELDS, 0)
            mine = {f: v for f, v in self.mine[row].items() if v != base[f]}
            if row in self.local_deleted:
                if row in self.server_deleted:
                    assert row not in self.server.rows
                elif row in self.server_touched:  # changed there: not deleted, a conflict
                    assert row in self.server.rows and (row, "*") in conflicts
                else:
                    assert row not in self.server.rows
                continue
            if row in self.server_deleted:
                assert row not in self.server.rows
                assert ((row, "*") in conflicts) == bool(mine)  # my edit kept, said so
                if mine:
                    kept = self.store.get("contacts", row)
                    assert kept is not None and all(kept.fields[f] == v for f, v in mine.items())
                continue
            after = self.server.rows[row][0]
            for field in FIELDS:
                theirs = before[row][field]
                if field not in mine:
                    assert after[field] == theirs
                elif theirs in (base[field], mine[field]):
                    assert after[field] == mine[field]  # one-sided: merged
                else:
                    assert after[field] == theirs and (row, field) in conflicts  # clash
        for row_id, fields in self.created.items():
            if fields is None:
                assert row_id not in self.server.rows
            else:
                assert {f: self.server.rows[row_id][0][f] for f in fields} == fields


OfflineMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=12, deadline=None)
TestOfflineMachine = OfflineMachine.TestCase
