"""The single writer: every create goes through one task that commits in groups.

Concurrent creates are gathered into one store transaction (group commit), which
makes many small creates cheap and gives ids that increase with commit order. After
each commit, and before any caller hears back, the committed notifications are
handed on for fan-out in id order.

A create may be queued *after* another (``queue(items, after=...)``): the slices of a
broadcast, queued one ahead so that the writer goes on to the next as soon as one is
committed. Such a create is committed in a transaction of its own, never grouped with
the one it follows, and only if that one was committed: should it fail (or be
withdrawn), the creates chained after it fail with it, uncommitted.
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


@dataclass(slots=True, eq=False)
class Pending:
    """A queued create: ``future`` answers with its outcomes once it is committed."""

    items: Sequence[NewNotification]
    #: The create this one may be committed after only (see the module docstring).
    after: Pending | None = None
    future: asyncio.Future[list[Created]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    #: Set by the writer once its transaction committed.
    committed: bool = False
    #: Why it was not committed, once the writer knows.
    error: BaseException | None = None


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
        self._queue: asyncio.Queue[Pending | None] = asyncio.Queue()
        #: A chained request taken from the queue that starts the next group.
        self._carry: Pending | None = None
        self._closing = False

    async def submit(self, items: Sequence[NewNotification]) -> list[Created]:
        """Create ``items`` (validated already); returns when they are committed.

        The items of one call are committed in one transaction, all or none: a group
        whose transaction fails is retried call by call, so one call's failure never
        fails, nor half-commits, another's.
        """
        return await self.queue(items).future

    def queue(self, items: Sequence[NewNotification], *, after: Pending | None = None) -> Pending:
        """Queue a create of ``items`` (as ``submit``); with ``after``, one committed
        after that one only, in a transaction of its own. Cancelling the returned
        future withdraws the create unless its transaction has begun."""
        if self._closing:
            raise Unavailable("the server is shutting down")
        request = Pending(items, after)
        self._queue.put_nowait(request)
        return request

    async def run(self) -> None:
        """Commit requests as they come, until ``close`` has been called and all are done.

        Cancelled (a shutdown that cannot wait for the store), it fails every request
        not committed with ``Unavailable``.
        """
        group: list[Pending] = []
        try:
            while True:
                first, self._carry = self._carry, None
                if first is None:
                    first = await self._queue.get()
                if first is None:
                    return
                group, rows, last = [first], len(first.items), False
                while rows < self._max_batch and not self._queue.empty():
                    request = self._queue.get_nowait()
                    if request is None:
                        last = True
                        break
                    if request.after is not None and request.after in group:
                        self._carry = request  # a transaction of its own, next
                        break
                    group.append(request)
                    rows += len(request.items)
                await self._commit(group)
                if last:
                    return
        except asyncio.CancelledError:
            if self._carry is not None:
                group.append(self._carry)
            while not self._queue.empty():
                if (request := self._queue.get_nowait()) is not None:
                    group.append(request)
            for request in group:
                if not request.future.done():
                    _fail(request, Unavailable("the server is shutting down"))
            raise

    def close(self) -> None:
        """Refuse new creates; ``run`` returns once those already submitted are committed."""
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(None)

    async def _commit(self, group: list[Pending]) -> None:
        live: list[Pending] = []
        for request in group:
            if request.future.done():  # withdrawn
                request.error = request.error or Unavailable("the create was withdrawn")
            elif request.after is not None and not request.after.committed:
                # What it follows was not committed: neither is it, for the same reason.
                _fail(request, request.after.error or Unavailable("an earlier create failed"))
            else:
                live.append(request)
            request.after = None  # decided: a chain of slices does not keep the ones before
        if not live:
            return
        items = [item for r in live for item in r.items]
        try:
            result = await self._create(items)
        except StoreUnavailable as exc:  # the store's health reports it; all fail alike
            for request in live:
                _fail(request, exc)
            return
        except Exception as exc:
            if len(live) > 1:  # do not let one request's failure fail the others
                for request in live:
                    await self._commit([request])
                return
            log.error("create failed: %s", exc)
            _fail(live[0], exc)
            return
        for request in live:
            request.committed = True
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


def _fail(request: Pending, exc: BaseException) -> None:
    """``request`` will not be committed, for ``exc``."""
    request.error = exc
    if not request.future.done():
        request.future.set_exception(exc)
