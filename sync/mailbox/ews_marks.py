"""Untracked marks kept in the mailbox: which CRM records the user took out of it.

They live beside the "only one" claim, on the hidden folder of `sync.mailbox.claims`, as one
named string property: zlib-compressed JSON `{"scope": <organization id>, "kinds": {kind:
[crm ids]}}` in base64 (about 30 bytes an id). Only the synchronizing install writes them; a
write carries the folder's ChangeKey and is redone on a stale one, so two kinds saving at once
cannot lose each other's marks. Marks of another organization (scope) mean nothing here.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable, Collection
from typing import Any

from exchangelib import ExtendedProperty, Folder

from sync.mailbox.claims import hidden_folder
from sync.mailbox.ews_connection import EwsConnection
from sync.mailbox.fields import IDEMPOTENCY_PROPERTY_SET
from sync.sides import Conflict

MARKS_FIELD = "mailbox_sync_untracked"
SAVE_ATTEMPTS = 3


class _MarksProperty(ExtendedProperty):
    property_set_id = IDEMPOTENCY_PROPERTY_SET
    property_name = "untracked"
    property_type = "String"


if MARKS_FIELD not in {f.name for f in Folder.FIELDS}:
    Folder.register(MARKS_FIELD, _MarksProperty)


def encode(scope: str, kinds: dict[str, list[str]]) -> str:
    text = json.dumps({"scope": scope, "kinds": kinds}, sort_keys=True, separators=(",", ":"))
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode("ascii")


def decode(raw: Any, scope: str) -> dict[str, list[str]]:
    """The marks of `scope`; nothing for another scope or a value we cannot read (a damaged
    value must not stop the sync: at worst untracked copies come back)."""
    if not raw:
        return {}
    try:
        data = json.loads(zlib.decompress(base64.b64decode(str(raw))))
    except (ValueError, zlib.error):
        return {}
    if not isinstance(data, dict) or data.get("scope") != scope:
        return {}
    kinds = data.get("kinds")
    if not isinstance(kinds, dict):
        return {}
    return {str(k): [str(i) for i in v] for k, v in kinds.items() if isinstance(v, list)}


def read_marks(conn: EwsConnection, scope: str, kind: str) -> set[str]:
    return set(read_all_marks(conn, scope).get(kind, ()))


def read_all_marks(conn: EwsConnection, scope: str) -> dict[str, list[str]]:
    """Every kind's marks of `scope` (one look at the hidden folder for all kinds)."""
    folder = hidden_folder(conn, create=False)
    if folder is None:
        return {}
    return decode(getattr(folder, MARKS_FIELD, None), scope)


def write_marks(conn: EwsConnection, scope: str, kind: str, crm_ids: Collection[str]) -> None:
    """Replace `kind`'s marks, keeping the other kinds' (read again after a lost race)."""
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        folder = hidden_folder(conn)
        kinds = decode(getattr(folder, MARKS_FIELD, None), scope)
        if kinds.get(kind, []) == sorted(crm_ids):
            return
        kinds[kind] = sorted(crm_ids)
        setattr(folder, MARKS_FIELD, encode(scope, kinds))
        try:
            conn.call(_saver(folder))
            return
        except Conflict:
            if attempt == SAVE_ATTEMPTS:
                raise


def _saver(folder: Any) -> Callable[[], None]:
    def save() -> None:
        folder.save(update_fields=[MARKS_FIELD])

    return save
