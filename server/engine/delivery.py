"""Queue marks: rows that left an offline queue because a session got them, and rows
that must enter one because a live delivery failed.

Marking is off the hot path: ids collect in sets and reach the store in one write
per ``interval``. A "delivered" mark that never reaches the store (a crash, a lost
database) costs a duplicate on the next connect; a "failed" one is what a client
resuming with ``since`` recovers from the inbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from server.engine.errors import StoreUnavailable

if TYPE_CHECKING:
    from server.store.base import Store

log = logging.getLogger(__name__)


class DeliveryLog:
    """Batches queue marks into few store writes."""

    def __init__(self, store: Store, *, interval: float = 0.05, retry_after: float = 1.0) -> None:
        self._store = store
        self._interval = interval
        self._retry_after = retry_after
        self._delivered: set[int] = set()
        self._failed: set[int] = set()
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()

    def delivered(self, notification_id: int) -> None:
        """A session's transport wrote this queued row: take it out of the queue."""
        self._delivered.add(notification_id)
        self._wakeup.set()

    def failed(self, notification_ids: Iterable[int]) -> None:
        """These unqueued rows never reached a session: queue them."""
        self._failed.update(notification_ids)
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._delivered) + len(self._failed)

    async def flush(self) -> None:
        """Write every mark recorded so far; on failure they stay pending and this raises."""
        async with self._lock:
            delivered, self._delivered = self._delivered, set()
            failed, self._failed = self._failed - delivered, set()
            try:
                if failed:
                    await self._store.requeue(failed)
                    failed = set()
                if delivered:
                    await self._store.dequeue(delivered)
            except BaseException:
                self._delivered |= delivered
                self._failed |= failed
                raise

    async def run(self) -> None:
        """Flush in the background until cancelled."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(self._interval)  # let marks gather into one write
            try:
                await self.flush()
            except Exception as exc:
                if not isinstance(exc, StoreUnavailable):  # the store's health reports those
                    log.warning("could not record queue marks; retrying", exc_info=True)
                self._wakeup.set()
                await asyncio.sleep(self._retry_after)
