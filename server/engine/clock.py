"""Time as a service, so that rules about time can be tested with a fake clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall time for timestamps, monotonic time for intervals."""

    def now(self) -> datetime:
        """The current UTC time, truncated to milliseconds."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes back."""
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
