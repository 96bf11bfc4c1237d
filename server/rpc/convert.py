"""Domain values ↔ tidings.v1 messages. Pure functions, no I/O."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, Final, cast

from google.protobuf.timestamp_pb2 import Timestamp
from tidings.v1 import admin_pb2, notification_pb2, stream_pb2

from server.engine import events
from server.engine.errors import InvalidArgument
from server.engine.filters import TypeFilter
from server.engine.models import (
    LIST_LIMIT_DEFAULT,
    Content,
    Counts,
    InboxQuery,
    NodeStats,
    Notification,
    Priority,
    Stats,
)
from server.rpc import wire

_PRIORITY_TO_PB = {
    Priority.LOW: notification_pb2.PRIORITY_LOW,
    Priority.NORMAL: notification_pb2.PRIORITY_NORMAL,
    Priority.HIGH: notification_pb2.PRIORITY_HIGH,
    Priority.URGENT: notification_pb2.PRIORITY_URGENT,
}
_PRIORITY_FROM_PB = {v: k for k, v in _PRIORITY_TO_PB.items()}
_PRIORITY_FROM_PB[notification_pb2.PRIORITY_UNSPECIFIED] = Priority.NORMAL


def timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


@functools.lru_cache(maxsize=64)
def _created_at(moment: datetime) -> Timestamp:
    """Rows committed together share ``created_at``: convert it once (the message is
    copied into each notification, never changed)."""
    return timestamp(moment)


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def instant(ts: Timestamp, field_name: str) -> datetime:
    """A request's timestamp as an aware datetime; ``InvalidArgument`` naming
    ``field_name`` when it is outside the range a Timestamp may hold."""
    try:
        return from_timestamp(ts)
    except (ValueError, OverflowError):
        raise InvalidArgument(field_name, "must be a valid timestamp") from None


def priority_from_pb(value: int) -> Priority:
    try:
        return _PRIORITY_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument("priority", "must be one of low, normal, high, urgent") from None


def notification_to_pb(n: Notification) -> notification_pb2.Notification:
    msg = notification_pb2.Notification(
        id=n.id,
        user_id=n.user_id,
        type=n.type,
        title=n.title,
        message=n.message,
        data_json=n.data_json,
        priority=_PRIORITY_TO_PB[n.priority],
        created_at=_created_at(n.created_at),
        read=n.read,
        seen=n.seen_at is not None,
        archived=n.archived_at is not None,
        ignore_mutes=n.ignore_mutes,
    )
    if n.read_at is not None:
        msg.read_at.CopyFrom(timestamp(n.read_at))
    if n.seen_at is not None:
        msg.seen_at.CopyFrom(timestamp(n.seen_at))
    if n.archived_at is not None:
        msg.archived_at.CopyFrom(timestamp(n.archived_at))
    if n.expires_at is not None:
        msg.expires_at.CopyFrom(timestamp(n.expires_at))
    return msg


def notification_from_pb(msg: notification_pb2.Notification) -> Notification:
    return Notification(
        id=msg.id,
        user_id=msg.user_id,
        type=msg.type,
        title=msg.title,
        message=msg.message,
        data_json=msg.data_json or "{}",
        priority=priority_from_pb(msg.priority),
        created_at=from_timestamp(msg.created_at),
        read_at=from_timestamp(msg.read_at) if msg.HasField("read_at") else None,
        seen_at=from_timestamp(msg.seen_at) if msg.HasField("seen_at") else None,
        archived_at=from_timestamp(msg.archived_at) if msg.HasField("archived_at") else None,
        expires_at=from_timestamp(msg.expires_at) if msg.HasField("expires_at") else None,
        ignore_mutes=msg.ignore_mutes,
    )


def content_from_pb(
    msg: admin_pb2.CreateNotificationRequest | admin_pb2.BroadcastNotificationRequest,
) -> Content:
    return Content(
        type=msg.type,
        title=msg.title,
        message=msg.message,
        data_json=msg.data_json,
        priority=priority_from_pb(msg.priority),
        expires_at=instant(msg.expires_at, "expires_at") if msg.HasField("expires_at") else None,
        ignore_mutes=msg.ignore_mutes,
    )


def query_from_pb(msg: stream_pb2.ListNotificationsRequest) -> InboxQuery | None:
    """A list request as the engine's query; an ``InvalidArgument`` names the field as the
    REST query does (``type``, ``priority``, ``created_after`` …).

    Filters combine: ``unread_only`` with ``read`` true selects nothing, which is None
    (once the rest of the request is found valid)."""
    if msg.limit < 0:
        raise InvalidArgument("limit", "must be at least 1")
    priorities = []
    for value in msg.priorities:
        if value == notification_pb2.PRIORITY_UNSPECIFIED:
            raise InvalidArgument("priority", "must be one of low, normal, high, urgent")
        priorities.append(priority_from_pb(value))
    read = msg.read if msg.HasField("read") else None
    nothing = msg.unread_only and read is True
    query = InboxQuery(
        unread_only=msg.unread_only and not nothing,
        read=read,
        seen=msg.seen if msg.HasField("seen") else None,
        archived=msg.archived,
        types=tuple(msg.types),
        priorities=tuple(priorities),
        created_after=(
            instant(msg.created_after, "created_after") if msg.HasField("created_after") else None
        ),
        created_before=(
            instant(msg.created_before, "created_before")
            if msg.HasField("created_before")
            else None
        ),
        limit=msg.limit or LIST_LIMIT_DEFAULT,
        before_id=msg.before_id or None,
    )
    return None if nothing else query


def counts_to_pb(counts: Counts) -> stream_pb2.GetCountsResponse:
    return stream_pb2.GetCountsResponse(
        unread=counts.unread,
        unseen=counts.unseen,
        by_type={
            name: stream_pb2.TypeCounts(unread=c.unread, unseen=c.unseen)
            for name, c in counts.by_type.items()
        },
    )


def delivery_bytes(n: Notification, batch: dict[object, object] | None = None) -> bytes:
    """A serialized ``ConnectResponse{notification}``, byte for byte what protobuf writes.

    A broadcast commits one row per recipient, all with the same content: with the
    ``batch`` memo of its envelopes (``Envelope.batch``), fields 3–8 (type …
    created_at) and 15–16 (expires_at, ignore_mutes) are serialized once per content,
    and each row adds only its id and user id (fields 1–2, which come first in the
    canonical order) and the two enclosing length prefixes. Rows read, seen or archived
    (fields 9–14) are serialized whole.
    """
    # The fields after the user id: a broadcast's rows share them (the same objects, which
    # tuple equality checks first), so comparing with the last row's is all a row costs.
    # A memo is only made for rows neither read, seen nor archived: equal fields say so.
    rest = n[2:]
    last: Any = batch.get(_LAST) if batch is not None else None
    if last is not None and last[0] == rest:
        tail: bytes = last[1]
    elif n.read_at is not None or n.seen_at is not None or n.archived_at is not None:
        return stream_pb2.ConnectResponse(
            notification=stream_pb2.NotificationEvent(notification=notification_to_pb(n))
        ).SerializeToString()
    else:
        tail = _content_tail(n, rest, batch)
    # Fields 1–2 (as protobuf writes them: each left out when zero or empty), then the two
    # enclosing length prefixes (each with its key) around the shared tail, joined once.
    nid = n.id
    if 0x4000 <= nid < 0x200000:  # the usual id: three bytes of varint
        own = bytes((8, (nid & 0x7F) | 0x80, ((nid >> 7) & 0x7F) | 0x80, nid >> 14))
    else:
        own = _NOTIFICATION_ID + wire.varint(nid) if nid else b""
    user = _USER_FIELDS.get(n.user_id)
    if user is None:
        user = _user_field(n.user_id)
    size = len(own) + len(user) + len(tail)
    if size < _PREFIXED_MAX:
        head = _EVENT_PREFIX[size]
        return b"".join((_RESPONSE_PREFIX[size + len(head)], head, own, user, tail))
    head = wire.NOTIFICATION_EVENT_NOTIFICATION + wire.varint(size)
    size += len(head)
    outer = wire.CONNECT_RESPONSE_NOTIFICATION + wire.varint(size)
    return b"".join((outer, head, own, user, tail))


def _user_field(user_id: str) -> bytes:
    """``Notification.user_id`` as a serialized field (empty: left out), memoised: the
    same users receive one broadcast after another."""
    if len(_USER_FIELDS) >= _USER_FIELDS_MAX:
        _USER_FIELDS.clear()
    user = user_id.encode()
    field = _NOTIFICATION_USER_ID + wire.varint(len(user)) + user if user else b""
    _USER_FIELDS[user_id] = field
    return field


def _content_tail(
    n: Notification, rest: tuple[object, ...], batch: dict[object, object] | None
) -> bytes:
    """Fields 3–16 of an unread, unseen, unarchived ``n`` serialized, memoised in ``batch``
    by content (the rows of one commit may hold several) and as its last one."""
    key = (
        _CONTENT, n.type, n.title, n.message, n.data_json, n.priority, n.created_at,
        n.expires_at, n.ignore_mutes,
    )  # fmt: skip
    tail = batch.get(key) if batch is not None else None
    if tail is None:
        content = notification_pb2.Notification(
            type=n.type,
            title=n.title,
            message=n.message,
            data_json=n.data_json,
            priority=_PRIORITY_TO_PB[n.priority],
            created_at=timestamp(n.created_at),
            ignore_mutes=n.ignore_mutes,
        )
        if n.expires_at is not None:
            content.expires_at.CopyFrom(timestamp(n.expires_at))
        tail = content.SerializeToString()
        if batch is not None:
            batch[key] = tail
    if batch is not None:
        batch[_LAST] = (rest, tail)
    return cast(bytes, tail)


#: The keys of ``Notification.id`` (1, a varint) and ``Notification.user_id`` (2).
_NOTIFICATION_ID: Final = b"\x08"
_NOTIFICATION_USER_ID: Final = b"\x12"

#: ``Notification.user_id`` fields by user id (``_user_field``), at most this many.
_USER_FIELDS: dict[str, bytes] = {}
_USER_FIELDS_MAX: Final = 1 << 16

#: Below this size of what they enclose, the two length prefixes of a delivery with their
#: keys come from these tables: ``NotificationEvent.notification`` (``_EVENT_PREFIX``) and
#: ``ConnectResponse.notification`` (``_RESPONSE_PREFIX``, which encloses the former).
_PREFIXED_MAX: Final = wire.SMALL_MAX - 4
_EVENT_PREFIX: Final = [wire.NOTIFICATION_EVENT_NOTIFICATION + v for v in wire.SMALL]
_RESPONSE_PREFIX: Final = [wire.CONNECT_RESPONSE_NOTIFICATION + v for v in wire.SMALL]

#: Marks ``delivery_bytes``'s entries in an envelope batch memo: by content, and the last.
_CONTENT: Final = object()
_LAST: Final = object()


def _delivery(envelope: events.Envelope) -> bytes:
    return delivery_bytes(envelope.notification, envelope.batch)


#: What ``delivery_encoded`` passes to ``Envelope.encoded``: ``envelope.encoded(
#: DELIVERY_ENCODER)`` is ``delivery_encoded(envelope)``, one call less.
DELIVERY_ENCODER: Final = _delivery


def delivery_encoded(envelope: events.Envelope) -> bytes:
    """The serialized ``ConnectResponse`` of a delivery, encoded once per envelope (the
    sessions of one user share it)."""
    return envelope.encoded(_delivery)


def event_bytes(event: events.Event) -> bytes:
    """``event_to_pb`` serialized."""
    message = event_to_pb(event)
    return message if isinstance(message, bytes) else message.SerializeToString()


def filter_to_pb(type_filter: TypeFilter) -> stream_pb2.SubscriptionUpdatedEvent:
    if type_filter.only is not None:
        return stream_pb2.SubscriptionUpdatedEvent(
            mode=stream_pb2.FILTER_MODE_ONLY, notification_types=sorted(type_filter.only)
        )
    return stream_pb2.SubscriptionUpdatedEvent(
        mode=stream_pb2.FILTER_MODE_ALL_EXCEPT, excluded_types=sorted(type_filter.excluded)
    )


def command_from_pb(msg: stream_pb2.ConnectRequest) -> events.Command:
    kind = msg.WhichOneof("kind")
    if kind == "ping":
        return events.Ping()
    if kind == "mark_read":
        return events.MarkRead(msg.mark_read.notification_id)
    if kind == "subscribe":
        return events.Subscribe(tuple(msg.subscribe.notification_types))
    if kind == "unsubscribe":
        return events.Unsubscribe(tuple(msg.unsubscribe.notification_types))
    if kind == "mark_seen":
        return events.MarkSeen(msg.mark_seen.up_to_id or None)
    if kind == "mark_all_read":
        wanted = msg.mark_all_read
        return events.MarkAllRead(wanted.notification_type or None, wanted.up_to_id or None)
    if kind == "archive":
        return events.Archive(msg.archive.notification_id)
    if kind == "unarchive":
        return events.Unarchive(msg.unarchive.notification_id)
    if kind == "delete":
        return events.Delete(msg.delete.notification_id)
    if kind == "get_counts":
        return events.GetCounts()
    if kind == "update_preferences":
        return events.UpdatePreferences(tuple(msg.update_preferences.muted_types))
    if kind == "refresh":  # pragma: no cover - the servicer verifies the token first
        raise ValueError("a refresh needs the authenticator: see server.rpc.stream")
    return events.UnknownCommand(kind or "")


def event_to_pb(event: events.Event) -> stream_pb2.ConnectResponse | bytes:
    """The wire form of a session event (``Closed`` is not a message: see the servicer)."""
    match event:
        case events.Delivery():
            return event.envelope.encoded(_delivery)
        case events.ConnectionEstablished():
            return stream_pb2.ConnectResponse(
                connection_established=stream_pb2.ConnectionEstablished(
                    user_id=event.user_id,
                    connection_id=event.connection_id,
                    heartbeat_interval=event.heartbeat_interval,
                    queued=event.queued,
                    truncated=event.truncated,
                    server_time=timestamp(event.server_time),
                )
            )
        case events.Heartbeat():
            return stream_pb2.ConnectResponse(
                heartbeat=stream_pb2.HeartbeatEvent(timestamp=timestamp(event.timestamp))
            )
        case events.Pong():
            return stream_pb2.ConnectResponse(
                pong=stream_pb2.PongEvent(timestamp=timestamp(event.timestamp))
            )
        case events.MarkedRead():
            return stream_pb2.ConnectResponse(
                notification_marked_read=stream_pb2.NotificationMarkedReadEvent(
                    notification_id=event.notification_id
                )
            )
        case events.SubscriptionUpdated():
            return stream_pb2.ConnectResponse(subscription_updated=filter_to_pb(event.type_filter))
        case events.NotificationsSeen():
            return stream_pb2.ConnectResponse(
                notifications_seen=stream_pb2.NotificationsSeenEvent(up_to_id=event.up_to_id)
            )
        case events.NotificationsMarkedRead():
            return stream_pb2.ConnectResponse(
                notifications_marked_read=stream_pb2.NotificationsMarkedReadEvent(
                    up_to_id=event.up_to_id, notification_type=event.notification_type or ""
                )
            )
        case events.NotificationArchived():
            return stream_pb2.ConnectResponse(
                notification_archived=stream_pb2.NotificationArchivedEvent(
                    notification_id=event.notification_id
                )
            )
        case events.NotificationUnarchived():
            return stream_pb2.ConnectResponse(
                notification_unarchived=stream_pb2.NotificationUnarchivedEvent(
                    notification_id=event.notification_id
                )
            )
        case events.NotificationDeleted():
            return stream_pb2.ConnectResponse(
                notification_deleted=stream_pb2.NotificationDeletedEvent(
                    notification_id=event.notification_id
                )
            )
        case events.CountsEvent():
            counts = counts_to_pb(event.counts)
            return stream_pb2.ConnectResponse(
                counts=stream_pb2.CountsEvent(
                    unread=counts.unread, unseen=counts.unseen, by_type=counts.by_type
                )
            )
        case events.PreferencesUpdated():
            return stream_pb2.ConnectResponse(
                preferences_updated=stream_pb2.PreferencesUpdatedEvent(
                    muted_types=event.muted_types
                )
            )
        case events.ErrorEvent():
            return stream_pb2.ConnectResponse(
                error=stream_pb2.ErrorEvent(code=event.code, message=event.message)
            )
        case events.TokenExpiring():
            return stream_pb2.ConnectResponse(
                token_expiring=stream_pb2.TokenExpiringEvent(expires_at=timestamp(event.expires_at))
            )
        case events.TokenRefreshed():
            refreshed = stream_pb2.TokenRefreshedEvent()
            if event.expires_at is not None:
                refreshed.expires_at.CopyFrom(timestamp(event.expires_at))
            return stream_pb2.ConnectResponse(token_refreshed=refreshed)
    raise TypeError(f"no wire form for {event!r}")


def stats_to_pb(stats: Stats) -> admin_pb2.GetStatsResponse:
    return admin_pb2.GetStatsResponse(
        total_connections=stats.total_connections,
        unique_users=stats.unique_users,
        messages_sent=stats.messages_sent,
        queued=stats.queued,
        dropped=stats.dropped,
        uptime_s=stats.uptime_s,
        node_id=stats.node_id,
        nodes=[node_stats_to_pb(n) for n in stats.nodes],
        cluster=admin_pb2.ClusterStats(
            total_connections=stats.cluster.total_connections,
            unique_users=stats.cluster.unique_users,
            nodes=stats.cluster.nodes,
        ),
    )


def node_stats_to_pb(node: NodeStats) -> admin_pb2.NodeStats:
    return admin_pb2.NodeStats(
        node_id=node.node_id,
        total_connections=node.total_connections,
        unique_users=node.unique_users,
        messages_sent=node.messages_sent,
        uptime_s=node.uptime_s,
        dropped=node.dropped,
    )
