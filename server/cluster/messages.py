"""What nodes say to each other over the broker, and its compact JSON encoding.

Every message is small: ids, user ids and counters, never notification bodies (the
store is the source of truth; PostgreSQL NOTIFY carries at most 8000 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class Committed:
    """Notifications up to ``last_id`` are committed."""

    node: str
    last_id: int


@dataclass(frozen=True, slots=True)
class Read:
    """A user's notification was marked read."""

    node: str
    user_id: str
    notification_id: int


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close every session of a user."""

    node: str
    user_id: str


@dataclass(frozen=True, slots=True)
class PresenceDelta:
    """Session count changes on ``node``; ``version`` increases by one per message."""

    node: str
    version: int
    deltas: dict[str, int]


@dataclass(frozen=True, slots=True)
class PresenceSnapshot:
    """Part ``part`` of ``parts`` of ``node``'s full session counts at ``version``."""

    node: str
    version: int
    part: int
    parts: int
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class NodeHeartbeat:
    """``node`` is alive; its presence version and figures."""

    node: str
    version: int
    connections: int
    users: int
    messages_sent: int
    dropped: int
    uptime_s: float


@dataclass(frozen=True, slots=True)
class Hello:
    """``node`` (re)joined: everyone please send a presence snapshot."""

    node: str


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """``node`` asks ``target`` for its presence snapshot."""

    node: str
    target: str


@dataclass(frozen=True, slots=True)
class Bye:
    """``node`` is leaving: forget its sessions now."""

    node: str


Message = (
    Committed
    | Read
    | Disconnect
    | PresenceDelta
    | PresenceSnapshot
    | NodeHeartbeat
    | Hello
    | SnapshotRequest
    | Bye
)


def encode(message: Message) -> bytes:
    """The wire form: a JSON array, kind first."""
    match message:
        case Committed(node, last_id):
            return orjson.dumps(["c", node, last_id])
        case Read(node, user_id, notification_id):
            return orjson.dumps(["r", node, user_id, notification_id])
        case Disconnect(node, user_id):
            return orjson.dumps(["d", node, user_id])
        case PresenceDelta(node, version, deltas):
            return orjson.dumps(["p", node, version, deltas])
        case PresenceSnapshot(node, version, part, parts, counts):
            return orjson.dumps(["s", node, version, part, parts, counts])
        case NodeHeartbeat(node, version, connections, users, sent, dropped, uptime):
            return orjson.dumps(["h", node, version, connections, users, sent, dropped, uptime])
        case Hello(node):
            return orjson.dumps(["hello", node])
        case SnapshotRequest(node, target):
            return orjson.dumps(["q", node, target])
        case Bye(node):
            return orjson.dumps(["bye", node])
    raise TypeError(message)


_DECODERS = {
    "c": Committed,
    "r": Read,
    "d": Disconnect,
    "p": PresenceDelta,
    "s": PresenceSnapshot,
    "h": NodeHeartbeat,
    "hello": Hello,
    "q": SnapshotRequest,
    "bye": Bye,
}


def decode(payload: bytes) -> Message | None:
    """The message in ``payload``, or None when it is not one (another version, noise)."""
    try:
        kind, *fields = orjson.loads(payload)
        return _DECODERS[kind](*fields)  # type: ignore[no-any-return]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
