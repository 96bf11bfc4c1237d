"""Connection-state events of a Subscriber, handed to its ``on_state`` callback.

A Subscriber goes through: ``Connecting`` → ``Connected`` → … → ``Disconnected`` →
``Reconnecting`` (with the delay it will wait) → ``Connecting`` → … and ends with a
final ``Disconnected`` whose ``will_reconnect`` is False.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import grpc

from tidings.client.models import ConnectionInfo


class ConnectionState(StrEnum):
    """Where a Subscriber is now."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # waiting out a backoff delay
    CLOSED = "closed"  # for good: closed by the application, or failed


class DisconnectReason(StrEnum):
    """Why a live session (or an attempt at one) ended."""

    CONNECT_FAILED = "connect_failed"  # the server could not be reached
    CONNECT_TIMEOUT = "connect_timeout"  # no greeting within connect_timeout
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"  # silence for 2 × heartbeat_interval: dead connection
    UNAVAILABLE = "unavailable"  # the live stream broke: server shutdown, crash or network
    ABORTED = "aborted"  # an operator disconnected the user: wait before reconnecting
    SLOW = "slow"  # RESOURCE_EXHAUSTED: the client did not keep up
    STREAM_ENDED = "stream_ended"  # the server ended the stream without an error
    BUFFER_FULL = "buffer_full"  # the application fell behind: resume once it catches up
    AUTH_FAILED = "auth_failed"  # UNAUTHENTICATED / PERMISSION_DENIED: no reconnect
    TOKEN_EXPIRED = "token_expired"  # not refreshed in time: reconnect with a fresh token
    ERROR = "error"  # any other status
    CLOSED = "closed"  # the application closed the Subscriber


@dataclass(frozen=True, slots=True)
class Connecting:
    """A connection attempt starts (``attempt`` 0 is the first after a success or the start)."""

    target: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Connected:
    """The server greeted the session; replayed notifications follow."""

    info: ConnectionInfo
    target: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A session or an attempt ended."""

    reason: DisconnectReason
    detail: str = ""
    status: grpc.StatusCode | None = None
    will_reconnect: bool = True


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The Subscriber waits ``delay`` seconds before attempt number ``attempt``."""

    delay: float
    attempt: int


StateEvent = Connecting | Connected | Disconnected | Reconnecting

#: Called synchronously on the event loop for every state event; must not block.
StateListener = Callable[[StateEvent], None]
