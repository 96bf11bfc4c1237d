"""The bridge's Prometheus metrics, in the default registry (served at ``/metrics``).

Module-level by necessity: a collector can be registered once per registry, and in
role ``all`` the engine's metrics share the same registry.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

from server.tally import LatencyTally, Tally

WS_CONNECTIONS: Final = Gauge(
    "tidings_bridge_ws_connections", "Live browser WebSocket connections on this bridge."
)
# Updated per frame: tallies, not locked prometheus-client metrics (see server.tally).
WS_MESSAGES_SENT: Final = Tally(
    "tidings_bridge_ws_messages_sent", "WebSocket frames written to browsers, by type.", "type"
)
WS_CLOSES: Final = Counter(
    "tidings_bridge_ws_closes",
    "WebSocket connections closed by the bridge, by close code.",
    ["code"],
)
ERRORS: Final = Counter(
    "tidings_bridge_errors",
    "Errors answered to clients, by transport (ws, http) and error code.",
    ["transport", "code"],
)
DELIVERY_LATENCY: Final = LatencyTally(
    "tidings_bridge_delivery_latency_seconds",
    "Notification age (now - created_at) when the bridge writes it to a browser.",
    (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
)


def sent(kind: str) -> None:
    """Count one frame of ``kind`` written to a browser."""
    WS_MESSAGES_SENT.inc(kind)


def error(transport: str, code: str) -> None:
    """Count one error answered to a client."""
    ERRORS.labels(transport, code).inc()
