"""Delivery marks: which notifications left the offline queue because a session got them.

Marking is off the hot path: ids collect in a set and reach the store in one write
per ``interval``. A mark that never reaches the store (a crash, a lost database)
costs a duplicate on the next connect, never a lost notification.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.store.base import Store

log = logging.getLogger(__name__)


class DeliveryLog:
    """Batches "delivered" marks into few store writes."""

    def __init__(self, store: Store, *, interval: float = 0.05, retry_after: float = 1.0) -> None:
        self._store = store
        self._interval = interval
        self._retry_after = retry_after
        self._pending: set[int] = set()
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()

    def record(self, notification_id: int) -> None:
        self._pending.add(notification_id)
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Write every mark recorded so far; on failure they stay pending and this raises."""
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, set()
            try:
                await self._store.dequeue(batch)
            except BaseException:
                self._pending |= batch
                raise

    async def run(self) -> None:
        """Flush in the background until cancelled."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(self._interval)  # let marks gather into one write
            try:
                await self.flush()
            except Exception:
                log.warning("could not record deliveries; retrying", exc_info=True)
                self._wakeup.set()
                await asyncio.sleep(self._retry_after)
