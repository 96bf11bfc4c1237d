"""Fan-in: committed notifications reach this node's sessions in id order, once each.

Ids increase with commit order across every node sharing the store (see
``server.engine.store``), so "everything up to id X" is a complete, ordered set once X
is known to be committed. The fan-in keeps a cursor (the last id offered to local
sessions) and moves it forward in two ways:

* Fast path: a batch this node just committed that starts right after the cursor is
  offered straight from memory (always the case on a lone node).
* Catch-up: otherwise — a peer committed something, the broker came back after an
  outage, a gap appeared — it reads the range (cursor, target] from the store and
  offers what belongs to local users.

Either way a session sees ids in increasing order, so it can drop repeats cheaply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from server.engine.errors import StoreUnavailable
from server.engine.events import Envelope
from server.engine.hub import Hub
from server.engine.models import Notification

if TYPE_CHECKING:
    from server.engine.store import Store

log = logging.getLogger(__name__)


class FanIn:
    """Moves the delivery cursor; ``run`` performs catch-up reads in the background."""

    def __init__(
        self,
        store: Store,
        hub: Hub,
        *,
        clustered: bool,
        declined: Callable[[Notification], None] = lambda _n: None,
        batch: int = 2000,
        retry_after: float = 0.5,
    ) -> None:
        self._store = store
        self._hub = hub
        self._clustered = clustered
        self._declined = declined
        self._batch = batch
        self._retry_after = retry_after
        self._cursor = 0
        self._target = 0
        self._wakeup = asyncio.Event()

    @property
    def cursor(self) -> int:
        return self._cursor

    def start_at(self, last_id: int) -> None:
        """Everything up to ``last_id`` predates this node: sessions replay it from the store."""
        self._cursor = self._target = last_id

    def committed_here(
        self, notifications: Sequence[Notification], queued: Collection[int]
    ) -> None:
        """This node committed ``notifications`` (ascending ids; ``queued`` went to queues)."""
        if not notifications:
            return
        caught_up = self._cursor >= self._target
        if caught_up and (not self._clustered or notifications[0].id == self._cursor + 1):
            hub, declined = self._hub, self._declined
            sessions_of, offer_to = hub.by_user.get, hub.offer_to
            moment: datetime | None = None  # rows committed together share created_at
            ts = 0.0
            batch: dict[object, object] = {}
            for n in notifications:
                sessions = sessions_of(n.user_id)
                if not sessions:  # no session of theirs on this node (most of a
                    continue  # broadcast's recipients): nothing to offer
                if n.created_at is not moment:
                    moment, ts = n.created_at, n.created_at.timestamp()
                is_queued = n.id in queued
                # ``_offer``, inline: one call less per recipient.
                envelope = Envelope(n, queued=is_queued, born=ts, batch=batch)
                if offer_to(sessions, envelope) and is_queued:
                    declined(n)
            self._cursor = self._target = notifications[-1].id
        else:
            self.advance_to(notifications[-1].id)

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
                try:
                    await self._catch_up(self._target)
                except Exception as exc:
                    if not isinstance(exc, StoreUnavailable):  # the store's health reports it
                        log.warning("catch-up read failed; retrying", exc_info=True)
                    await asyncio.sleep(self._retry_after)

    async def _catch_up(self, target: int) -> None:
        rows = await self._store.fetch_range(self._cursor, target, self._batch)
        batch: dict[object, object] = {}
        for notification, queued in rows:
            if self._hub.has(notification.user_id):
                self._offer(Envelope(notification, queued=queued, batch=batch))
        self._cursor = rows[-1][0].id if len(rows) == self._batch else target

    def _offer(self, envelope: Envelope) -> None:
        """Offer to the local sessions; a queued row that all of them decline (by their
        filters) is reported as ``declined``."""
        if self._hub.offer(envelope) and envelope.queued:
            self._declined(envelope.notification)
