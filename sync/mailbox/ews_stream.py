"""Mailbox changes as they happen, through EWS streaming notifications.

One streaming subscription covers the synced folders (Subscribe with
StreamingSubscriptionRequest); GetStreamingEvents holds a connection open for at most 30 minutes
(ConnectionTimeout, 1 to 30, connectiontimeout.md) and sends each batch of events as it happens.
When the server closes it (ConnectionStatus Closed) the same subscription is read again on a new
connection; a dropped connection or a subscription the server no longer knows raises, and the
watcher (sync/watcher.py) subscribes anew. Only *which kinds changed* comes out: the sync reads
the changes themselves by its sync states, so a notification lost between two connections
costs a little delay, never data.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from exchangelib import FolderCollection
from exchangelib.services import GetStreamingEvents

from sync.mailbox.ews import EwsSide
from sync.watcher import ChangeBatch

log = logging.getLogger(__name__)

CONNECTION_MINUTES = 29
"""Each held connection asks for 29 of the 30 minutes allowed, so it is renewed by us first."""
EVENT_TYPES = ("NewMailEvent", "CreatedEvent", "ModifiedEvent", "DeletedEvent", "MovedEvent")


class EwsChangeStream:
    """The kinds whose folders changed, from one streaming subscription over `folders`.

    `folders` maps a folder of the side (a distinguished name such as "contacts", or a folder
    id) to the sync kinds it holds (e.g. "calendar" → appointments and series).
    """

    def __init__(
        self,
        side: EwsSide,
        folders: Mapping[str, frozenset[str]],
        connection_minutes: int = CONNECTION_MINUTES,
    ) -> None:
        if not 1 <= connection_minutes <= 30:
            raise ValueError("connection_minutes must be 1..30 (EWS ConnectionTimeout)")
        self.side = side
        self.folder_kinds = dict(folders)
        self.connection_minutes = connection_minutes
        self._kinds_by_id: dict[str, frozenset[str]] = {}
        self._subscription: str | None = None
        self._service: Any = None
        """The GetStreamingEvents call being read (to end it from another thread)."""

    @property
    def description(self) -> str:
        return f"EWS streaming notifications ({self.side.connection.email})"

    def open(self) -> None:
        """Subscribe to the folders (GetFolder for each not yet known, then Subscribe)."""
        side = self.side
        resolved = {spec: side.folder(f"messages:{spec}") for spec in self.folder_kinds}
        self._kinds_by_id = {
            folder.id: self.folder_kinds[spec] for spec, folder in resolved.items()
        }
        # the held connection takes an HTTP session of its own: the sync's requests must not
        # wait up to 30 minutes for it (exchangelib shares one pool per endpoint and sign-in)
        protocol = side.account.protocol
        protocol.max_connections = max(protocol.max_connections, 1) + 1
        collection = FolderCollection(account=side.account, folders=list(resolved.values()))
        self._subscription = side.connection.call(
            lambda: collection.subscribe_to_streaming(event_types=EVENT_TYPES)
        )

    def changes(self) -> Iterator[ChangeBatch]:
        """Batches of changed kinds while one connection is held; returns when the server
        closes it (the caller reads again); raises a `SideError` when it drops."""
        if self._subscription is None:
            raise RuntimeError("open() first")
        service = GetStreamingEvents(account=self.side.account)
        self._service = service
        try:
            with self.side.connection.errors():
                for notification in service.call(
                    subscription_ids=[self._subscription],
                    connection_timeout=self.connection_minutes,
                ):
                    batch = self._batch(notification.events)
                    if batch is not None:
                        yield batch
        finally:
            self._service = None
            with contextlib.suppress(Exception):
                service.stop_streaming()  # the held HTTP session goes back to the pool

    def _batch(self, events: list[Any]) -> ChangeBatch | None:
        kinds: set[str] = set()
        latest: datetime | None = None
        for event in events:
            parent = getattr(event, "parent_folder_id", None)
            old_parent = getattr(event, "old_parent_folder_id", None)
            for folder in (parent, old_parent):
                if folder is not None:
                    kinds |= self._kinds_by_id.get(folder.id, frozenset())
            stamp = getattr(event, "timestamp", None)
            if stamp is not None:
                moment = datetime.fromtimestamp(stamp.timestamp(), UTC)  # not EWSDateTime
                latest = moment if latest is None or moment > latest else latest
        if not kinds:
            return None
        return ChangeBatch(frozenset(kinds), latest)

    def interrupt(self) -> None:
        """End a held connection from another thread (the app stops): the answer being read
        is closed, so the reading thread's next read fails at once."""
        service = self._service
        response = getattr(service, "_streaming_response", None) if service else None
        # a blocked read wakes only when its socket is shut down (closing the response object
        # from another thread leaves the read waiting for the next heartbeat)
        raw = getattr(response, "raw", None)
        sock = getattr(getattr(raw, "_connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Unsubscribe (best effort: an unknown subscription expires on the server anyway)."""
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        with contextlib.suppress(Exception):
            self.side.account.inbox.unsubscribe(subscription)
