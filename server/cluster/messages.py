"""What nodes say to each other over the broker, and its compact JSON encoding.

Every message is small: ids, user ids and counters, never notification bodies (the
store is the source of truth; PostgreSQL NOTIFY carries at most 8000 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from server.engine.events import (
    InboxEvent,
    NotificationArchived,
    NotificationDeleted,
    NotificationsMarkedRead,
    NotificationsSeen,
    NotificationUnarchived,
    PreferencesUpdated,
)


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
class Inbox:
    """A user's inbox changed (``server.engine.events.InboxEvent``): ``kind`` says how,
    ``number`` is its id (``up_to_id`` or ``notification_id``), ``text`` its type if any.
    New preferences travel as ``kind="preferences"`` alone (the list may not fit): each
    node reads them from the store."""

    node: str
    user_id: str
    kind: str
    number: int = 0
    text: str | None = None


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
    | Inbox
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
        case Inbox(node, user_id, kind, number, text):
            return orjson.dumps(["i", node, user_id, kind, number, text])
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
    "i": Inbox,
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


def inbox_message(node: str, user_id: str, event: InboxEvent) -> Inbox:
    """The message that tells peers of ``event``."""
    match event:
        case NotificationsSeen(up_to_id):
            return Inbox(node, user_id, "seen", up_to_id)
        case NotificationsMarkedRead(up_to_id, notification_type):
            return Inbox(node, user_id, "read_all", up_to_id, notification_type)
        case NotificationArchived(notification_id):
            return Inbox(node, user_id, "archived", notification_id)
        case NotificationUnarchived(notification_id):
            return Inbox(node, user_id, "unarchived", notification_id)
        case NotificationDeleted(notification_id):
            return Inbox(node, user_id, "deleted", notification_id)
        case PreferencesUpdated():
            return Inbox(node, user_id, PREFERENCES)
    raise TypeError(event)


#: The ``Inbox.kind`` of new preferences.
PREFERENCES = "preferences"


def inbox_event(message: Inbox) -> InboxEvent | None:
    """The event an ``Inbox`` message tells of (None for preferences, or an unknown kind)."""
    match message.kind:
        case "seen":
            return NotificationsSeen(message.number)
        case "read_all":
            return NotificationsMarkedRead(message.number, message.text)
        case "archived":
            return NotificationArchived(message.number)
        case "unarchived":
            return NotificationUnarchived(message.number)
        case "deleted":
            return NotificationDeleted(message.number)
    return None
