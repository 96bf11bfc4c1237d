"""The broker: a fan-out channel between the nodes of one cluster.

A broker carries small opaque payloads to every node (the sender included) and
reconnects by itself. It guarantees nothing beyond best effort while connected,
and says when it (re)connects so that the cluster can catch up from the store,
which stays the source of truth. Implementations: in-process memory (tests),
PostgreSQL LISTEN/NOTIFY, Redis pub/sub.
"""

from __future__ import annotations

from typing import Protocol


class BrokerUnavailable(Exception):
    """The broker is not connected right now; the payload was not sent."""


class BrokerListener(Protocol):
    """What a broker tells the cluster."""

    def on_message(self, payload: bytes) -> None:
        """A payload published by any node, this one included."""
        ...

    def on_connected(self) -> None:
        """The broker (re)connected: messages may have been missed meanwhile."""
        ...


class Broker(Protocol):
    """One cluster-wide channel."""

    #: The largest payload ``publish`` accepts, in bytes.
    max_payload: int

    async def start(self, listener: BrokerListener) -> None:
        """Begin connecting (and reconnecting) in the background."""
        ...

    async def publish(self, payload: bytes) -> None:
        """Send to every node; ``BrokerUnavailable`` while disconnected."""
        ...

    async def close(self) -> None: ...
