"""The mailbox side on Exchange Web Services (exchangelib): `EwsSide` implements `MailboxSide`.

Reading: SyncFolderItems with the saved sync state, at most `page_size` (≤ 512) changes a call,
ids only, then GetItem in batches for the fields; each page is yielded with the sync state after
it, so memory stays flat and a stopped run resumes where it was. Writing: CreateItem / UpdateItem /
DeleteItem in batches with one result per op; every item we create carries the CRM id in a named
extended property, so a retried create or a new install finds it (`find_by_key`).

Contacts and tasks (and single appointments' creates) are written and read without exchangelib
item objects (sync/mailbox/ews_xml.py: most of the CPU of a large sync went into them). The
tokens handed out carry the folder's id ("@<folder id>\n<sync state>"), so a run in a new
process reads each folder in one request, with no GetFolder.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from exchangelib import FileAttachment, ItemId, Message
from exchangelib.fields import FieldPath
from exchangelib.folders import DEEP, BaseFolder, Folder, FolderCollection
from exchangelib.items import (
    ALWAYS_OVERWRITE,
    AUTO_RESOLVE,
    ID_ONLY,
    MOVE_TO_DELETED_ITEMS,
    NEVER_OVERWRITE,
    SAVE_ONLY,
    SEND_TO_ALL_AND_SAVE_COPY,
    SEND_TO_NONE,
    SOFT_DELETE,
)
from exchangelib.properties import FolderId
from exchangelib.services import GetItem, SyncFolderItems, UpdateItem
from exchangelib.services.common import EWSAccountService
from exchangelib.version import EXCHANGE_2013_SP1

from sync.mailbox import ews_convert as convert
from sync.mailbox import ews_marks, ews_recurrence, ews_xml
from sync.mailbox.ews_connection import (
    BasicAuth,
    EwsConnection,
    NtlmAuth,
    OAuthToken,
    side_error,
    trust_ca_file,
)
from sync.mailbox.ews_occurrences import OCCURRENCE_FIELDS, has_occurrences, write_occurrences
from sync.mailbox.ews_readcache import REUSE_SECONDS, ReadReuse
from sync.mailbox.fields import KIND_FOLDERS
from sync.mailbox.mime import Attachment
from sync.sides import (
    CreateOp,
    Deleted,
    DeleteOp,
    KnownVersions,
    NotFound,
    Page,
    Result,
    SideError,
    UpdateOp,
    Upsert,
    WriteOp,
    Written,
    write_grouped,
)

__all__ = ["BasicAuth", "EwsConnection", "EwsSide", "NtlmAuth", "OAuthToken", "trust_ca_file"]

log = logging.getLogger(__name__)

MAX_PAGE = 512
"""SyncFolderItems returns at most 512 changes a call (MaxChangesReturned)."""

KEY_CHUNK = 200
"""CRM ids per FindItem of `find_by_key`: an Or of this many IsEqualTo restrictions. EWS refuses
a restriction of more than 255 filter expressions (ErrorRestrictionTooLong); 200 conditions on a
GUID make a request of about 50 KB."""

_DISTINGUISHED = {
    "inbox": "inbox",
    "sentitems": "sent",
    "drafts": "drafts",
    "deleteditems": "trash",
    "junkemail": "junk",
    "outbox": "outbox",
    "contacts": "contacts",
    "tasks": "tasks",
    "calendar": "calendar",
}
"""Distinguished folder names → exchangelib `Account` attributes."""

FOLDER_MARK = "@"
"""Starts a token that carries its folder's id (sync states are base64: never "@")."""

_UPSERT_TYPES = (SyncFolderItems.CREATE, SyncFolderItems.UPDATE)


class _SyncFolderItems(SyncFolderItems):
    """SyncFolderItems (IdOnly) yielding `(change type, item class or None, id, change key)`.

    Two departures from exchangelib's service: an error answer is reported by its ResponseCode
    (exchangelib reads SyncState first, and an ErrorInvalidSyncStateData answer without one would
    surface as an AttributeError), and the changes are not parsed into full item objects, which
    for ids only costs more than the GetItem that follows."""

    def _get_element_container(self, message: Any, name: Any = None) -> Any:
        if message.get("ResponseClass") == "Error":
            return EWSAccountService._get_element_container(self, message, name)
        return super()._get_element_container(message, name)

    def _elem_to_obj(self, elem: Any) -> tuple[str, type | None, str | None, str | None]:
        change_type = self.change_types_map[elem.tag]
        if change_type == self.READ_FLAG_CHANGE:
            return change_type, None, None, None
        if change_type == self.DELETE:
            return change_type, None, elem.find(ItemId.response_tag()).get(ItemId.ID_ATTR), None
        item = elem[0]
        found = item.find(ItemId.response_tag())
        cls = BaseFolder.item_model_from_tag(item.tag)
        if found is None:
            return change_type, cls, None, None
        return change_type, cls, found.get(ItemId.ID_ATTR), found.get(ItemId.CHANGEKEY_ATTR)


class EwsSide:
    """A mailbox reached through EWS. Kinds: contacts, tasks, appointments, messages.

    `folders` maps a kind to a distinguished folder name (e.g. "contacts"), a folder id or an
    exchangelib folder; by default each kind uses its distinguished folder. Messages of any other
    folder are kind "messages:<distinguished name or folder id>" (e.g. "messages:sentitems").
    `reuse_reads_for`: seconds a complete read may answer one more read of the same kind from the
    same sync state (0: never), so the two calendar kinds of a run share one SyncFolderItems.
    """

    name = "mailbox"
    marks_scope = ""
    """Whose untracked marks this side reads and writes: the synchronizing organization's id."""

    def __init__(
        self,
        connection: EwsConnection,
        folders: Mapping[str, Any] | None = None,
        page_size: int = MAX_PAGE,
        fetch_batch: int = MAX_PAGE,
        write_batch: int = 100,
        reuse_reads_for: float = REUSE_SECONDS,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE}")
        self.connection = connection
        self.page_size = page_size
        self.fetch_batch = fetch_batch
        self.write_batch = write_batch
        self._folder_specs: dict[str, Any] = dict(folders or {})
        self._folders: dict[str, Any] = {}
        self._folder_ids: dict[str, str] = {}
        """Folder ids learnt from saved tokens (see `_split_token`), by folder spec."""
        self._marks: dict[str, list[str]] | None = None
        self._reuse = ReadReuse(reuse_reads_for)

    # --- folders ---------------------------------------------------------------------------

    @property
    def account(self) -> Any:
        return self.connection.account

    def _folder_spec(self, kind: str) -> Any:
        if kind in self._folder_specs:
            return self._folder_specs[kind]
        if ":" in kind:
            return kind.split(":", 1)[1]
        base = convert.base_kind(kind)
        return KIND_FOLDERS["email" if base == "messages" else base]

    def _spec_key(self, kind: str) -> str:
        """The kinds that share a folder (the two calendar kinds) share its lookup."""
        spec = self._folder_spec(kind)
        if not isinstance(spec, str):
            return f"kind:{kind}"
        return spec.lower() if spec.lower() in _DISTINGUISHED else spec  # ids: case matters

    def folder(self, kind: str) -> Any:
        """The exchangelib folder of `kind` (looked up once: GetFolder)."""
        key = self._spec_key(kind)
        if key not in self._folders:
            spec = self._folder_spec(kind)
            self._folders[key] = self.connection.call(lambda: self._resolve(spec), idempotent=True)
        return self._folders[key]

    def _target(self, kind: str) -> Any:
        """Where SyncFolderItems and our own CreateItem point: the folder when looked up, else
        its id as a saved token gave it (no GetFolder in a new process), else the lookup."""
        key = self._spec_key(kind)
        if key not in self._folders and key in self._folder_ids:
            return FolderId(id=self._folder_ids[key])
        return self.folder(kind)

    def _split_token(self, kind: str, token: str | None) -> str | None:
        """The sync state of a token; a folder id saved with it is remembered for `_target`.

        The tokens the engine keeps carry the folder's id before the sync state ("@id\nstate"),
        so a new process syncs a folder in one request; a token without it is a bare state."""
        if token and token.startswith(FOLDER_MARK) and "\n" in token:
            folder_id, state = token[len(FOLDER_MARK) :].split("\n", 1)
            self._folder_ids.setdefault(self._spec_key(kind), folder_id)
            return state or None
        return token

    def _resolve(self, spec: Any) -> Any:
        if not isinstance(spec, str):
            return spec
        attr = _DISTINGUISHED.get(spec.lower())
        if attr:
            return getattr(self.account, attr)
        # (h1b) a folder by id (a tracked folder): exchangelib resolves Folder objects only
        by_id = Folder(root=self.account.root, id=spec)
        found = list(FolderCollection(account=self.account, folders=[by_id]).resolve())
        if not found or isinstance(found[0], Exception):
            raise NotFound(
                f"No folder with id {spec!r} in {self.connection.email}", "ErrorFolderNotFound"
            )
        return found[0]

    def _folder_label(self, kind: str) -> str:
        spec = self._folder_spec(kind)
        return spec if isinstance(spec, str) else str(getattr(spec, "id", spec))

    # --- reading ---------------------------------------------------------------------------

    def read_changes(
        self, kind: str, token: str | None, known: KnownVersions | None = None
    ) -> Iterator[Page]:
        """Pages of changes since the sync state `token` (None: everything). Raises TokenExpired.

        A second read of the same kind from the same (not None) state soon after, with no write
        through this side in between, is answered from the first one (see `ews_readcache`)."""
        kept = self._reuse.take(kind, token)
        if kept is not None:
            yield from kept
            return
        pages: list[Page] | None = [] if token is not None else None  # full reads: not kept
        count = 0
        for page in self._read_pages(kind, token, known if token is not None else None):
            if pages is not None:
                count += len(page.changes)
                if count <= self._reuse.max_changes:
                    pages.append(page)
                else:
                    pages = None  # too large to keep: stream it only
            if page.last and pages is not None:
                self._reuse.keep(kind, token, pages)
            yield page

    def _read_pages(
        self, kind: str, token: str | None, known: KnownVersions | None
    ) -> Iterator[Page]:
        base = convert.base_kind(kind)
        state = self._split_token(kind, token)
        folder = self._target(kind)
        item_cls = convert.ITEM_CLASSES[base]
        while True:
            svc = _SyncFolderItems(account=self.account)

            def sync_page(
                state: str | None = state, svc: Any = svc, folder: Any = folder
            ) -> list[Any]:
                raw = list(
                    svc.call(
                        folder=folder,
                        shape=ID_ONLY,
                        additional_fields=set(),
                        sync_state=state,
                        ignore=None,
                        max_changes_returned=self.page_size,
                        sync_scope=None,
                    )
                )
                for element in raw:
                    if isinstance(element, Exception):  # an error answer returned, not raised
                        raise side_error(element)
                return raw

            # The same state may be sent again: a retry after a dropped answer is harmless.
            try:
                raw = self.connection.call(sync_page, idempotent=True)
            except NotFound:
                if not isinstance(folder, FolderId):
                    raise
                # A saved folder id no longer works: look the folder up again (a state of
                # another folder is then refused: TokenExpired, and the engine reads it all).
                self._folder_ids.pop(self._spec_key(kind), None)
                folder = self.folder(kind)
                continue
            order: OrderedDict[str, str | None] = OrderedDict()  # id → "upsert" | None (deleted)
            versions: dict[str, str] = {}
            for change_type, cls, item_id, change_key in raw:
                if not item_id:
                    continue  # ReadFlagChange: the read flag is not synced
                if change_type == SyncFolderItems.DELETE:
                    order.pop(item_id, None)
                    order[item_id] = None
                    versions.pop(item_id, None)
                elif change_type in _UPSERT_TYPES and cls and issubclass(cls, item_cls):
                    order.pop(item_id, None)
                    order[item_id] = "upsert"
                    if change_key:
                        versions[item_id] = change_key
            unchanged = set(known(versions)) if known is not None and versions else set()
            for item_id in unchanged:
                del order[item_id]  # held at this change key already: no GetItem for it
            wanted = [i for i, what in order.items() if what]
            fetched = self._fetch(kind, wanted)
            changes: list[Upsert | Deleted] = []
            for item_id, what in order.items():
                if what is None:
                    changes.append(Deleted(item_id))
                elif item_id in fetched:
                    changes.append(fetched[item_id])
                # else: gone since the sync call; the next sync reports the delete
            last = bool(svc.includes_last_item_in_range) or svc.sync_state == state
            token_out = f"{FOLDER_MARK}{folder.id}\n{svc.sync_state}" if svc.sync_state else None
            yield Page(changes=changes, token=token_out, last=last)
            if last:
                return
            state = svc.sync_state

    def read_changes_folder(self, folder: str, token: str | None) -> Iterator[Page]:
        """Messages of another folder (distinguished name or folder id): as read_changes."""
        return self.read_changes(f"messages:{folder}", token)

    def read(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        """The current state of the given items; missing ones are absent."""
        return self._fetch(kind, list(ids))

    def _fetch(
        self, kind: str, ids: Sequence[str], fields: Sequence[str] | None = None
    ) -> dict[str, Upsert]:
        if fields is None and convert.base_kind(kind) in ews_xml.READ_KINDS:
            return self._fetch_plain(kind, ids)
        items = self._fetch_items(kind, ids, fields)
        return {item_id: self._upsert(kind, item) for item_id, item in items.items()}

    def _fetch_items(
        self, kind: str, ids: Sequence[str], fields: Sequence[str] | None = None
    ) -> dict[str, Any]:
        if not ids:
            return {}
        base = convert.base_kind(kind)
        only = list(fields or convert.FETCH_FIELDS[base])
        folder = self._folders.get(self._spec_key(kind))
        if folder is None and base != "messages":
            # GetItem needs no folder (exchangelib's fetch() would look one up only to check
            # the field names): none when the kind was read from a saved token's folder id.
            model = convert.ITEM_CLASSES[base]
            paths = {FieldPath(field=model.get_field_by_fieldname(name)) for name in only}

            def get() -> list[Any]:
                service = GetItem(account=self.account, chunk_size=self.fetch_batch)
                items = [ItemId(id=i) for i in ids]
                return list(service.call(items=items, additional_fields=paths, shape=ID_ONLY))

        else:
            folder = folder if folder is not None else self.folder(kind)

            def get() -> list[Any]:
                return list(
                    self.account.fetch(
                        ids=[ItemId(id=i) for i in ids],
                        folder=folder,
                        only_fields=only,
                        chunk_size=self.fetch_batch,
                    )
                )

        out: dict[str, Any] = {}
        for item_id, item in zip(ids, self.connection.call(get, idempotent=True), strict=True):
            if isinstance(item, Exception):
                error = side_error(item)
                if isinstance(error, NotFound):
                    continue
                raise error
            out[item_id] = item
        return out

    def _fetch_plain(self, kind: str, ids: Sequence[str]) -> dict[str, Upsert]:
        """GetItem read straight into the vocabulary (ews_xml): no exchangelib items."""
        base = convert.base_kind(kind)
        out: dict[str, Upsert] = {}
        for start in range(0, len(ids), self.fetch_batch):
            chunk = list(ids[start : start + self.fetch_batch])
            payload = ews_xml.get_payload(base, chunk)

            def get(payload: Any = payload) -> list[Any]:
                return list(ews_xml.PrebuiltGetItem(account=self.account).call(payload))

            answers = self.connection.call(get, idempotent=True)
            for item_id, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, Exception):
                    error = side_error(answer)
                    if isinstance(error, NotFound):
                        continue
                    raise error
                found_id, version, key, fields = ews_xml.read_item(base, answer)
                out[item_id] = Upsert(id=found_id, version=version, fields=fields, key=key)
        return out

    def _upsert(self, kind: str, item: Any) -> Upsert:
        fields = convert.to_vocab(kind, item)
        if convert.base_kind(kind) == "messages":
            fields["folder"] = self._folder_label(kind)
        key = convert.item_key(item)
        return Upsert(id=item.id, version=item.changekey, fields=fields, key=key)

    def begin_run(self) -> None:
        self._reuse.forget()
        self._marks = None

    def load_untracked(self, kind: str) -> set[str]:
        """The kind's marks; the hidden folder is read once a run for all kinds."""
        if self._marks is None:
            self._marks = ews_marks.read_all_marks(self.connection, self.marks_scope)
        return set(self._marks.get(kind, ()))

    def save_untracked(self, kind: str, crm_ids: Collection[str]) -> None:
        self._marks = None
        ews_marks.write_marks(self.connection, self.marks_scope, kind, crm_ids)

    def find_by_key(self, kind: str, keys: Sequence[str]) -> dict[str, Upsert]:
        """Items of `kind` carrying these CRM ids (FindItem on the key property, then GetItem)."""
        folder = self.folder(kind)
        ids: list[str] = []
        for start in range(0, len(keys), KEY_CHUNK):
            chunk = list(keys[start : start + KEY_CHUNK])

            def find(chunk: list[str] = chunk) -> list[str]:
                query = folder.filter(**{f"{convert.KEY_FIELD}__in": chunk}).only(convert.KEY_FIELD)
                query.page_size = 1000
                return [i.id for i in query if not isinstance(i, Exception)]

            ids += self.connection.call(find, idempotent=True)
        found: dict[str, Upsert] = {}
        wanted = set(keys)
        for upsert in self._fetch(kind, ids).values():
            if upsert.key in wanted and upsert.key not in found:
                found[upsert.key] = upsert
        return found

    # --- writing ---------------------------------------------------------------------------

    def write(self, kind: str, ops: Sequence[WriteOp]) -> list[Result]:
        """Apply creates, updates and deletes in batches; one result per op, in order."""
        return write_grouped(kind, ops, self._create, self._update, self._delete)

    def _new_item(self, kind: str, **kwargs: Any) -> Any:
        cls = convert.ITEM_CLASSES[convert.base_kind(kind)]
        return cls(account=self.account, folder=self.folder(kind), **kwargs)

    def _create(self, kind: str, ops: Sequence[CreateOp]) -> list[Result]:
        base = convert.base_kind(kind)
        if base in ews_xml.ITEM_XML:
            return self._create_plain(kind, ops)
        results: list[Result | None] = [None] * len(ops)
        items, where = [], []
        for index, op in enumerate(ops):
            item = self._new_item(kind, **{convert.KEY_FIELD: op.key})
            fields = {k: v for k, v in op.fields.items() if k not in OCCURRENCE_FIELDS}
            try:
                convert.apply_vocab(kind, item, fields)
                item.clean(version=self.account.version)  # refuse bad data per item, not per batch
            except (ValueError, TypeError, KeyError) as exc:
                results[index] = side_error(exc)
                continue
            items.append(item)
            where.append(index)
        if items:
            folder = self.folder(kind)
            self._reuse.forget()
            created = self.connection.call(
                lambda: self.account.bulk_create(
                    folder,
                    items,
                    message_disposition=SAVE_ONLY,
                    send_meeting_invitations=SEND_TO_NONE,  # the CRM is the source: never invite
                    chunk_size=self.write_batch,
                )
            )
            for index, res in zip(where, created, strict=True):
                if isinstance(res, Exception):
                    results[index] = side_error(res)
                    continue
                results[index] = Written(res.id, res.changekey)
        return self._finish_creates(kind, ops, results)

    def _create_plain(self, kind: str, ops: Sequence[CreateOp]) -> list[Result]:
        """CreateItem with bodies written from the vocabulary (ews_xml), then the read-back."""
        base = convert.base_kind(kind)
        build = ews_xml.ITEM_XML[base]
        results: list[Result | None] = [None] * len(ops)
        texts, where = [], []
        for index, op in enumerate(ops):
            fields = {k: v for k, v in op.fields.items() if k not in OCCURRENCE_FIELDS}
            try:  # bad data fails its item, not the batch
                text = build(fields, op.key)
                if text is None:  # what exchangelib writes for us (a series' recurrence)
                    item = self._new_item(kind, **{convert.KEY_FIELD: op.key})
                    convert.apply_vocab(kind, item, fields)
                    text = ews_xml.exchangelib_xml(item, self.account.version)
            except (ValueError, TypeError, KeyError) as exc:
                results[index] = side_error(exc)
                continue
            texts.append(text)
            where.append(index)
        if texts:
            folder = self._target(kind)
            self._reuse.forget()
            for start in range(0, len(texts), self.write_batch):
                payload = ews_xml.create_payload(
                    texts[start : start + self.write_batch], folder, self.account.version
                )

                def create(payload: Any = payload) -> list[Any]:
                    return list(ews_xml.PrebuiltCreateItem(account=self.account).call(payload))

                chunk = where[start : start + self.write_batch]
                for index, res in zip(chunk, self.connection.call(create), strict=True):
                    if isinstance(res, Exception):
                        results[index] = side_error(res)
                        continue
                    results[index] = Written(res[0], res[1])
        return self._finish_creates(kind, ops, results)

    def _finish_creates(
        self, kind: str, ops: Sequence[CreateOp], results: list[Result | None]
    ) -> list[Result]:
        """After either way of creating: the stored fields read back, then a series'
        occurrences written, and one result per op."""
        if any(isinstance(r, Written) for r in results):
            self._add_stored_fields(kind, results)
        if convert.base_kind(kind) == "appointments":
            for index, op in enumerate(ops):
                result = results[index]
                if isinstance(result, Written) and has_occurrences(op.fields):
                    results[index] = write_occurrences(self, kind, result, op.fields, {})
        return [r if r is not None else NotFound("not created") for r in results]

    def _add_stored_fields(self, kind: str, results: list[Result | None]) -> None:
        """Give each `Written` of a create the item's fields as Exchange stores them.

        Exchange fills in what we did not send (a task's importance Normal and 0 % complete, an
        appointment's organizer...): the engine keeps these as the link's base, so the next sync
        does not take them for the user's changes. CreateItem answers ids only, hence one GetItem
        per `fetch_batch` items. The creates are done whatever this read meets: on an error the
        results simply stay without fields."""
        made = [r.id for r in results if isinstance(r, Written)]
        try:
            stored = self._fetch(kind, made)
        except SideError as error:
            log.info("Created %d %s; reading them back failed: %s", len(made), kind, error)
            return
        for index, result in enumerate(results):
            if isinstance(result, Written) and result.id in stored:
                upsert = stored[result.id]
                results[index] = Written(result.id, upsert.version, upsert.fields)

    def _update(self, kind: str, ops: Sequence[UpdateOp]) -> list[Result]:
        base = convert.base_kind(kind)
        current = self._fetch_items(kind, [op.id for op in ops]) if _needs_base(base, ops) else {}
        results: list[Result | None] = [None] * len(ops)
        batches: dict[bool, list[tuple[int, Any, list[str]]]] = {True: [], False: []}
        for index, op in enumerate(ops):
            base_item = current.get(op.id)
            if _needs_base(base, [op]) and base_item is None:
                results[index] = self._follow_update(kind, op)
                continue
            base_vocab = convert.to_vocab(kind, base_item) if base_item is not None else {}
            item = self._new_item(kind, id=op.id, changekey=op.version)
            fields = ews_recurrence.changed_fields(op.fields, base_vocab)
            try:
                names = convert.apply_vocab(kind, item, fields, base_vocab, new=False)
                for name in names:  # what UpdateItem will check, per item instead of per batch
                    item.get_field_by_fieldname(name).clean(
                        getattr(item, name), version=self.account.version
                    )
            except (ValueError, TypeError, KeyError) as exc:
                results[index] = side_error(exc)
                continue
            if names:
                batches[op.version is not None].append((index, item, names))
            else:
                version = base_item.changekey if base_item is not None else op.version
                results[index] = Written(op.id, version)  # nothing differs: no call
        for guarded, batch in batches.items():
            if not batch:
                continue
            pairs = [(item, names) for _, item, names in batch]
            resolution = NEVER_OVERWRITE if guarded else ALWAYS_OVERWRITE
            if base in ews_xml.UPDATE_KINDS:
                updated = self._update_plain(base, pairs, resolution)
            else:
                updated = self._bulk_update(pairs, resolution)
            for (index, _, _), res in zip(batch, updated, strict=True):
                if isinstance(res, Exception):
                    error = side_error(res)
                    is_missing = isinstance(error, NotFound)
                    results[index] = self._follow_update(kind, ops[index]) if is_missing else error
                else:
                    results[index] = Written(res[0], res[1])
        if base == "appointments":
            for index, op in enumerate(ops):
                result = results[index]
                if isinstance(result, Written) and has_occurrences(op.fields):
                    before = current.get(op.id)
                    base_vocab = convert.to_vocab(kind, before) if before is not None else {}
                    results[index] = write_occurrences(self, kind, result, op.fields, base_vocab)
        return [r if r is not None else NotFound("not updated") for r in results]

    def _bulk_update(self, pairs: list[tuple[Any, list[str]]], resolution: str) -> list[Any]:
        """UpdateItem in batches, never sending meeting updates (the CRM is the source)."""
        self._reuse.forget()

        def run() -> list[Any]:
            return list(
                self.account.bulk_update(
                    pairs,
                    conflict_resolution=resolution,
                    message_disposition=SAVE_ONLY,
                    send_meeting_invitations_or_cancellations=SEND_TO_NONE,
                    chunk_size=self.write_batch,
                )
            )

        return self.connection.call(run)

    def _update_plain(
        self, base: str, pairs: list[tuple[Any, list[str]]], resolution: str
    ) -> list[Any]:
        """UpdateItem with item changes written here (ews_xml.item_change); an item whose
        changes are not (a contact's addresses or numbers) carries exchangelib's own, in the
        same request. One result per pair: (id, change key) or the item's error."""
        self._reuse.forget()
        version = self.account.version
        changes = []
        for item, names in pairs:
            text = ews_xml.item_change(base, item, names)
            if text is None:
                made = UpdateItem(account=self.account).get_payload(
                    items=[(item, names)],
                    conflict_resolution=resolution,
                    message_disposition=SAVE_ONLY,
                    send_meeting_invitations_or_cancellations=SEND_TO_NONE,
                    suppress_read_receipts=True,
                )
                text = ews_xml.first_change(made)
            changes.append(text)
        results: list[Any] = []
        for start in range(0, len(changes), self.write_batch):
            payload = ews_xml.update_payload(
                changes[start : start + self.write_batch],
                resolution,
                read_receipts_attr=version.build >= EXCHANGE_2013_SP1,
            )

            def run(payload: Any = payload) -> list[Any]:
                return list(ews_xml.PrebuiltUpdateItem(account=self.account).call(payload))

            results += self.connection.call(run)
        return results

    def _bulk_delete(self, ids: list[Any], delete_type: str, cancellations: str) -> list[Any]:
        """DeleteItem in batches."""
        self._reuse.forget()

        def run() -> list[Any]:
            return list(
                self.account.bulk_delete(
                    ids=ids,
                    delete_type=delete_type,
                    send_meeting_cancellations=cancellations,
                    chunk_size=self.write_batch,
                )
            )

        return self.connection.call(run)

    def follow(self, kind: str, item_id: str, key: str | None) -> Upsert | None:
        """Where an item carrying `key` (its linked CRM id) went when its id no longer works:
        EWS gives an item a new id when it moves, so look for the key in the kind's folder and
        subfolders."""
        if not key:
            return None
        top = self.folder(kind)

        def search() -> list[str]:
            below = FolderCollection(account=self.account, folders=[top]).find_folders(depth=DEEP)
            folders = [top, *(f for f in below if not isinstance(f, Exception))]
            query = FolderCollection(account=self.account, folders=folders).filter(
                **{convert.KEY_FIELD: key}
            )
            return [i.id for i in query.only(convert.KEY_FIELD) if not isinstance(i, Exception)]

        ids = [i for i in self.connection.call(search, idempotent=True) if i != item_id]
        found = [u for u in self._fetch(kind, ids).values() if u.key == key]
        return found[0] if found else None

    def _follow_update(self, kind: str, op: UpdateOp) -> Result:
        """An item we made that is gone from its id may have moved: update it where it is."""
        moved = self.follow(kind, op.id, op.key)
        if moved is None:
            return NotFound(f"Item {op.id[:16]}… no longer exists", "ErrorItemNotFound")
        return self._update(kind, [UpdateOp(moved.id, moved.version, op.fields, op.key)])[0]

    def _delete(self, kind: str, ops: Sequence[DeleteOp]) -> list[Result]:
        base = convert.base_kind(kind)
        delete_type = MOVE_TO_DELETED_ITEMS if base == "messages" else SOFT_DELETE
        results: list[Result | None] = [None] * len(ops)
        for quiet in (True, False):
            batch = [(i, op) for i, op in enumerate(ops) if op.quiet is quiet]
            if not batch:
                continue
            cancellations = SEND_TO_NONE if quiet else SEND_TO_ALL_AND_SAVE_COPY
            deleted = self._bulk_delete(
                [ItemId(id=op.id) for _, op in batch], delete_type, cancellations
            )
            for (index, op), res in zip(batch, deleted, strict=True):
                if isinstance(res, Exception):
                    error = side_error(res)
                    if isinstance(error, NotFound):
                        moved = self.follow(kind, op.id, op.key)
                        if moved is not None:
                            follow = DeleteOp(moved.id, moved.version, op.quiet, op.key)
                            results[index] = self._delete(kind, [follow])[0]
                            continue
                    results[index] = error
                else:
                    results[index] = Written(op.id, None)
        return [r if r is not None else NotFound("not deleted") for r in results]

    # --- messages --------------------------------------------------------------------------

    def send(
        self, fields: Mapping[str, Any], key: str, attachments: Sequence[Attachment] = ()
    ) -> Written:
        """Send a message (SendAndSaveCopy) carrying `key`; a retried send finds the first one.

        A `message_id` in `fields` is sent as the InternetMessageId (outgoing CRM email chooses
        it); the Written's fields are the sent copy's, so its Message-Id is what Exchange kept."""
        sent_kind = "messages:sentitems"
        existing = self.find_by_key(sent_kind, [key]).get(key)
        if existing is not None:
            return Written(existing.id, existing.version, existing.fields)
        message = Message(account=self.account, folder=self.folder(sent_kind))
        setattr(message, convert.KEY_FIELD, key)
        convert.apply_vocab("messages", message, fields)
        for attachment in attachments:  # inline in the CreateItem (Exchange 2013 and later)
            message.attach(
                FileAttachment(
                    name=attachment.name,
                    content=attachment.content,
                    content_type=attachment.content_type,
                )
            )
        self._reuse.forget()
        self.connection.call(lambda: message.send_and_save(send_meeting_invitations=SEND_TO_NONE))
        for attempt in range(5):  # Exchange files the sent copy asynchronously
            copy = self.find_by_key(sent_kind, [key]).get(key)
            if copy is not None:
                return Written(copy.id, copy.version, copy.fields)
            time.sleep(0.2 * (attempt + 1))
        return Written("", None, dict(fields))

    def set_categories(
        self,
        ids: Sequence[str],
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
        kind: str = "messages",
    ) -> list[Result]:
        """Add / remove categories (e.g. the tracked category) on items; one result per id."""
        current = self._fetch_items(kind, ids, fields=["categories"])
        results: list[Result | None] = [None] * len(ids)
        batch = []
        for index, item_id in enumerate(ids):
            item = current.get(item_id)
            if item is None:
                results[index] = NotFound(
                    f"Item {item_id[:16]}… no longer exists", "ErrorItemNotFound"
                )
                continue
            have = list(item.categories or [])
            want = [c for c in have if c not in remove] + [c for c in add if c not in have]
            if want == have:
                results[index] = Written(item.id, item.changekey)
                continue
            item.categories = want or None
            batch.append((index, item))
        if batch:
            updated = self._bulk_update([(item, ["categories"]) for _, item in batch], AUTO_RESOLVE)
            for (index, _), res in zip(batch, updated, strict=True):
                results[index] = side_error(res) if isinstance(res, Exception) else Written(*res)
        return [r if r is not None else NotFound("not updated") for r in results]


def _needs_base(base: str, ops: Sequence[UpdateOp]) -> bool:
    """Updates that must know the item's current values (fields EWS stores together)."""
    if base == "appointments":
        return True
    if base == "contacts":
        grouped = ("email_address_", "_phone", "_fax", "business_", "home_")
        names = {n for op in ops for n in op.fields}
        names -= {"business_homepage"}
        return any(any(g in n for g in grouped) for n in names) or bool(
            names & {"given_name", "middle_name", "surname", "company_name"}
        )
    return False
