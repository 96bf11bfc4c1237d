"""Whether the store answers, as its calls find out: the state behind gRPC health and /healthz.

The state flips to *unavailable* on the first call that fails for want of a database
and back on the first that succeeds; when no call was answered for a while, the engine
probes the store, so that a hang or a recovery is noticed without traffic. Only
changes are logged, and at most one outage per ``quiet`` seconds: a database that
flaps cannot flood the log (the flaps in between are counted in the next report).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger("server.store")


class StoreHealth:
    """Available or not; ``changed`` wakes waiters on every flip."""

    def __init__(self, *, quiet: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._quiet = quiet
        self._clock = clock
        self._available = True
        #: Calls answered so far (before the first, start-up reports failures itself).
        self.answers = 0
        self._since = clock()
        self._last_report: float | None = None
        self._reported = False
        self._unreported = 0
        self._changed = asyncio.Event()

    @property
    def available(self) -> bool:
        return self._available

    def failed(self, reason: str) -> None:
        """A call found no database (``reason`` says why)."""
        if not self._available:
            return
        now = self._clock()
        self._available, self._since = False, now
        # Before the first answer, start-up reports the failure itself.
        quiet = self._last_report is not None and now - self._last_report < self._quiet
        self._reported = self.answers > 0 and not quiet
        if self._reported:
            self._last_report = now
            flaps = f" ({self._unreported} short outages since the last report)"
            log.warning("store unavailable: %s%s", reason, flaps if self._unreported else "")
            self._unreported = 0
        else:
            self._unreported += self.answers > 0
            log.debug("store unavailable: %s", reason)
        self._flip()

    def succeeded(self) -> None:
        """A call was answered."""
        self.answers += 1
        if self._available:
            return
        now = self._clock()
        self._available = True
        level = logging.INFO if self._reported else logging.DEBUG
        log.log(level, "store available again after %.1f s", now - self._since)
        self._since = now
        self._flip()

    async def changed(self) -> None:
        """Return at the next flip."""
        await self._changed.wait()

    def _flip(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
