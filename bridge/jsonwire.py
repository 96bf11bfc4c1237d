"""tidings.v1 messages ⇄ the JSON of docs/PROTOCOL.md §3 and §5. Pure functions, no I/O.

Server → client: ``event_frame`` turns one ``ConnectResponse`` into the text of one
WebSocket frame. A notification is encoded once: its ``data_json`` text is spliced in
as an ``orjson.Fragment`` (never parsed), and the finished frame is kept in a
``FrameCache`` so that every socket receiving the same notification reuses it.

Client → server: ``decode_command`` turns one frame into a ``ConnectRequest``, or into
a ``WireError`` (frames that are not JSON objects, unknown types, fields of the wrong
JSON type), which the bridge reports to the engine session as such: the engine counts
it against the rate limit and answers it. Everything else is the engine's to judge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from tidings.v1 import admin_pb2, notification_pb2, stream_pb2

INT64_MAX: Final = 2**63 - 1

PRIORITY_NAMES: Final[dict[int, str]] = {
    notification_pb2.PRIORITY_UNSPECIFIED: "normal",
    notification_pb2.PRIORITY_LOW: "low",
    notification_pb2.PRIORITY_NORMAL: "normal",
    notification_pb2.PRIORITY_HIGH: "high",
    notification_pb2.PRIORITY_URGENT: "urgent",
}
PRIORITY_VALUES: Final[dict[str, notification_pb2.Priority.ValueType]] = {
    "low": notification_pb2.PRIORITY_LOW,
    "normal": notification_pb2.PRIORITY_NORMAL,
    "high": notification_pb2.PRIORITY_HIGH,
    "urgent": notification_pb2.PRIORITY_URGENT,
}


# --- values ----------------------------------------------------------------------------


def iso(ts: Timestamp) -> str:
    """``2026-11-25T22:52:07.123Z``: ISO-8601 UTC with milliseconds (docs/PROTOCOL.md §3)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts.seconds)) + (
        f".{ts.nanos // 1_000_000:03d}Z"
    )


def notification_object(n: notification_pb2.Notification) -> dict[str, Any]:
    """The §3 object, ready for ``orjson.dumps`` (``data`` stays the engine's JSON text)."""
    read = n.read
    return {
        "id": n.id,
        "user_id": n.user_id,
        "type": n.type,
        "title": n.title,
        "message": n.message,
        "data": orjson.Fragment(n.data_json or "{}"),
        "priority": PRIORITY_NAMES.get(n.priority, "normal"),
        "created_at": iso(n.created_at),
        "read": read,
        "read_at": iso(n.read_at) if read and n.HasField("read_at") else None,
    }


def notification_json(n: notification_pb2.Notification) -> bytes:
    """One notification as §3 JSON."""
    return orjson.dumps(notification_object(n))


def stats_object(stats: admin_pb2.GetStatsResponse) -> dict[str, Any]:
    """The §6 stats answer."""
    return {
        "total_connections": stats.total_connections,
        "unique_users": stats.unique_users,
        "messages_sent": stats.messages_sent,
        "queued": stats.queued,
        "dropped": stats.dropped,
        "uptime_s": stats.uptime_s,
        "node_id": stats.node_id,
        "nodes": [
            {
                "node_id": node.node_id,
                "total_connections": node.total_connections,
                "unique_users": node.unique_users,
                "messages_sent": node.messages_sent,
                "dropped": node.dropped,
                "uptime_s": node.uptime_s,
            }
            for node in stats.nodes
        ],
        "cluster": {
            "total_connections": stats.cluster.total_connections,
            "unique_users": stats.cluster.unique_users,
            "nodes": stats.cluster.nodes,
        },
    }


# --- server → client frames -------------------------------------------------------------


class FrameCache:
    """Recent notification frames, keyed by id and read state (the sessions of one
    user on this bridge share them).

    A notification's content never changes after creation; only ``read``/``read_at``
    do, so they are part of the key. Bounded: when full it starts over, which costs
    less per frame than keeping recency order.
    """

    __slots__ = ("_frames", "_size", "hits", "misses")

    def __init__(self, size: int = 4096) -> None:
        self._frames: dict[tuple[int, int, int] | int, str] = {}
        self._size = size
        self.hits = 0
        self.misses = 0

    def frame(self, n: notification_pb2.Notification) -> str:
        """The ``notification`` frame for ``n``, encoded at most once while cached."""
        key = (n.id, n.read_at.seconds, n.read_at.nanos) if n.read else n.id
        frames = self._frames
        text = frames.get(key)
        if text is not None:
            self.hits += 1
            return text
        self.misses += 1
        if len(frames) >= self._size:
            frames.clear()
        text = frames[key] = notification_frame(n)
        return text

    def __len__(self) -> int:
        return len(self._frames)


def notification_frame(n: notification_pb2.Notification) -> str:
    """``{"type":"notification","notification":{…}}`` as text.

    Unread notifications of one content (a broadcast: one row per recipient) share
    everything after ``user_id``: that tail is encoded once and kept, each row adds
    its id and user id.
    """
    if n.read:
        return orjson.dumps(
            {"type": "notification", "notification": notification_object(n)}
        ).decode()
    ts = n.created_at
    key = (n.type, n.title, n.message, n.data_json, n.priority, ts.seconds, ts.nanos)
    tail = _TAILS.get(key)
    if tail is None:
        if len(_TAILS) >= TAIL_CACHE_SIZE:
            _TAILS.clear()
        obj = notification_object(n)
        del obj["id"], obj["user_id"]
        tail = _TAILS[key] = orjson.dumps(obj).decode()[1:]  # without the opening brace
    user = orjson.dumps(n.user_id).decode()
    return f'{{"type":"notification","notification":{{"id":{n.id},"user_id":{user},{tail}}}'


#: Encoded tails of recent notification contents (see ``notification_frame``).
TAIL_CACHE_SIZE = 512
_TAILS: dict[tuple[str, str, str, str, int, int, int], str] = {}


def error_frame(code: str, message: str) -> str:
    """``{"type":"error","code":…,"message":…}`` as text."""
    return orjson.dumps({"type": "error", "code": code, "message": message}).decode()


def _established(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    e = m.connection_established
    return {
        "type": "connection_established",
        "user_id": e.user_id,
        "connection_id": e.connection_id,
        "heartbeat_interval": e.heartbeat_interval,
        "queued": e.queued,
        "truncated": e.truncated,
        "server_time": iso(e.server_time),
    }


def _heartbeat(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    return {"type": "heartbeat", "timestamp": iso(m.heartbeat.timestamp)}


def _pong(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    return {"type": "pong", "timestamp": iso(m.pong.timestamp)}


def _marked_read(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    return {
        "type": "notification_marked_read",
        "notification_id": m.notification_marked_read.notification_id,
    }


def _subscription(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    s = m.subscription_updated
    if s.mode == stream_pb2.FILTER_MODE_ONLY:
        return {
            "type": "subscription_updated",
            "notification_types": list(s.notification_types),
            "excluded_types": [],
        }
    return {
        "type": "subscription_updated",
        "notification_types": None,
        "excluded_types": list(s.excluded_types),
    }


def _error(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    return {"type": "error", "code": m.error.code, "message": m.error.message}


def _token_expiring(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    return {"type": "token_expiring", "expires_at": iso(m.token_expiring.expires_at)}


def _token_refreshed(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    r = m.token_refreshed
    return {
        "type": "token_refreshed",
        "expires_at": iso(r.expires_at) if r.HasField("expires_at") else None,
    }


_OBJECTS: Final[dict[str, Callable[[stream_pb2.ConnectResponse], dict[str, Any]]]] = {
    "connection_established": _established,
    "heartbeat": _heartbeat,
    "pong": _pong,
    "notification_marked_read": _marked_read,
    "subscription_updated": _subscription,
    "error": _error,
    "token_expiring": _token_expiring,
    "token_refreshed": _token_refreshed,
}


def event_frame(m: stream_pb2.ConnectResponse, cache: FrameCache) -> tuple[str, str] | None:
    """``(type, frame text)`` for one server message; None for an empty or unknown one."""
    kind = m.WhichOneof("kind")
    if kind == "notification":
        return kind, cache.frame(m.notification.notification)
    if kind is None:
        return None
    build = _OBJECTS.get(kind)
    if build is None:
        return None
    obj = build(m)
    return obj["type"], orjson.dumps(obj).decode()


# --- client → server frames -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireError:
    """A client frame that is no command, with the §5 error code it is answered with."""

    code: str
    message: str

    @property
    def frame(self) -> str:
        return error_frame(self.code, self.message)


_PING: Final = stream_pb2.ConnectRequest(ping=stream_pb2.PingCommand())


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _types(message: dict[str, Any], kind: str) -> list[str] | WireError:
    types = message.get("notification_types")
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        return WireError("invalid_message", f"{kind}: notification_types must be a list of strings")
    return types


def decode_command(frame: str | bytes) -> stream_pb2.ConnectRequest | WireError:
    """One client frame → the command to send upstream, or the error to answer with."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return WireError("invalid_json", "the frame is not valid JSON")
    if not isinstance(message, dict):
        return WireError("invalid_json", "the frame must be a JSON object")
    kind = message.get("type")
    if kind == "ping":
        return _PING
    if kind == "mark_read":
        nid = message.get("notification_id")
        if not _is_int(nid) or nid <= 0:
            return WireError(
                "invalid_message", "mark_read: notification_id must be a positive integer"
            )
        if nid > INT64_MAX:
            return WireError("not_found", f"notification {nid} not found")
        return stream_pb2.ConnectRequest(mark_read=stream_pb2.MarkReadCommand(notification_id=nid))
    if kind == "subscribe":
        types = _types(message, kind)
        if isinstance(types, WireError):
            return types
        return stream_pb2.ConnectRequest(
            subscribe=stream_pb2.SubscribeCommand(notification_types=types)
        )
    if kind == "unsubscribe":
        types = _types(message, kind)
        if isinstance(types, WireError):
            return types
        return stream_pb2.ConnectRequest(
            unsubscribe=stream_pb2.UnsubscribeCommand(notification_types=types)
        )
    if kind == "refresh":
        tok = message.get("token")
        if not isinstance(tok, str) or not tok:
            return WireError("invalid_message", "refresh: token must be a non-empty string")
        return stream_pb2.ConnectRequest(refresh=stream_pb2.RefreshCommand(token=tok))
    if isinstance(kind, str):
        return WireError("unknown_message_type", f"unknown message type {kind[:64]!r}")
    return WireError("unknown_message_type", "the frame has no string 'type'")
