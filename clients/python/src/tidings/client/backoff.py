"""Reconnect and retry delays: exponential backoff with full jitter.

``delay(n) = U(0, min(cap, base · 2ⁿ))`` for the n-th consecutive failed attempt
(n = 0, 1, 2, …). Full jitter spreads a crowd of clients that lost the same server
over the whole window, so they do not return in lockstep. The computation is pure:
the random source is injected, so tests assert on the delays themselves rather than
on the wall clock.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

#: A source of uniform floats in [0, 1), such as ``random.Random(seed).random``.
RandomSource = Callable[[], float]


def full_jitter(attempt: int, *, base: float, cap: float, sample: float) -> float:
    """The delay before retry number ``attempt`` (0-based), given a uniform ``sample``."""
    # base · 2ⁿ overflows a float long after it passes any sane cap: stop doubling early.
    ceiling = cap if attempt >= 64 else min(cap, base * (2.0**attempt))
    return sample * ceiling


class BackoffPolicy(Protocol):
    """What the Subscriber and Publisher ask of a backoff strategy."""

    #: How many consecutive failed attempts to allow before giving up; ``None``: forever.
    @property
    def max_attempts(self) -> int | None: ...

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        ...

    def delay_after_abort(self, attempt: int) -> float:
        """Seconds to wait after an operator disconnect (gRPC ABORTED, WebSocket 4001)."""
        ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, a cap, and an optional attempt limit."""

    base: float = 0.5
    cap: float = 30.0
    max_attempts: int | None = None
    #: The least wait after an operator disconnect: reconnecting at once would defeat it.
    after_abort: float = 15.0
    random: RandomSource = field(default=_random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("need 0 < base <= cap")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None for no limit)")
        if self.after_abort < 0:
            raise ValueError("after_abort must not be negative")

    def delay(self, attempt: int) -> float:
        return full_jitter(attempt, base=self.base, cap=self.cap, sample=self.random())

    def delay_after_abort(self, attempt: int) -> float:
        return self.after_abort + self.delay(attempt)

    def schedule(self, attempts: int) -> list[float]:
        """The first ``attempts`` delays (draws from the random source, like real retries)."""
        return [self.delay(n) for n in range(attempts)]
