"""Tidings for Python applications: a resuming ``Subscriber`` and a ``Publisher``.

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
from tidings.client.models import (
    ConnectionInfo,
    ConnectionStatus,
    CreateResult,
    NewNotification,
    NodeStats,
    Notification,
    Priority,
    Stats,
    Subscription,
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
    "CreateResult",
    "DisconnectReason",
    "Disconnected",
    "InvalidArgumentError",
    "NewNotification",
    "NodeStats",
    "NotFoundError",
    "Notification",
    "PermissionDeniedError",
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
    "UnavailableError",
    "full_jitter",
]
