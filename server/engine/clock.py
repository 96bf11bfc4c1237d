"""Time as a service, so that rules about time can be tested with a fake clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol


class Cancellable(Protocol):
    """A scheduled call that can be called off."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall time for timestamps, monotonic time for intervals, and timers on that time."""

    def now(self) -> datetime:
        """The current UTC time, truncated to milliseconds."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes back."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Call ``callback`` once, ``delay`` seconds of ``monotonic`` time from now."""
        ...


def utc_ms(moment: datetime) -> datetime:
    """``moment`` in UTC with microseconds cut to whole milliseconds."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return utc_ms(datetime.now(UTC))

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """On the running event loop (whose clock is monotonic too)."""
        return asyncio.get_running_loop().call_later(delay, callback)
