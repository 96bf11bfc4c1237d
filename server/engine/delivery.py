"""Queue marks: rows that left an offline queue because a session got them, and rows
that must enter one again because a transport could not pass them on.

Every row is committed queued; marking is off the hot path: ids collect in sets and
reach the store in one write per ``interval``, or sooner inside the writer's next
create transaction (``taking``), so that the queue cap never counts a row a session
already took. A "delivered" mark that never reaches the store (a crash, a lost
database) costs a duplicate on the next connect, never a loss. The later mark of an
id wins: delivered then failed is queued again; failed then delivered is not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from server.engine.errors import StoreUnavailable

if TYPE_CHECKING:
    from server.engine.store import Store

log = logging.getLogger(__name__)


class DeliveryLog:
    """Batches queue marks into few store writes."""

    def __init__(self, store: Store, *, interval: float = 0.05, retry_after: float = 1.0) -> None:
        self._store = store
        self._interval = interval
        self._retry_after = retry_after
        self._delivered: set[int] = set()
        self._failed: set[int] = set()
        self._settled: list[Callable[[], None]] = []
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()

    def delivered(self, notification_id: int) -> None:
        """A session's transport wrote this queued row: take it out of the queue."""
        if self._failed:
            self._failed.discard(notification_id)
        self._delivered.add(notification_id)
        self._wakeup.set()

    def failed(self, notification_ids: Iterable[int]) -> None:
        """These rows never reached the client: (re)queue them."""
        ids = set(notification_ids)
        self._delivered -= ids
        self._failed |= ids
        self._wakeup.set()

    def when_recorded(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every mark made so far is in the store (now, if none is
        pending)."""
        if not self._delivered and not self._failed and not self._lock.locked():
            callback()
            return
        self._settled.append(callback)
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._delivered) + len(self._failed)

    @asynccontextmanager
    async def taking(self) -> AsyncIterator[set[int]]:
        """The pending "delivered" marks, for a store write of the caller's (one create
        transaction); they stay pending if the block raises."""
        async with self._lock:
            delivered, self._delivered = self._delivered, set()
            try:
                yield delivered
            except BaseException:
                self._delivered |= delivered - self._failed
                raise

    async def flush(self) -> None:
        """Write every mark recorded so far; on failure they stay pending and this raises."""
        async with self._lock:
            delivered, self._delivered = self._delivered, set()
            failed, self._failed = self._failed, set()
            settled, self._settled = self._settled, []
            try:
                if failed:
                    await self._store.requeue(failed)
                    failed = set()
                if delivered:
                    await self._store.dequeue(delivered)
            except BaseException:
                self._delivered |= delivered - self._failed
                self._failed |= failed - self._delivered
                self._settled[:0] = settled
                raise
        for callback in settled:
            callback()

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
