"""What flows through a session: client commands in, server events out (docs/PROTOCOL.md §5).

Events are plain frozen values. Transports turn them into proto messages or JSON
frames; nothing here knows either format.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import TypeVar, cast

from server.engine.filters import TypeFilter
from server.engine.models import Counts, Notification

T = TypeVar("T")


class Envelope:
    """A notification on its way to sessions, shared by every session it reaches.

    Transports encode it once per fan-out with ``encoded``: the first session to be
    written pays for the encoding, every other session reuses the result.
    """

    __slots__ = ("_encoded", "_encoder", "_value", "batch", "born", "notification", "queued")

    def __init__(
        self,
        notification: Notification,
        *,
        queued: bool = True,
        born: float | None = None,
        batch: dict[object, object] | None = None,
    ) -> None:
        self.notification = notification
        #: ``created_at`` as a POSIX timestamp (a fan-out passes it once for all its rows).
        self.born = notification.created_at.timestamp() if born is None else born
        #: Whether the row sits in its user's offline queue (then a delivery must take it
        #: out; otherwise a failed delivery must put it in).
        self.queued = queued
        #: A memo shared by the envelopes of one commit (or one read from the store), for
        #: what encoders can reuse between its rows: a broadcast commits one row per
        #: recipient, all of one content. It lives as long as those envelopes do.
        self.batch = batch
        # Most envelopes meet one encoder: its result in two slots, a dict for the others.
        self._encoder: object = None
        self._value: object = None
        self._encoded: dict[object, object] | None = None

    def age(self) -> float:
        """Seconds since the notification was created (wall clock; for latency metrics)."""
        return time.time() - self.born

    def encoded(self, encoder: Callable[[Envelope], T]) -> T:
        """``encoder(self)``, computed once per envelope per encoder."""
        if self._encoder is encoder:
            return cast(T, self._value)
        if self._encoder is None:
            value = encoder(self)
            self._encoder, self._value = encoder, value
            return value
        cache = self._encoded
        if cache is None:
            cache = self._encoded = {}
        elif encoder in cache:
            return cast(T, cache[encoder])
        value = cache[encoder] = encoder(self)
        return value


# --- client → server ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    """Asks for a ``Pong``."""


@dataclass(frozen=True, slots=True)
class MarkRead:
    """Marks one of the user's notifications read."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Adds types to the session's filter."""

    notification_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Removes types from the session's filter."""

    notification_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Expiry:
    """When a session's token expires, and when it was issued (POSIX seconds)."""

    expires_at: float
    issued_at: float | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    """A fresh token for the session, as the transport's authenticator read it: whose
    it is and its ``expiry`` (None: it never expires, insecure mode), or ``error``
    (non-empty) when it did not verify."""

    user_id: str = ""
    expiry: Expiry | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A message of a kind the engine does not know."""

    kind: str = ""


@dataclass(frozen=True, slots=True)
class MarkSeen:
    """Marks the user's notifications seen up to an id (None or 0: the newest)."""

    up_to_id: int | None = None


@dataclass(frozen=True, slots=True)
class MarkAllRead:
    """Marks every unread notification of the user read, optionally of one type, up to an
    id (None or 0: the newest)."""

    notification_type: str | None = None
    up_to_id: int | None = None


@dataclass(frozen=True, slots=True)
class Archive:
    """Archives one of the user's notifications."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class Unarchive:
    """Takes one of the user's notifications out of the archive."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class Delete:
    """Deletes one of the user's notifications for good."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class GetCounts:
    """Asks for a ``CountsEvent`` (this session only)."""


@dataclass(frozen=True, slots=True)
class UpdatePreferences:
    """Replaces the user's muted types."""

    muted_types: tuple[str, ...]


Command = (
    Ping
    | MarkRead
    | Subscribe
    | Unsubscribe
    | Refresh
    | MarkSeen
    | MarkAllRead
    | Archive
    | Unarchive
    | Delete
    | GetCounts
    | UpdatePreferences
    | UnknownCommand
)


# --- server → client ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionEstablished:
    """The first event of every session."""

    user_id: str
    connection_id: str
    heartbeat_interval: float
    queued: int
    truncated: bool
    server_time: datetime


class Delivery:
    """A notification, replayed or live.

    A value like the others, but not a frozen dataclass: one is made per delivery, and
    a frozen dataclass's ``__init__`` (``object.__setattr__`` per field) costs twice
    as much as this one.
    """

    __slots__ = ("envelope", "size")
    __match_args__ = ("envelope",)

    def __init__(self, envelope: Envelope, size: int = 0) -> None:
        self.envelope = envelope
        #: The session's estimate of its encoded size, once it computed it (else 0).
        self.size = size

    @property
    def notification(self) -> Notification:
        return self.envelope.notification

    def __eq__(self, other: object) -> bool:
        return type(other) is Delivery and other.envelope is self.envelope

    def __hash__(self) -> int:
        return hash(self.envelope)

    def __repr__(self) -> str:
        return f"Delivery(envelope={self.envelope!r})"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Sent every heartbeat interval."""

    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to ``Ping``."""

    timestamp: datetime


@dataclass(frozen=True, slots=True)
class MarkedRead:
    """One of the user's notifications was marked read."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class NotificationsSeen:
    """The user's notifications up to ``up_to_id`` were marked seen."""

    up_to_id: int


@dataclass(frozen=True, slots=True)
class NotificationsMarkedRead:
    """The user's unread notifications up to ``up_to_id`` (of ``notification_type``, or
    of every type when None) were marked read."""

    up_to_id: int
    notification_type: str | None = None


@dataclass(frozen=True, slots=True)
class NotificationArchived:
    """One of the user's notifications was archived."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class NotificationUnarchived:
    """One of the user's notifications was taken out of the archive."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class NotificationDeleted:
    """One of the user's notifications was deleted."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class CountsEvent:
    """The answer to ``GetCounts``."""

    counts: Counts


@dataclass(frozen=True, slots=True)
class PreferencesUpdated:
    """The user's muted types are now ``muted_types`` (sorted, unique)."""

    muted_types: tuple[str, ...]


#: What changes a user's inbox and is told to all the user's sessions, on every node.
InboxEvent = (
    NotificationsSeen
    | NotificationsMarkedRead
    | NotificationArchived
    | NotificationUnarchived
    | NotificationDeleted
    | PreferencesUpdated
)


@dataclass(frozen=True, slots=True)
class SubscriptionUpdated:
    """The session's filter after a subscribe or unsubscribe."""

    type_filter: TypeFilter


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A client message could not be honoured; the session goes on."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class TokenExpiring:
    """The session's token expires at ``expires_at``: refresh it, or the session ends."""

    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenRefreshed:
    """A ``Refresh`` was accepted; the session now ends at ``expires_at`` (None: never)."""

    expires_at: datetime | None


class CloseReason(Enum):
    """Why the engine ended a session. Transports map each to a close code or status."""

    SLOW = "slow"  # the client did not keep up (WS 1013, gRPC RESOURCE_EXHAUSTED)
    DISCONNECTED = "disconnected"  # an operator closed it (WS 4001, gRPC ABORTED)
    SHUTDOWN = "shutdown"  # the server is stopping (WS 1001, gRPC UNAVAILABLE)
    CLIENT_GONE = "client_gone"  # the transport went away; nobody to tell
    TOKEN_EXPIRED = "token_expired"  # not refreshed in time (WS 4003, gRPC UNAUTHENTICATED)
    UNAUTHORIZED = "unauthorized"  # refreshed as another user (WS 1008, gRPC UNAUTHENTICATED)


@dataclass(frozen=True, slots=True)
class Closed:
    """The last event of a session."""

    reason: CloseReason
    message: str = field(default="")


Event = (
    ConnectionEstablished
    | Delivery
    | Heartbeat
    | Pong
    | MarkedRead
    | NotificationsSeen
    | NotificationsMarkedRead
    | NotificationArchived
    | NotificationUnarchived
    | NotificationDeleted
    | CountsEvent
    | PreferencesUpdated
    | SubscriptionUpdated
    | ErrorEvent
    | TokenExpiring
    | TokenRefreshed
    | Closed
)
