"""ResolveNames, ConvertId and notifications (Subscribe, GetEvents, GetStreamingEvents,
Unsubscribe).

Notifications read the mailbox's event list from a watermark; streaming answers at once with the
events so far and a Closed connection status (clients simply call again).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sandbox.ews.ops.common import resolve_folder
from sandbox.ews.store import Event, Mailbox, iso
from sandbox.ews.xml import (
    Element,
    EwsError,
    children,
    findall,
    local,
    m,
    response_message,
    sub,
    t,
    text,
    wrap_messages,
)
from sandbox.identity import USERS

if TYPE_CHECKING:
    from sandbox.ews.server import Ctx

XSI = "http://www.w3.org/2001/XMLSchema-instance"


def resolve_names(ctx: Ctx, req: Element) -> Element:
    query = text(req, "m:UnresolvedEntry") or ""
    needle = query.lower().removeprefix("smtp:").strip()
    found = [
        u
        for u in USERS
        if needle
        and (needle in u.upn or needle in u.display_name.lower() or u.upn.split("@")[0] == needle)
    ]
    if not found:
        error = EwsError("ErrorNameResolutionNoResults", "No results were found.")
        return wrap_messages(
            "ResolveNames", [response_message("ResolveNamesResponseMessage", error)]
        )
    if len(found) > 1:
        msg = response_message(
            "ResolveNamesResponseMessage",
            EwsError("ErrorNameResolutionMultipleResults", "Multiple results were found."),
            warning=True,
        )
    else:
        msg = response_message("ResolveNamesResponseMessage")
    rset = sub(
        msg,
        m("ResolutionSet"),
        TotalItemsInView=str(len(found)),
        IncludesLastItemInRange="true",
    )
    for user in found:
        resolution = sub(rset, t("Resolution"))
        mailbox = sub(resolution, t("Mailbox"))
        sub(mailbox, t("Name"), user.display_name)
        sub(mailbox, t("EmailAddress"), user.upn)
        sub(mailbox, t("RoutingType"), "SMTP")
        sub(mailbox, t("MailboxType"), "Mailbox")
        if req.get("ReturnFullContactData") == "true":
            contact = sub(resolution, t("Contact"))
            sub(contact, t("DisplayName"), user.display_name)
            sub(contact, t("GivenName"), user.first_name)
            sub(contact, t("Surname"), user.last_name)
            emails = sub(contact, t("EmailAddresses"))
            sub(emails, t("Entry"), f"SMTP:{user.upn}", Key="EmailAddress1")
            sub(contact, t("ContactSource"), "ActiveDirectory")
    return wrap_messages("ResolveNames", [msg])


def convert_id(ctx: Ctx, req: Element) -> Element:
    """Ids here have one form: EwsId and EwsLegacyId convert to themselves."""
    fmt = req.get("DestinationFormat", "EwsId")
    messages = []
    for node in children(req, "m:SourceIds"):
        ident = node.get("Id", "")
        if ident not in ctx.mailbox.items and ident not in ctx.mailbox.folders:
            error = EwsError("ErrorInvalidIdMalformed", "Id is malformed.")
            messages.append(response_message("ConvertIdResponseMessage", error))
            continue
        msg = response_message("ConvertIdResponseMessage")
        alt = sub(msg, m("AlternateId"), Format=fmt, Id=ident, Mailbox=ctx.mailbox.upn)
        alt.set(f"{{{XSI}}}type", "t:AlternateIdType")
        messages.append(msg)
    return wrap_messages("ConvertId", messages)


@dataclass
class Subscription:
    id: str
    upn: str
    folders: set[str] | None
    event_types: set[str]
    seq: int
    streaming: bool
    seen: set[int] = field(default_factory=set)


def _watermark(mbx: Mailbox, seq: int) -> str:
    return base64.b64encode(f"{mbx.epoch}:{seq}".encode()).decode()


def subscribe(ctx: Ctx, req: Element) -> Element:
    mbx = ctx.mailbox
    request = next(iter(req), None)
    if request is None or local(request) not in (
        "PullSubscriptionRequest",
        "StreamingSubscriptionRequest",
    ):
        error = EwsError(
            "ErrorInvalidSubscriptionRequest", "Only pull and streaming subscriptions."
        )
        return wrap_messages("Subscribe", [response_message("SubscribeResponseMessage", error)])
    try:
        folders: set[str] | None = None
        if request.get("SubscribeToAllFolders") != "true":
            folders = {resolve_folder(mbx, n).id for n in children(request, "t:FolderIds")}
    except EwsError as exc:
        return wrap_messages("Subscribe", [response_message("SubscribeResponseMessage", exc)])
    types = {n.text or "" for n in findall(request, "t:EventTypes/t:EventType")}
    sub_id = base64.b64encode(uuid.uuid4().bytes).decode()
    streaming = local(request) == "StreamingSubscriptionRequest"
    ctx.server.subscriptions[sub_id] = Subscription(
        sub_id, mbx.upn, folders, types, mbx.seq, streaming
    )
    msg = response_message("SubscribeResponseMessage")
    sub(msg, m("SubscriptionId"), sub_id)
    if not streaming:
        sub(msg, m("Watermark"), _watermark(mbx, mbx.seq))
    return wrap_messages("Subscribe", [msg])


def _subscription(ctx: Ctx, sub_id: str) -> Subscription:
    subscription = ctx.server.subscriptions.get(sub_id)
    if subscription is None or subscription.upn != ctx.mailbox.upn:
        raise EwsError("ErrorSubscriptionNotFound", "The specified subscription was not found.")
    return subscription


def _events(mbx: Mailbox, subscription: Subscription) -> list[Event]:
    return [
        e
        for e in mbx.events
        if e.seq > subscription.seq
        and e.kind in subscription.event_types
        and (subscription.folders is None or e.parent_folder_id in subscription.folders)
    ]


def _notification(mbx: Mailbox, subscription: Subscription, parent: Element) -> Element:
    events = _events(mbx, subscription)
    node = sub(parent, m("Notification"))
    sub(node, t("SubscriptionId"), subscription.id)
    if not subscription.streaming:
        sub(node, t("PreviousWatermark"), _watermark(mbx, subscription.seq))
        sub(node, t("MoreEvents"), "false")
    if not events and not subscription.streaming:
        status = sub(node, t("StatusEvent"))
        sub(status, t("Watermark"), _watermark(mbx, mbx.seq))
    for event in events:
        out = sub(node, t(event.kind))
        if not subscription.streaming:
            sub(out, t("Watermark"), _watermark(mbx, event.seq))
        sub(out, t("TimeStamp"), iso(event.at))
        if event.item_id:
            item = mbx.items.get(event.item_id)
            key = item.change_key if item is not None else None
            sub(out, t("ItemId"), Id=event.item_id, ChangeKey=key)
        else:
            folder = mbx.folders.get(event.folder_id)
            sub(
                out,
                t("FolderId"),
                Id=event.folder_id,
                ChangeKey=folder.change_key if folder else None,
            )
        sub(out, t("ParentFolderId"), Id=event.parent_folder_id)
        if event.kind == "MovedEvent" and event.old_item_id:
            sub(out, t("OldItemId"), Id=event.old_item_id)
            sub(out, t("OldParentFolderId"), Id=event.old_parent_folder_id or "")
    subscription.seq = max([subscription.seq] + [e.seq for e in events])
    return node


def get_events(ctx: Ctx, req: Element) -> Element:
    try:
        subscription = _subscription(ctx, text(req, "m:SubscriptionId") or "")
    except EwsError as exc:
        return wrap_messages("GetEvents", [response_message("GetEventsResponseMessage", exc)])
    msg = response_message("GetEventsResponseMessage")
    _notification(ctx.mailbox, subscription, msg)
    return wrap_messages("GetEvents", [msg])


def streaming_subscriptions(ctx: Ctx, req: Element) -> list[Subscription]:
    """The request's streaming subscriptions; EwsError for one that is not there (or not the
    caller's), as GetStreamingEvents answers before it holds the connection open."""
    return [_subscription(ctx, n.text or "") for n in children(req, "m:SubscriptionIds")]


def connection_minutes(req: Element) -> int:
    """ConnectionTimeout: "the maximum number of minutes to keep a streaming connection open.
    The value must be between 1 and 30, inclusive" (connectiontimeout.md); clamped here."""
    try:
        minutes = int(text(req, "m:ConnectionTimeout") or "30")
    except ValueError:
        minutes = 30
    return min(max(minutes, 1), 30)


def streaming_batch(ctx: Ctx, subscriptions: list[Subscription], status: str) -> Element | None:
    """One envelope's body of a streaming connection: the subscriptions' new events (None when
    there are none and the connection stays open: nothing to send but a heartbeat)."""
    pending = [s for s in subscriptions if _events(ctx.mailbox, s)]
    if not pending and status == "OK":
        return None
    msg = response_message("GetStreamingEventsResponseMessage")
    if pending:
        notifications = sub(msg, m("Notifications"))
        for subscription in pending:
            _notification(ctx.mailbox, subscription, notifications)
    sub(msg, m("ConnectionStatus"), status)
    return wrap_messages("GetStreamingEvents", [msg])


def heartbeat() -> Element:
    """What a streaming connection sends while nothing happens: ConnectionStatus OK alone."""
    msg = response_message("GetStreamingEventsResponseMessage")
    sub(msg, m("ConnectionStatus"), "OK")
    return wrap_messages("GetStreamingEvents", [msg])


def get_streaming_events(ctx: Ctx, req: Element) -> Element:
    """The answer when the connection is not held (a subscription id refused): the server holds
    valid requests open itself (EwsServer.stream_events)."""
    try:
        subscriptions = streaming_subscriptions(ctx, req)
    except EwsError as exc:
        msg = response_message("GetStreamingEventsResponseMessage", exc)
        return wrap_messages("GetStreamingEvents", [msg])
    batch = streaming_batch(ctx, subscriptions, "Closed")
    assert batch is not None
    return batch


def unsubscribe(ctx: Ctx, req: Element) -> Element:
    try:
        subscription = _subscription(ctx, text(req, "m:SubscriptionId") or "")
        ctx.server.subscriptions.pop(subscription.id, None)
        msg = response_message("UnsubscribeResponseMessage")
    except EwsError as exc:
        msg = response_message("UnsubscribeResponseMessage", exc)
    return wrap_messages("Unsubscribe", [msg])
