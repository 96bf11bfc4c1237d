"""The bridge's Prometheus metrics: one ``BridgeMetrics`` per app, kept on its state.

The runner registers them in the process's default registry, next to the engine's in
role ``all``; an app made without one (tests, embedding) gets a registry of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from server.tally import LatencyTally, Tally

DELIVERY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    60,
)


class BridgeMetrics:
    """What the bridge counts, registered in ``registry`` (served at ``/metrics``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.ws_connections = Gauge(
            "tidings_bridge_ws_connections",
            "Live browser WebSocket connections on this bridge.",
            registry=registry,
        )
        # Updated per frame: tallies, not locked prometheus-client metrics (see server.tally).
        self.ws_messages_sent = Tally(
            "tidings_bridge_ws_messages_sent",
            "WebSocket frames written to browsers, by type.",
            "type",
            registry=registry,
        )
        self.ws_closes = Counter(
            "tidings_bridge_ws_closes",
            "WebSocket connections closed by the bridge, by close code.",
            ["code"],
            registry=registry,
        )
        self.errors = Counter(
            "tidings_bridge_errors",
            "Errors answered to clients, by transport (ws, http) and error code.",
            ["transport", "code"],
            registry=registry,
        )
        self.delivery_latency = LatencyTally(
            "tidings_bridge_delivery_latency_seconds",
            "Notification age (now - created_at) when the bridge writes it to a browser.",
            DELIVERY_BUCKETS,
            registry=registry,
        )
        # Notifications written by the relay's direct writes and not yet counted
        # (``delivered_soon``): their creation times, and the time of the first write.
        self._held: list[float] = []
        self._held_since = 0.0
        self.ws_messages_sent.settle = self.delivery_latency.settle = self.settle

    def sent(self, kind: str) -> None:
        """Count one frame of ``kind`` written to a browser."""
        self.ws_messages_sent.inc(kind)

    def delivered(self, created: Sequence[float]) -> None:
        """Count notifications written to a browser, given their ``created_at`` (epoch
        seconds): one frame each, and each one's age into the latency histogram."""
        observe = self.delivery_latency.observe
        now = time.time()
        for at in created:
            age = now - at
            observe(age if age > 0.0 else 0.0)
        self.ws_messages_sent.inc("notification", len(created))

    def delivered_soon(self, created: Sequence[float]) -> None:
        """``delivered``, counted at the end of this turn of the loop (or before any
        collection, whichever is first) together with the others written meanwhile:
        the relay writes to many sockets in one turn, each a few notifications."""
        held = self._held
        if not held:
            self._held_since = time.time()
            asyncio.get_running_loop().call_soon(self.settle)
        held += created

    def settle(self) -> None:
        """Count what ``delivered_soon`` holds, ages as at its first write."""
        held = self._held
        if held:
            self._held = []
            self.delivery_latency.observe_ages(self._held_since, held)
            self.ws_messages_sent.inc("notification", len(held))

    def error(self, transport: str, code: str) -> None:
        """Count one error answered to a client."""
        self.errors.labels(transport, code).inc()

    def closed(self, code: int) -> None:
        """Count one WebSocket closed by the bridge with ``code``."""
        self.ws_closes.labels(str(code)).inc()
