"""A token bucket: ``rate`` messages per second on average, bursts up to ``burst``."""

from __future__ import annotations


class TokenBucket:
    """Call ``allow(now)`` once per message; ``now`` is monotonic seconds."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = now

    def allow(self, now: float) -> bool:
        """Whether one more message fits; takes a token when it does."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
