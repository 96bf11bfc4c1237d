"""What the SDK hands back: small frozen dataclasses, free of protobuf types."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Priority(StrEnum):
    """How urgent a notification is (docs/PROTOCOL.md §3)."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification of the user, as delivered or stored (docs/PROTOCOL.md §3)."""

    id: int
    user_id: str
    type: str
    title: str
    message: str = ""
    #: The producer's ``data`` object, parsed from the wire's ``data_json``.
    data: dict[str, Any] = field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    created_at: datetime | None = None
    read: bool = False
    read_at: datetime | None = None
    #: The user has looked at the list up to here (the badge no longer counts it).
    seen: bool = False
    seen_at: datetime | None = None
    #: Out of the default list and the counts; ``Inbox.list(archived=True)`` shows it.
    archived: bool = False
    archived_at: datetime | None = None
    #: After this instant it is never delivered, listed or counted again.
    expires_at: datetime | None = None
    #: Delivered and counted even when the user muted its type.
    ignore_mutes: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON of docs/PROTOCOL.md §3 (timestamps: ISO-8601 UTC, milliseconds, ``Z``)."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "type": self.type,
            "title": self.title,
            "message": self.message,
            "data": self.data,
            "priority": self.priority.value,
            "created_at": iso(self.created_at),
            "read": self.read,
            "read_at": iso(self.read_at),
            "seen": self.seen,
            "seen_at": iso(self.seen_at),
            "archived": self.archived,
            "archived_at": iso(self.archived_at),
            "expires_at": iso(self.expires_at),
            "ignore_mutes": self.ignore_mutes,
        }


def iso(moment: datetime | None) -> str | None:
    """``2026-11-25T22:52:07.123Z`` for an aware UTC datetime."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class NewNotification:
    """One item of ``Publisher.create_many``: what ``Publisher.create`` takes, as a value."""

    user_id: str | int
    type: str
    title: str
    message: str = ""
    data: dict[str, Any] | None = None
    priority: Priority | str = Priority.NORMAL
    #: A retry with the same key and user returns the first notification; when ``None``,
    #: ``create_many`` makes one up per item (reused by that call's own retries).
    idempotency_key: str | None = None
    #: An aware datetime in the future; after it the notification is gone for the user.
    expires_at: datetime | None = None
    #: Deliver and count it even when the user muted ``type`` (e.g. a security alert).
    ignore_mutes: bool = False


@dataclass(frozen=True, slots=True)
class CreateResult:
    """The answer to ``Publisher.create``."""

    notification: Notification
    #: False when the idempotency key matched an earlier notification (nothing new was made).
    created: bool


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """The server's greeting on a live session (``connection_established``)."""

    user_id: str
    connection_id: str
    #: Seconds between heartbeats; silence for twice this long means the connection is dead.
    heartbeat_interval: float
    #: How many replayed notifications follow the greeting.
    queued: int
    #: True when older notifications were skipped by the server's queue or replay cap.
    truncated: bool
    server_time: datetime | None


@dataclass(frozen=True, slots=True)
class Subscription:
    """A session's type filter: *only* ``types``, or every type except ``excluded``.

    ``types is None`` means "all but ``excluded``". The rules (docs/PROTOCOL.md §5.4):
    ``subscribe(T)`` from "all but E" gives "only T", from "only S" gives "only S ∪ T";
    ``unsubscribe(T)`` from "only S" gives "only S \\ T", from "all but E" gives "all but E ∪ T".
    """

    types: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()

    def admits(self, notification_type: str) -> bool:
        if self.types is not None:
            return notification_type in self.types
        return notification_type not in self.excluded

    def subscribe(self, types: Iterable[str]) -> Subscription:
        admitted = frozenset(types)
        if self.types is None:
            return Subscription(types=admitted)
        return Subscription(types=self.types | admitted)

    def unsubscribe(self, types: Iterable[str]) -> Subscription:
        refused = frozenset(types)
        if self.types is None:
            return Subscription(excluded=self.excluded | refused)
        return Subscription(types=self.types - refused)


@dataclass(frozen=True, slots=True)
class NodeStats:
    """One node's figures."""

    node_id: str
    total_connections: int
    unique_users: int
    messages_sent: int
    uptime_s: float
    dropped: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Connection and delivery figures for the cluster, as one node saw them."""

    total_connections: int
    unique_users: int
    messages_sent: int
    queued: int
    dropped: int
    uptime_s: float
    node_id: str
    nodes: tuple[NodeStats, ...] = ()


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """Whether a user has live sessions."""

    user_id: str
    connected: bool
    connection_count: int


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``Inbox.list``, newest first; pass ``next_before_id`` for the next."""

    notifications: tuple[Notification, ...]
    has_more: bool

    @property
    def next_before_id(self) -> int | None:
        """The cursor of the next page (``before_id``), or None on the last page."""
        if not self.has_more or not self.notifications:
            return None
        return self.notifications[-1].id


@dataclass(frozen=True, slots=True)
class MarkResult:
    """The answer to a mark seen / mark all read: how far it went and how many changed."""

    #: The id the mark went up to (the newest one when the call said 0 / None).
    up_to_id: int
    #: How many notifications changed (already seen / read ones are not counted).
    changed: int


@dataclass(frozen=True, slots=True)
class TypeCounts:
    """Unread and unseen notifications of one type."""

    unread: int = 0
    unseen: int = 0


@dataclass(frozen=True, slots=True)
class Counts:
    """The badge figures: archived and expired ones never count; muted types count only
    in ``by_type`` (unless a notification was sent with ``ignore_mutes``)."""

    unread: int = 0
    unseen: int = 0
    #: Every type with a nonzero unread or unseen count, muted ones included.
    by_type: Mapping[str, TypeCounts] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Preferences:
    """A user's stored preferences."""

    #: Types whose notifications are stored but not pushed, replayed or counted.
    muted_types: tuple[str, ...] = ()
