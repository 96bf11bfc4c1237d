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
        self._since = clock()
        #: Calls answered so far (before the first, start-up reports failures itself).
        self.answers = 0
        #: Times the store went down; a call that began before the latest outage cannot
        #: end it (it may have been answered just before the failure).
        self.outages = 0
        self._last_report: float | None = None
        self._reported = False
        self._unreported = 0
        self._changed = asyncio.Event()

    @property
    def available(self) -> bool:
        return self._available

    def failed(self, reason: str) -> None:
        """A call found no database (``reason`` says why)."""
        if not self._available and self._reported:
            return
        now = self._clock()
        if self._available:
            self._available, self._since, self._reported = False, now, False
            self.outages += 1
            self._unreported += self.answers > 0
            self._flip()
        # Reported at once, unless the last report is recent: then when it is not (a
        # failing call or probe comes by at least every probe interval while down).
        quiet = self._last_report is not None and now - self._last_report < self._quiet
        if self.answers == 0 or quiet:
            log.debug("store unavailable: %s", reason)
            return
        self._reported, self._last_report = True, now
        others, self._unreported = self._unreported - 1, 0
        flaps = f" ({others} short outages since the last report)" if others else ""
        log.warning("store unavailable: %s%s", reason, flaps)

    def succeeded(self, began: int | None = None) -> None:
        """A call was answered; ``began`` is ``outages`` when it started."""
        self.answers += 1
        if self._available or (began is not None and began < self.outages):
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
