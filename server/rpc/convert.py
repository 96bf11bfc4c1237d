"""Domain values ↔ tidings.v1 messages. Pure functions, no I/O."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Final, cast

from google.protobuf.timestamp_pb2 import Timestamp
from tidings.v1 import admin_pb2, notification_pb2, stream_pb2

from server.engine import events
from server.engine.errors import InvalidArgument
from server.engine.filters import TypeFilter
from server.engine.models import Content, NodeStats, Notification, Priority, Stats
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
    )
    if n.read_at is not None:
        msg.read_at.CopyFrom(timestamp(n.read_at))
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
    )


def delivery_bytes(n: Notification, batch: dict[object, object] | None = None) -> bytes:
    """A serialized ``ConnectResponse{notification}``, byte for byte what protobuf writes.

    A broadcast commits one row per recipient, all with the same content: with the
    ``batch`` memo of its envelopes (``Envelope.batch``), fields 3–8 (type …
    created_at) are serialized once per content, and each row adds only its id and
    user id (fields 1–2, which come first in the canonical order) and the two
    enclosing length prefixes.
    """
    if n.read_at is not None:
        return stream_pb2.ConnectResponse(
            notification=stream_pb2.NotificationEvent(notification=notification_to_pb(n))
        ).SerializeToString()
    key = (_CONTENT, n.type, n.title, n.message, n.data_json, n.priority, n.created_at)
    tail = batch.get(key) if batch is not None else None
    if tail is None:
        tail = notification_pb2.Notification(
            type=n.type,
            title=n.title,
            message=n.message,
            data_json=n.data_json,
            priority=_PRIORITY_TO_PB[n.priority],
            created_at=timestamp(n.created_at),
        ).SerializeToString()
        if batch is not None:
            batch[key] = tail
    body = notification_pb2.Notification(id=n.id, user_id=n.user_id).SerializeToString()
    return wire.field(
        wire.CONNECT_RESPONSE_NOTIFICATION,
        wire.field(wire.NOTIFICATION_EVENT_NOTIFICATION, body + cast(bytes, tail)),
    )


#: Marks ``delivery_bytes``'s entries in an envelope batch memo.
_CONTENT: Final = object()


def _delivery(envelope: events.Envelope) -> bytes:
    return delivery_bytes(envelope.notification, envelope.batch)


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
