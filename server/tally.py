"""Counters and histograms cheap enough to update for every message.

prometheus-client's ``Counter.inc`` and ``Histogram.observe`` take a lock per call,
for threads the event loop does not have: many times the cost of a dict update, paid
per message (docs/BENCHMARKS.md, "Small costs"). A tally is a dict of numbers updated in place (or
bucket counts and a bisect); prometheus-client still does the exposition, through a
collector that reads the tally at scrape time. Update tallies from the event loop's
thread only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric


class Tally:
    """A counter with one label: ``tally.inc(value)``."""

    #: Called before every collection: counts held back elsewhere are added first.
    settle: Callable[[], None] | None = None

    def __init__(
        self, name: str, documentation: str, label: str, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._label = label
        self.counts: dict[str, float] = {}
        registry.register(self)

    def inc(self, value: str, amount: float = 1) -> None:
        counts = self.counts
        counts[value] = counts.get(value, 0) + amount

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, labels=[self._label])

    def collect(self) -> Iterator[Metric]:
        if self.settle is not None:
            self.settle()
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in sorted(self.counts.items()):
            family.add_metric([value], count)
        yield family


class LatencyTally:
    """A histogram without labels: ``tally.observe(seconds)``."""

    #: Called before every collection: observations held back elsewhere are added first.
    settle: Callable[[], None] | None = None

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = sorted(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last: above every bound
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def observe_ages(self, now: float, created: Iterable[float]) -> None:
        """``observe(max(now - at, 0))`` for each of ``created``, one bucket search per
        run of equal times (a broadcast's recipients share their creation time)."""
        bounds, counts = self._bounds, self._counts
        last: float | None = None
        age, index, total = 0.0, 0, 0.0
        for at in created:
            if at != last:
                last = at
                age = now - at
                if age < 0.0:
                    age = 0.0
                index = bisect_left(bounds, age)
            counts[index] += 1
            total += age
        self._sum += total

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[Metric]:
        if self.settle is not None:
            self.settle()
        cumulative: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(self._bounds, self._counts, strict=False):
            total += count
            cumulative.append((_float(bound), total))
        total += self._counts[-1]
        cumulative.append(("+Inf", total))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=cumulative, sum_value=self._sum
        )


def _float(bound: float) -> str:
    """A bucket bound as prometheus-client writes it (``0.005``, ``1.0``)."""
    return repr(float(bound))
