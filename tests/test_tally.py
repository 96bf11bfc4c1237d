"""Tallies expose exactly what prometheus-client's own metrics would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from server.tally import LatencyTally, Tally

BUCKETS = (0.001, 0.01, 0.1, 1.0)
VALUES = (0.0, 0.0005, 0.001, 0.002, 0.05, 0.1, 3.0)


def test_latency_tally_matches_a_histogram() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tally = LatencyTally("t_latency_seconds", "doc", BUCKETS, registry=ours)
    histogram = Histogram("t_latency_seconds", "doc", buckets=BUCKETS, registry=theirs)
    for value in VALUES:
        tally.observe(value)
        histogram.observe(value)
    expected = [
        line for line in generate_latest(theirs).decode().splitlines() if "_created" not in line
    ]
    assert generate_latest(ours).decode().splitlines() == expected


def test_tally_matches_a_labelled_counter() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tally = Tally("t_frames", "doc", "type", registry=ours)
    counter = Counter("t_frames", "doc", ["type"], registry=theirs)
    for kind in ("pong", "notification", "notification"):
        tally.inc(kind)
        counter.labels(kind).inc()
    tally.inc("notification", 5)
    counter.labels("notification").inc(5)
    expected = [
        line for line in generate_latest(theirs).decode().splitlines() if "_created" not in line
    ]
    assert sorted(generate_latest(ours).decode().splitlines()) == sorted(expected)


def test_ages_observed_together_are_observed_as_each_alone() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    together = LatencyTally("t_latency_seconds", "doc", BUCKETS, registry=ours)
    alone = LatencyTally("t_latency_seconds", "doc", BUCKETS, registry=theirs)
    now = 1000.0
    created = [now - 0.002] * 3 + [now - 0.05, now + 1.0, now - 0.002, now - 3.0, now - 3.0]
    together.observe_ages(now, created)
    for at in created:
        alone.observe(max(now - at, 0.0))
    assert generate_latest(ours) == generate_latest(theirs)


def test_a_tally_settles_what_is_held_elsewhere_before_every_collection() -> None:
    registry = CollectorRegistry()
    counter = Tally("t_frames", "doc", "type", registry=registry)
    latency = LatencyTally("t_latency_seconds", "doc", BUCKETS, registry=registry)
    held: list[float] = []

    def settle() -> None:
        for value in held:
            counter.inc("notification")
            latency.observe(value)
        held.clear()

    counter.settle = latency.settle = settle
    held += [0.002, 0.2]
    assert registry.get_sample_value("t_frames_total", {"type": "notification"}) == 2
    assert registry.get_sample_value("t_latency_seconds_count") == 2
    held.append(0.002)
    assert registry.get_sample_value("t_latency_seconds_count") == 3
    assert registry.get_sample_value("t_frames_total", {"type": "notification"}) == 3
