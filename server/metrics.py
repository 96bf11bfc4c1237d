"""Prometheus metrics of the engine (the bridge adds its own to the same registry)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from server.engine.events import CloseReason
from server.engine.models import Notification

#: Distinct notification types given their own label; the rest count as ``other``.
MAX_TYPE_LABELS = 200
OTHER = "other"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class PrometheusObserver:
    """An engine ``Observer`` that keeps Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.sessions = Gauge(
            "tidings_engine_sessions",
            "Live sessions on this node (all transports).",
            registry=registry,
        )
        self.sessions_closed = Counter(
            "tidings_engine_sessions_closed",
            "Sessions ended, by reason.",
            ["reason"],
            registry=registry,
        )
        self.created_total = Counter(
            "tidings_engine_notifications_created",
            "Notifications committed, by type.",
            ["type"],
            registry=registry,
        )
        self.written_total = Counter(
            "tidings_engine_notifications_written",
            "Notification messages written to sessions, by type.",
            ["type"],
            registry=registry,
        )
        self.dropped_total = Counter(
            "tidings_engine_queue_dropped",
            "Notifications dropped from offline queues by the cap.",
            registry=registry,
        )
        self._types: set[str] = set()
        self._written: dict[str, Counter] = {}  # children by type: labels() is slow per call
        self.latency = Histogram(
            "tidings_engine_delivery_latency_seconds",
            "From creation to the session's transport writing it.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def session_opened(self) -> None:
        self.sessions.inc()

    def session_closed(self, reason: CloseReason) -> None:
        self.sessions.dec()
        self.sessions_closed.labels(reason.value).inc()

    def created(self, notifications: Sequence[Notification]) -> None:
        by_type: dict[str, int] = {}
        for n in notifications:
            by_type[n.type] = by_type.get(n.type, 0) + 1
        for type_, count in by_type.items():
            self.created_total.labels(self._label(type_)).inc(count)

    def written(self, notification: Notification, latency_s: float) -> None:
        counter = self._written.get(notification.type)
        if counter is None:
            label = self._label(notification.type)
            counter = self._written[notification.type] = self.written_total.labels(label)
        counter.inc()
        self.latency.observe(max(0.0, latency_s))

    def _label(self, notification_type: str) -> str:
        """The type as a label value; past ``MAX_TYPE_LABELS`` types, ``other``."""
        if notification_type in self._types or len(self._types) < MAX_TYPE_LABELS:
            self._types.add(notification_type)
            return notification_type
        return OTHER

    def dropped(self, count: int) -> None:
        self.dropped_total.inc(count)
