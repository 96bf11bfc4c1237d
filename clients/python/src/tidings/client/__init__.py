"""Tidings for Python applications: a resuming ``Subscriber``, an ``Inbox`` and a ``Publisher``.

::

    from tidings.client import Publisher, Subscriber

    async with Subscriber("127.0.0.1:50051", token=jwt) as sub:
        async for notification in sub:
            ...

See clients/python/README.md for the tour and docs/CLIENTS.md for the rules every
Tidings client follows.
"""

from tidings.client.backoff import Backoff, BackoffPolicy, RandomSource, full_jitter
from tidings.client.channel import DEFAULT_TARGET, Target, TokenSource
from tidings.client.errors import (
    AuthenticationError,
    AuthError,
    ClosedError,
    CommandError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ReconnectGaveUp,
    RpcError,
    TidingsError,
    UnavailableError,
)
from tidings.client.events import (
    InboxEvent,
    InboxListener,
    NotificationArchived,
    NotificationDeleted,
    NotificationMarkedRead,
    NotificationsMarkedRead,
    NotificationsSeen,
    NotificationUnarchived,
    PreferencesUpdated,
)
from tidings.client.inbox import Inbox
from tidings.client.models import (
    ConnectionInfo,
    ConnectionStatus,
    Counts,
    CreateResult,
    MarkResult,
    NewNotification,
    NodeStats,
    Notification,
    Page,
    Preferences,
    Priority,
    Stats,
    Subscription,
    TypeCounts,
)
from tidings.client.publisher import Publisher
from tidings.client.states import (
    Connected,
    Connecting,
    ConnectionState,
    Disconnected,
    DisconnectReason,
    Reconnecting,
    StateEvent,
    StateListener,
)
from tidings.client.subscriber import Subscriber, TokenProvider

__all__ = [
    "DEFAULT_TARGET",
    "AuthError",
    "AuthenticationError",
    "Backoff",
    "BackoffPolicy",
    "ClosedError",
    "CommandError",
    "Connected",
    "Connecting",
    "ConnectionInfo",
    "ConnectionState",
    "ConnectionStatus",
    "Counts",
    "CreateResult",
    "DisconnectReason",
    "Disconnected",
    "Inbox",
    "InboxEvent",
    "InboxListener",
    "InvalidArgumentError",
    "MarkResult",
    "NewNotification",
    "NodeStats",
    "NotFoundError",
    "Notification",
    "NotificationArchived",
    "NotificationDeleted",
    "NotificationMarkedRead",
    "NotificationUnarchived",
    "NotificationsMarkedRead",
    "NotificationsSeen",
    "Page",
    "PermissionDeniedError",
    "Preferences",
    "PreferencesUpdated",
    "Priority",
    "Publisher",
    "RandomSource",
    "ReconnectGaveUp",
    "Reconnecting",
    "RpcError",
    "StateEvent",
    "StateListener",
    "Stats",
    "Subscriber",
    "Subscription",
    "Target",
    "TidingsError",
    "TokenProvider",
    "TokenSource",
    "TypeCounts",
    "UnavailableError",
    "full_jitter",
]
