"""The engine's Prometheus metrics."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from server import metrics
from server.engine.events import CloseReason
from server.engine.models import Notification, Priority


def note(type_: str) -> Notification:
    return Notification(1, "u", type_, "t", "", "{}", Priority.NORMAL, datetime.now(UTC))


def test_counts_sessions_notifications_and_latency() -> None:
    registry = CollectorRegistry()
    observer = metrics.PrometheusObserver(registry)
    observer.session_opened()
    observer.session_opened()
    observer.session_closed(CloseReason.SLOW)
    observer.created([note("a"), note("a"), note("b")])
    observer.written(note("a"), 0.002)
    observer.dropped(3)
    value = registry.get_sample_value
    assert value("tidings_engine_sessions") == 1
    assert value("tidings_engine_sessions_closed_total", {"reason": "slow"}) == 1
    assert value("tidings_engine_notifications_created_total", {"type": "a"}) == 2
    assert value("tidings_engine_notifications_written_total", {"type": "a"}) == 1
    assert value("tidings_engine_queue_dropped_total") == 3
    assert value("tidings_engine_delivery_latency_seconds_count") == 1
    assert value("tidings_engine_delivery_latency_seconds_bucket", {"le": "0.0025"}) == 1


def test_type_labels_are_bounded() -> None:
    registry = CollectorRegistry()
    observer = metrics.PrometheusObserver(registry)
    observer.created([note(f"t{i}") for i in range(metrics.MAX_TYPE_LABELS + 10)])
    value = registry.get_sample_value
    assert value("tidings_engine_notifications_created_total", {"type": metrics.OTHER}) == 10
