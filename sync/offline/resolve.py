"""Taking the other side of an offline conflict (the Conflicts page's "Use the other value").

A field conflict writes the losing value to the server (`If-Match: *`: the row must still be
there, it is never re-created) and to the local copy. The two record-level conflicts reverse
what was decided: an edit of a row the server deleted (the local copy was kept) now accepts the
deletion locally; a delete that was not made because the server changed the row is now made.
Called through `sync.conflicts.reverse_conflict`, which flips the record only once this worked.
"""

from __future__ import annotations

from contextlib import suppress

from sqlalchemy import select

from sync.conflicts import ReverseError
from sync.offline.download import row_fields
from sync.offline.replay import write_body
from sync.offline.service import JOB, OfflineService
from sync.offline.store import get_mode, title_of
from sync.setup.odata import OFFLINE_PREFIX
from sync.sides import NotFound, SideError
from sync.store.lock import hold, lock_directory
from sync.store.models import ConflictRecord, OfflineRow, OfflineTable


def reverse_offline(service: OfflineService, record: ConflictRecord) -> None:
    database = service.database
    entity_set = record.kind.removeprefix(OFFLINE_PREFIX)
    if get_mode(database) == "offline":
        raise ReverseError("Go online first: this choice is written to the CRM.")
    with hold(lock_directory(database.url), JOB, service.wait, "reversing an offline conflict"):
        with database.session() as session:
            table = session.get(OfflineTable, (record.org, entity_set))
            local = session.scalar(
                select(OfflineRow).where(
                    OfflineRow.org == record.org,
                    OfflineRow.entity_set == entity_set,
                    OfflineRow.row_id == record.crm_id,
                )
            )
            if record.field == "*" and record.winner == "mailbox":
                # the server deleted the row; the local copy was kept: accept the deletion
                if local is not None:
                    session.delete(local)
                return
            if table is None:
                raise ReverseError(f"{entity_set} is not offline any more.")
            session.expunge(table)
        connection = service.connect()
        try:
            client = connection.client
            if record.field == "*":  # a delete that was not made: make it now
                with suppress(NotFound):
                    client.delete(entity_set, record.crm_id, if_match="*")
                server = None
            else:
                value = record.mailbox_value if record.winner == "crm" else record.crm_value
                body = write_body(table, {record.field: value}, create=False)
                if not body:
                    raise ReverseError(f"The CRM does not let {record.field} be changed.")
                client.update(entity_set, record.crm_id, body, if_match="*")
                server = client.get(entity_set, record.crm_id)
        except NotFound:
            raise ReverseError("The record is not in the CRM any more.") from None
        except SideError as error:
            raise ReverseError(f"The CRM refused the value: {error.message}") from None
        finally:
            connection.close()
        with database.session() as session:
            local = session.scalar(
                select(OfflineRow).where(
                    OfflineRow.org == record.org,
                    OfflineRow.entity_set == entity_set,
                    OfflineRow.row_id == record.crm_id,
                )
            )
            if local is None:
                return
            if server is None:
                session.delete(local)
            elif local.state == "clean":
                fields = row_fields(server)
                local.fields, local.base = fields, dict(fields)
                local.etag = server.get("@odata.etag")
                local.title = title_of(fields, table.title_column)
