"""Fan-in: committed notifications reach this node's sessions in id order, once each.

Ids increase with commit order across every node sharing the store (see
``server.store.base``), so "everything up to id X" is a complete, ordered set once X
is known to be committed. The fan-in keeps a cursor (the last id offered to local
sessions) and moves it forward in two ways:

* Fast path: a batch this node just committed that starts right after the cursor is
  offered straight from memory (always the case on a lone node).
* Catch-up: otherwise — a peer committed something, the broker came back after an
  outage, a gap appeared — it reads the range (cursor, target] from the store and
  offers what belongs to local users.

Either way a session sees ids in increasing order, so it can drop repeats cheaply.

A large batch (a broadcast) is offered ``SLICE`` rows at a time, each slice in its own
turn of the event loop, so that a 10 000-recipient fan-out does not stall every other
session for its whole length. Later batches, and catch-up reads, wait their turn: the
order stays the id order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from server.engine.events import Envelope
from server.engine.hub import Hub
from server.engine.models import Notification

if TYPE_CHECKING:
    from server.store.base import Store

log = logging.getLogger(__name__)

#: Rows offered per turn of the event loop.
SLICE = 500

#: Told, once a batch was offered, which rows found no local session of their user.
Unseen = Callable[[list[Notification]], None]


class _Batch:
    __slots__ = ("born", "done", "moment", "notifications", "position", "queued")

    def __init__(
        self, notifications: Sequence[Notification], queued: Collection[int], done: Unseen
    ) -> None:
        self.notifications = notifications
        self.queued = queued
        self.done = done
        self.position = 0
        self.moment: datetime | None = None  # rows committed together share created_at
        self.born = 0.0


class FanIn:
    """Moves the delivery cursor; ``run`` performs catch-up reads in the background."""

    def __init__(
        self,
        store: Store,
        hub: Hub,
        *,
        clustered: bool,
        batch: int = 2000,
        retry_after: float = 0.5,
    ) -> None:
        self._store = store
        self._hub = hub
        self._clustered = clustered
        self._batch = batch
        self._retry_after = retry_after
        self._cursor = 0
        self._target = 0
        self._wakeup = asyncio.Event()
        self._batches: deque[_Batch] = deque()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def cursor(self) -> int:
        return self._cursor

    def start_at(self, last_id: int) -> None:
        """Everything up to ``last_id`` predates this node: sessions replay it from the store."""
        self._cursor = self._target = last_id

    def committed_here(
        self, notifications: Sequence[Notification], queued: Collection[int], done: Unseen
    ) -> None:
        """This node committed ``notifications`` (ascending ids; ``queued`` went to queues).

        ``done`` hears, once they were offered, which found no local session.
        """
        if not notifications:
            return
        caught_up = self._cursor >= self._target
        if caught_up and (not self._clustered or notifications[0].id == self._cursor + 1):
            self._cursor = self._target = notifications[-1].id
            batch = _Batch(notifications, queued, done)
            if not self._batches and len(notifications) <= SLICE:
                self._offer(batch, len(notifications))  # the common case, at once
                return
            self._batches.append(batch)
            if self._idle.is_set():
                self._idle.clear()
                asyncio.get_running_loop().call_soon(self._next_slice)
        else:
            self.advance_to(notifications[-1].id)
            has = self._hub.has
            done([n for n in notifications if not has(n.user_id)])

    def _next_slice(self) -> None:
        batch = self._batches[0]
        if self._offer(batch, SLICE):
            self._batches.popleft()
        if self._batches:
            asyncio.get_running_loop().call_soon(self._next_slice)
        else:
            self._idle.set()

    def _offer(self, batch: _Batch, count: int) -> bool:
        """Offer the batch's next ``count`` rows; whether it is done (then ``done`` ran)."""
        offer = self._hub.offer
        rows = batch.notifications
        start, stop = batch.position, min(batch.position + count, len(rows))
        for n in rows[start:stop]:
            if n.created_at is not batch.moment:
                batch.moment, batch.born = n.created_at, n.created_at.timestamp()
            offer(Envelope(n, queued=n.id in batch.queued, born=batch.born))
        batch.position = stop
        if stop < len(rows):
            return False
        # After every offer: one may have closed a session as slow, leaving its user
        # with none.
        has = self._hub.has
        batch.done([n for n in rows if not has(n.user_id)])
        return True

    def advance_to(self, last_id: int) -> None:
        """Notifications up to ``last_id`` are committed somewhere: deliver the local ones."""
        if last_id > self._target:
            self._target = last_id
            self._wakeup.set()

    async def run(self) -> None:
        """Catch up whenever the target moves past the cursor, until cancelled."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._cursor < self._target:
                await self._idle.wait()  # this node's own batches go first
                try:
                    await self._catch_up(self._target)
                except Exception:
                    log.warning("catch-up read failed; retrying", exc_info=True)
                    await asyncio.sleep(self._retry_after)

    async def _catch_up(self, target: int) -> None:
        rows = await self._store.fetch_range(self._cursor, target, self._batch)
        for notification, queued in rows:
            if self._hub.has(notification.user_id):
                self._hub.offer(Envelope(notification, queued=queued))
        self._cursor = rows[-1][0].id if len(rows) == self._batch else target
