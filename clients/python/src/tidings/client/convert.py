"""tidings.v1 messages ↔ SDK values. Pure functions, no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tidings.client.events import (
    InboxEvent,
    NotificationArchived,
    NotificationDeleted,
    NotificationMarkedRead,
    NotificationsMarkedRead,
    NotificationsSeen,
    NotificationUnarchived,
    PreferencesUpdated,
)
from tidings.client.models import (
    ConnectionInfo,
    ConnectionStatus,
    Counts,
    NodeStats,
    Notification,
    Priority,
    Stats,
    Subscription,
    TypeCounts,
)
from tidings.v1 import admin_pb2, notification_pb2, stream_pb2

_PRIORITY_TO_PB: dict[Priority, notification_pb2.Priority.ValueType] = {
    Priority.LOW: notification_pb2.PRIORITY_LOW,
    Priority.NORMAL: notification_pb2.PRIORITY_NORMAL,
    Priority.HIGH: notification_pb2.PRIORITY_HIGH,
    Priority.URGENT: notification_pb2.PRIORITY_URGENT,
}
_PRIORITY_FROM_PB: dict[int, Priority] = {int(v): k for k, v in _PRIORITY_TO_PB.items()}


def priority_to_pb(priority: Priority | str) -> notification_pb2.Priority.ValueType:
    # A member, or its value (a StrEnum member hashes and compares as its value), at
    # once; anything else through ``Priority``, which refuses what is not a priority.
    try:
        return _PRIORITY_TO_PB[priority]  # type: ignore[index]
    except (KeyError, TypeError):
        return _PRIORITY_TO_PB[Priority(priority)]


def priority_from_pb(value: int) -> Priority:
    return _PRIORITY_FROM_PB.get(value, Priority.NORMAL)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(ts: Timestamp) -> datetime:
    """``ts.ToDatetime(tzinfo=UTC)``, the same instant (nanoseconds cut to microseconds),
    without its detour through a naive datetime."""
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def timestamp(moment: datetime) -> Timestamp:
    """A protobuf Timestamp for an aware datetime (a naive one is refused: whose zone?)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware datetimes")
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def parse_data(data_json: str) -> dict[str, Any]:
    """The ``data`` object of a notification; anything but a JSON object reads as ``{}``."""
    if not data_json or data_json == "{}":  # the server's for no data: no parse
        return {}
    try:
        value = json.loads(data_json)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def data_to_json(data: dict[str, Any] | None) -> str:
    if not data:
        return ""
    if not isinstance(data, dict):
        raise TypeError("data must be a dict (a JSON object)")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def notification(msg: notification_pb2.Notification) -> Notification:
    return Notification(
        id=msg.id,
        user_id=msg.user_id,
        type=msg.type,
        title=msg.title,
        message=msg.message,
        data=parse_data(msg.data_json),
        priority=priority_from_pb(msg.priority),
        created_at=_time(msg.created_at) if msg.HasField("created_at") else None,
        read=msg.read,
        read_at=_time(msg.read_at) if msg.HasField("read_at") else None,
        seen=msg.seen,
        seen_at=_time(msg.seen_at) if msg.HasField("seen_at") else None,
        archived=msg.archived,
        archived_at=_time(msg.archived_at) if msg.HasField("archived_at") else None,
        expires_at=_time(msg.expires_at) if msg.HasField("expires_at") else None,
        ignore_mutes=msg.ignore_mutes,
    )


def counts(msg: stream_pb2.GetCountsResponse | stream_pb2.CountsEvent) -> Counts:
    return Counts(
        unread=msg.unread,
        unseen=msg.unseen,
        by_type={
            name: TypeCounts(unread=c.unread, unseen=c.unseen)
            for name, c in sorted(msg.by_type.items())
        },
    )


def inbox_event(message: stream_pb2.ConnectResponse) -> InboxEvent | None:
    """The inbox event a live-session message carries, or None for any other message."""
    kind = message.WhichOneof("kind")
    if kind == "notification_marked_read":
        return NotificationMarkedRead(message.notification_marked_read.notification_id)
    if kind == "notifications_seen":
        return NotificationsSeen(message.notifications_seen.up_to_id)
    if kind == "notifications_marked_read":
        marked = message.notifications_marked_read
        return NotificationsMarkedRead(marked.up_to_id, marked.notification_type or None)
    if kind == "notification_archived":
        return NotificationArchived(message.notification_archived.notification_id)
    if kind == "notification_unarchived":
        return NotificationUnarchived(message.notification_unarchived.notification_id)
    if kind == "notification_deleted":
        return NotificationDeleted(message.notification_deleted.notification_id)
    if kind == "preferences_updated":
        return PreferencesUpdated(tuple(message.preferences_updated.muted_types))
    return None


def connection_info(msg: stream_pb2.ConnectionEstablished) -> ConnectionInfo:
    return ConnectionInfo(
        user_id=msg.user_id,
        connection_id=msg.connection_id,
        heartbeat_interval=msg.heartbeat_interval,
        queued=msg.queued,
        truncated=msg.truncated,
        server_time=_time(msg.server_time) if msg.HasField("server_time") else None,
    )


def subscription(msg: stream_pb2.SubscriptionUpdatedEvent) -> Subscription:
    if msg.mode == stream_pb2.FILTER_MODE_ONLY:
        return Subscription(types=frozenset(msg.notification_types))
    return Subscription(excluded=frozenset(msg.excluded_types))


def stats(msg: admin_pb2.GetStatsResponse) -> Stats:
    return Stats(
        total_connections=msg.total_connections,
        unique_users=msg.unique_users,
        messages_sent=msg.messages_sent,
        queued=msg.queued,
        dropped=msg.dropped,
        uptime_s=msg.uptime_s,
        node_id=msg.node_id,
        nodes=tuple(
            NodeStats(
                node_id=n.node_id,
                total_connections=n.total_connections,
                unique_users=n.unique_users,
                messages_sent=n.messages_sent,
                uptime_s=n.uptime_s,
                dropped=n.dropped,
            )
            for n in msg.nodes
        ),
    )


def connection_status(msg: admin_pb2.GetConnectionStatusResponse) -> ConnectionStatus:
    return ConnectionStatus(
        user_id=msg.user_id, connected=msg.connected, connection_count=msg.connection_count
    )
