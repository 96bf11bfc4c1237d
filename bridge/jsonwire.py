"""tidings.v1 messages ⇄ the JSON of docs/PROTOCOL.md §3 and §5. Pure functions, no I/O.

Server → client: ``event_frame`` turns one ``ConnectResponse`` into the text of one
WebSocket frame. A notification is encoded once: its ``data_json`` text is spliced in
as an ``orjson.Fragment`` (never parsed), and the finished frame is kept in the
bridge's ``FrameCache`` so that every socket receiving the same notification reuses it.

Client → server: ``decode_command`` turns one frame into a ``ConnectRequest``, or into
a ``WireError`` (frames that are not JSON objects, unknown types, fields of the wrong
JSON type: the pydantic models of ``bridge.wsschemas`` judge), which the bridge reports
to the engine session as such: the engine counts it against the rate limit and answers
it. Everything else is the engine's to judge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from tidings.v1 import admin_pb2, notification_pb2, stream_pb2

from bridge import wsschemas

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
        "seen": n.seen,
        "seen_at": iso(n.seen_at) if n.seen and n.HasField("seen_at") else None,
        "archived": n.archived,
        "archived_at": iso(n.archived_at) if n.archived and n.HasField("archived_at") else None,
        "expires_at": iso(n.expires_at) if n.HasField("expires_at") else None,
        "ignore_mutes": n.ignore_mutes,
    }


def notification_json(n: notification_pb2.Notification) -> bytes:
    """One notification as §3 JSON."""
    return orjson.dumps(notification_object(n))


def counts_object(
    m: stream_pb2.GetCountsResponse | stream_pb2.CountsEvent,
) -> dict[str, Any]:
    """The counts answer of docs/PROTOCOL.md §6.4 (by type sorted by name)."""
    return {
        "unread": m.unread,
        "unseen": m.unseen,
        "by_type": {
            name: {"unread": c.unread, "unseen": c.unseen} for name, c in sorted(m.by_type.items())
        },
    }


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
    """Recent notification frames, shared by every socket of one bridge (kept on its state).

    Two bounded maps, each starting over when full (cheaper per frame than keeping
    recency order):

    * whole frames, keyed by id and state: the sessions of one user on this bridge
      share them (a notification's content never changes after creation; only
      ``read_at``, ``seen_at`` and ``archived_at`` do, so they are part of the key);
    * the encoded tail of each recent content: fresh notifications (unread, unseen, not
      archived) of one content (a broadcast: one row per recipient) share everything
      after ``user_id``, so each row adds only its id and user id.
    """

    __slots__ = ("_frames", "_tails", "frames_size", "tails_size")

    def __init__(self, frames_size: int = 4096, tails_size: int = 512) -> None:
        self._frames: dict[tuple[int, ...] | int, str] = {}
        self._tails: dict[tuple[object, ...], str] = {}
        #: At most this many frames and this many contents are kept.
        self.frames_size = frames_size
        self.tails_size = tails_size

    def frame(self, n: notification_pb2.Notification) -> str:
        """The ``notification`` frame for ``n``, encoded at most once while cached."""
        fresh = not (n.read or n.seen or n.archived)
        key: tuple[int, ...] | int = n.id
        if not fresh:
            key = (n.id, *_instant(n.read, n.read_at), *_instant(n.seen, n.seen_at))
            key += _instant(n.archived, n.archived_at)
        frames = self._frames
        text = frames.get(key)
        if text is None:
            if len(frames) >= self.frames_size:
                frames.clear()
            text = frames[key] = self._fresh(n) if fresh else notification_frame(n)
        return text

    def _fresh(self, n: notification_pb2.Notification) -> str:
        ts = n.created_at
        key = (
            n.type, n.title, n.message, n.data_json, n.priority, ts.seconds, ts.nanos,
            *_instant(n.HasField("expires_at"), n.expires_at), n.ignore_mutes,
        )  # fmt: skip
        tails = self._tails
        tail = tails.get(key)
        if tail is None:
            if len(tails) >= self.tails_size:
                tails.clear()
            obj = notification_object(n)
            del obj["id"], obj["user_id"]
            tail = tails[key] = orjson.dumps(obj).decode()[1:]  # without the opening brace
        user = orjson.dumps(n.user_id).decode()
        return f'{{"type":"notification","notification":{{"id":{n.id},"user_id":{user},{tail}}}'

    def __len__(self) -> int:
        """How many entries (frames and contents) are held: at most the two sizes."""
        return len(self._frames) + len(self._tails)


def _instant(isset: bool, ts: Timestamp) -> tuple[int, int]:
    """A timestamp field as a cache key part: (-1, 0) while unset."""
    return (ts.seconds, ts.nanos) if isset else (-1, 0)


def notification_frame(n: notification_pb2.Notification) -> str:
    """``{"type":"notification","notification":{…}}`` as text, encoded afresh."""
    return orjson.dumps({"type": "notification", "notification": notification_object(n)}).decode()


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


def _seen(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    return {"type": "notifications_seen", "up_to_id": m.notifications_seen.up_to_id}


def _all_read(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    e = m.notifications_marked_read
    return {
        "type": "notifications_marked_read",
        "up_to_id": e.up_to_id,
        "notification_type": e.notification_type or None,
    }


def _archived(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    nid = m.notification_archived.notification_id
    return {"type": "notification_archived", "notification_id": nid}


def _unarchived(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    nid = m.notification_unarchived.notification_id
    return {"type": "notification_unarchived", "notification_id": nid}


def _deleted(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    nid = m.notification_deleted.notification_id
    return {"type": "notification_deleted", "notification_id": nid}


def _counts(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    return {"type": "counts", **counts_object(m.counts)}


def _preferences(m: stream_pb2.ConnectResponse) -> dict[str, Any]:
    muted = list(m.preferences_updated.muted_types)
    return {"type": "preferences_updated", "muted_types": muted}


_OBJECTS: Final[dict[str, Callable[[stream_pb2.ConnectResponse], dict[str, Any]]]] = {
    "connection_established": _established,
    "heartbeat": _heartbeat,
    "pong": _pong,
    "notification_marked_read": _marked_read,
    "subscription_updated": _subscription,
    "error": _error,
    "token_expiring": _token_expiring,
    "token_refreshed": _token_refreshed,
    "notifications_seen": _seen,
    "notifications_marked_read": _all_read,
    "notification_archived": _archived,
    "notification_unarchived": _unarchived,
    "notification_deleted": _deleted,
    "counts": _counts,
    "preferences_updated": _preferences,
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


def _invalid(error: ErrorDetails, message: dict[str, Any]) -> WireError:
    """The §5.5 error for the first thing ``ClientMessage`` found wrong with ``message``."""
    kind = error["type"]
    if kind == "model_attributes_type":
        return WireError("invalid_json", "the frame must be a JSON object")
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        tag = message.get("type")
        if isinstance(tag, str):
            return WireError("unknown_message_type", f"unknown message type {tag[:64]!r}")
        return WireError("unknown_message_type", "the frame has no string 'type'")
    tag, field = error["loc"][:2]  # a known type with a bad field
    model = _COMMANDS[str(tag)]
    must = model.model_fields[str(field)].description
    return WireError("invalid_message", f"{tag}: {field} must be {must}")


_COMMANDS: Final[dict[str, type[wsschemas.Command]]] = {
    "ping": wsschemas.Ping,
    "mark_read": wsschemas.MarkRead,
    "subscribe": wsschemas.Subscribe,
    "unsubscribe": wsschemas.Unsubscribe,
    "refresh": wsschemas.Refresh,
    "mark_seen": wsschemas.MarkSeen,
    "mark_all_read": wsschemas.MarkAllRead,
    "archive": wsschemas.Archive,
    "unarchive": wsschemas.Unarchive,
    "delete": wsschemas.Delete,
    "get_counts": wsschemas.GetCounts,
    "update_preferences": wsschemas.UpdatePreferences,
}
_PING: Final = stream_pb2.ConnectRequest(ping=stream_pb2.PingCommand())
_GET_COUNTS: Final = stream_pb2.ConnectRequest(get_counts=stream_pb2.GetCountsCommand())


def decode_command(frame: str | bytes) -> stream_pb2.ConnectRequest | WireError:
    """One client frame → the command to send upstream, or the error to answer with."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return WireError("invalid_json", "the frame is not valid JSON")
    try:
        command = wsschemas.ClientMessage.validate_python(message)
    except ValidationError as exc:
        return _invalid(exc.errors(include_url=False)[0], message)
    match command:
        case wsschemas.Ping():
            return _PING
        case wsschemas.MarkRead(notification_id=nid):
            if nid > INT64_MAX:
                return WireError("not_found", f"notification {nid} not found")
            return stream_pb2.ConnectRequest(
                mark_read=stream_pb2.MarkReadCommand(notification_id=nid)
            )
        case wsschemas.Subscribe(notification_types=types):
            return stream_pb2.ConnectRequest(
                subscribe=stream_pb2.SubscribeCommand(notification_types=types)
            )
        case wsschemas.Unsubscribe(notification_types=types):
            return stream_pb2.ConnectRequest(
                unsubscribe=stream_pb2.UnsubscribeCommand(notification_types=types)
            )
        case wsschemas.Refresh(token=tok):
            return stream_pb2.ConnectRequest(refresh=stream_pb2.RefreshCommand(token=tok))
        case wsschemas.MarkSeen(up_to_id=up_to):
            return stream_pb2.ConnectRequest(
                mark_seen=stream_pb2.MarkSeenCommand(up_to_id=min(up_to or 0, INT64_MAX))
            )
        case wsschemas.MarkAllRead(notification_type=kind, up_to_id=up_to):
            return stream_pb2.ConnectRequest(
                mark_all_read=stream_pb2.MarkAllReadCommand(
                    notification_type=kind or "", up_to_id=min(up_to or 0, INT64_MAX)
                )
            )
        case wsschemas.Archive(notification_id=nid):
            if nid > INT64_MAX:
                return WireError("not_found", f"notification {nid} not found")
            return stream_pb2.ConnectRequest(archive=stream_pb2.ArchiveCommand(notification_id=nid))
        case wsschemas.Unarchive(notification_id=nid):
            if nid > INT64_MAX:
                return WireError("not_found", f"notification {nid} not found")
            return stream_pb2.ConnectRequest(
                unarchive=stream_pb2.UnarchiveCommand(notification_id=nid)
            )
        case wsschemas.Delete(notification_id=nid):
            if nid > INT64_MAX:
                return WireError("not_found", f"notification {nid} not found")
            return stream_pb2.ConnectRequest(delete=stream_pb2.DeleteCommand(notification_id=nid))
        case wsschemas.GetCounts():
            return _GET_COUNTS
        case wsschemas.UpdatePreferences(muted_types=muted):
            return stream_pb2.ConnectRequest(
                update_preferences=stream_pb2.UpdatePreferencesCommand(muted_types=muted)
            )
