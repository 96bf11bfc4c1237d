"""An in-process broker: nodes in one process share a named bus (for tests)."""

from __future__ import annotations

import asyncio

from server.broker.base import BrokerListener, BrokerUnavailable

_BUSES: dict[str, list[MemoryBroker]] = {}


class MemoryBroker:
    """Delivers each payload to every broker on the same bus, on the next loop turn."""

    max_payload = 1 << 20

    def __init__(self, bus: str = "default") -> None:
        self._bus = bus
        self._listener: BrokerListener | None = None
        self.connected = False

    async def start(self, listener: BrokerListener) -> None:
        self._listener = listener
        _BUSES.setdefault(self._bus, []).append(self)
        self.connected = True
        listener.on_connected()

    async def publish(self, payload: bytes) -> None:
        if not self.connected:
            raise BrokerUnavailable("memory broker is disconnected")
        loop = asyncio.get_running_loop()
        for peer in list(_BUSES.get(self._bus, ())):
            if peer.connected and peer._listener is not None:
                loop.call_soon(peer._listener.on_message, payload)

    def cut(self) -> None:
        """Simulate a lost connection (tests)."""
        self.connected = False

    def restore(self) -> None:
        """Simulate a reconnection (tests)."""
        self.connected = True
        if self._listener is not None:
            self._listener.on_connected()

    async def close(self) -> None:
        self.connected = False
        peers = _BUSES.get(self._bus, [])
        if self in peers:
            peers.remove(self)
