"""Prometheus metrics of the engine (the bridge adds its own to the same registry)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from server.engine.events import CloseReason
from server.engine.models import Notification
from server.tally import LatencyTally, Tally

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
        # Updated per notification: tallies, not locked prometheus-client metrics.
        self.created_total = Tally(
            "tidings_engine_notifications_created",
            "Notifications committed, by type.",
            "type",
            registry=registry,
        )
        self.written_total = Tally(
            "tidings_engine_notifications_written",
            "Notification messages written to sessions, by type.",
            "type",
            registry=registry,
        )
        self.dropped_total = Counter(
            "tidings_engine_queue_dropped",
            "Notifications dropped from offline queues by the cap.",
            registry=registry,
        )
        self._labels: dict[str, str] = {}  # type -> its label value
        self.latency = LatencyTally(
            "tidings_engine_delivery_latency_seconds",
            "From creation to the session's transport writing it.",
            LATENCY_BUCKETS,
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
            self.created_total.inc(self._label(type_), count)

    def written(self, notification: Notification, latency_s: float) -> None:
        # Once per delivery: the tallies updated in place, without a call each.
        label = self._labels.get(notification.type) or self._label(notification.type)
        counts = self.written_total.counts
        counts[label] = counts.get(label, 0) + 1
        self.latency.observe(latency_s if latency_s > 0.0 else 0.0)

    def _label(self, notification_type: str) -> str:
        """The type as a label value; past ``MAX_TYPE_LABELS`` types, ``other``."""
        label = self._labels.get(notification_type)
        if label is None:
            label = notification_type if len(self._labels) < MAX_TYPE_LABELS else OTHER
            if label != OTHER:
                self._labels[notification_type] = label
        return label

    def dropped(self, count: int) -> None:
        self.dropped_total.inc(count)
