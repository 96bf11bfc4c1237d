"""The single writer: every create goes through one task that commits in groups.

Concurrent creates are gathered into one store transaction (group commit), which
makes many small creates cheap and gives ids that increase with commit order. After
each commit, and before any caller hears back, the committed notifications are
handed on for fan-out in id order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.engine.clock import Clock
from server.engine.delivery import DeliveryLog
from server.engine.errors import StoreUnavailable, Unavailable
from server.engine.models import Created, NewNotification, Notification

if TYPE_CHECKING:
    from server.engine.store import CreateResult, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Request:
    items: Sequence[NewNotification]
    future: asyncio.Future[list[Created]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Writer:
    """Commits creates in groups of at most ``max_batch`` rows."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        queue_cap: int,
        offline: Callable[[str], bool],
        on_committed: Callable[[Sequence[Notification], CreateResult], None],
        delivery: DeliveryLog | None = None,
        max_batch: int = 5000,
    ) -> None:
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._queue_cap = queue_cap
        self._offline = offline
        self._on_committed = on_committed
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._closing = False

    async def submit(self, items: Sequence[NewNotification]) -> list[Created]:
        """Create ``items`` (validated already); returns when they are committed.

        The items of one call are committed in one transaction, all or none: a group
        whose transaction fails is retried call by call, so one call's failure never
        fails, nor half-commits, another's.
        """
        if self._closing:
            raise Unavailable("the server is shutting down")
        request = _Request(items)
        self._queue.put_nowait(request)
        return await request.future

    async def run(self) -> None:
        """Commit requests as they come, until ``close`` has been called and all are done.

        Cancelled (a shutdown that cannot wait for the store), it fails every request
        not committed with ``Unavailable``.
        """
        group: list[_Request] = []
        try:
            while True:
                first = await self._queue.get()
                if first is None:
                    return
                group, rows, last = [first], len(first.items), False
                while rows < self._max_batch and not self._queue.empty():
                    request = self._queue.get_nowait()
                    if request is None:
                        last = True
                        break
                    group.append(request)
                    rows += len(request.items)
                await self._commit(group)
                if last:
                    return
        except asyncio.CancelledError:
            while not self._queue.empty():
                if (request := self._queue.get_nowait()) is not None:
                    group.append(request)
            for request in group:
                if not request.future.done():
                    request.future.set_exception(Unavailable("the server is shutting down"))
            raise

    def close(self) -> None:
        """Refuse new creates; ``run`` returns once those already submitted are committed."""
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(None)

    async def _commit(self, group: list[_Request]) -> None:
        live = [r for r in group if not r.future.done()]
        if not live:
            return
        items = [item for r in live for item in r.items]
        try:
            result = await self._create(items)
        except StoreUnavailable as exc:  # the store's health reports it; all fail alike
            for request in live:
                request.future.set_exception(exc)
            return
        except Exception as exc:
            if len(live) > 1:  # do not let one request's failure fail the others
                for request in live:
                    await self._commit([request])
                return
            log.error("create failed: %s", exc)
            live[0].future.set_exception(exc)
            return
        new = [o.notification for o in result.outcomes if o.created]
        self._on_committed(new, result)
        offset = 0
        for request in live:
            n = len(request.items)
            if not request.future.done():
                request.future.set_result(list(result.outcomes[offset : offset + n]))
            offset += n

    async def _create(self, items: Sequence[NewNotification]) -> CreateResult:
        """One store transaction; it also records the pending "delivered" marks, so that
        the queue cap counts only rows no session has taken."""
        if self._delivery is None:
            return await self._store.create(
                items, now=self._clock.now(), queue_cap=self._queue_cap, offline=self._offline
            )
        async with self._delivery.taking() as delivered:
            return await self._store.create(
                items,
                now=self._clock.now(),
                queue_cap=self._queue_cap,
                offline=self._offline,
                delivered=delivered,
            )
