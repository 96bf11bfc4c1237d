"""The single writer: every create goes through one task that commits in groups.

Concurrent creates are gathered into one store transaction (group commit), which
makes many small creates cheap and gives ids that increase with commit order. After
each commit, and before any caller hears back, the committed notifications are
handed on for fan-out in id order.

A create may be queued *after* another (``queue(items, after=...)``): the slices of a
broadcast, queued ahead. Such a create is committed in a transaction of its own, never
grouped with the one it follows, and only if that one was committed: should it fail
(or be withdrawn), the creates chained after it fail with it, uncommitted. When it is
queued by the time the one before begins, the writer sets it under way at once, on a
``Turn`` after that one's (``Store.create``): the store builds its statement and waits
for its place while the one before is written, and writes it while the one before is
handed on, so that the database and the node's own work overlap instead of taking
turns. It commits after the one before has committed, and it is handed on after it.
Such a create does not write the pending "delivered" marks (they wait for the next
create of their own, or the delivery log's flush).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from server.engine.clock import Clock
from server.engine.delivery import DeliveryLog
from server.engine.errors import StoreUnavailable, Unavailable
from server.engine.models import Created, NewNotification, Notification
from server.engine.store import Turn

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


@dataclass(slots=True, eq=False)
class _UnderWay:
    """A create set going on a turn of its own (``task`` is None: withdrawn already)."""

    request: Pending
    turn: Turn
    task: asyncio.Task[CreateResult] | None


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
        self._queue: deque[Pending | None] = deque()  # None: closed
        self._arrived = asyncio.Event()
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
        self._queue.append(request)
        self._arrived.set()
        return request

    async def run(self) -> None:
        """Commit requests as they come, until ``close`` has been called and all are done.

        Cancelled (a shutdown that cannot wait for the store), it fails every request
        not committed with ``Unavailable``.
        """
        group: list[Pending] = []
        under_way: deque[_UnderWay] = deque()  # the create being finished, and the next
        try:
            while True:
                if not under_way:
                    first = await self._take()
                    if first is None:
                        return
                    group, rows = [first], len(first.items)
                    while rows < self._max_batch and self._queue:
                        request = self._queue[0]
                        if request is None or (
                            request.after is not None and request.after in group
                        ):
                            break  # the end, or a create for a transaction of its own
                        group.append(request)
                        self._queue.popleft()
                        rows += len(request.items)
                    if len(group) > 1 or (follower := self._follower(first)) is None:
                        await self._commit(group)
                        continue
                    # One create with the next queued after it: both under way.
                    under_way.append(self._start(first, None))
                    under_way.append(self._start(follower, under_way[0].turn))
                elif len(under_way) == 1 and (follower := self._follower(under_way[0].request)):
                    under_way.append(self._start(follower, under_way[0].turn))
                await self._finish(under_way[0])
                under_way.popleft()
        except asyncio.CancelledError:
            for started in under_way:
                if started.task is not None:
                    started.task.cancel()
                group.append(started.request)
            group.extend(request for request in self._queue if request is not None)
            self._queue.clear()
            for request in group:
                if not request.future.done():
                    _fail(request, Unavailable("the server is shutting down"))
            raise

    async def _take(self) -> Pending | None:
        """The next request queued (``None``: closed), once there is one."""
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        return self._queue.popleft()

    def _follower(self, request: Pending) -> Pending | None:
        """The next request queued, taken if it is queued after ``request``."""
        if self._queue and (follower := self._queue[0]) is not None and follower.after is request:
            return self._queue.popleft()
        return None

    def _start(self, request: Pending, after: Turn | None) -> _UnderWay:
        """Set ``request`` going on a turn after ``after`` (without the delivered marks,
        unless it follows nothing)."""
        turn = Turn(after)
        error: BaseException | None = None
        if request.future.done():
            error = Unavailable("the create was withdrawn")
        elif after is None and request.after is not None and not request.after.committed:
            error = request.after.error or Unavailable("an earlier create failed")
        request.after = None  # its turn carries what it follows
        if error is not None:
            _fail(request, error)
            turn.ended(error)
            return _UnderWay(request, turn, None)
        task = asyncio.create_task(self._create(request.items, turn, marks=after is None))
        return _UnderWay(request, turn, task)

    async def _finish(self, started: _UnderWay) -> None:
        """Wait for a create set going by ``_start``, then end its turn and hand it on."""
        request, turn, task = started.request, started.turn, started.task
        if task is None:
            return
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():  # the writer itself is cancelled: so is its create
                task.cancel()
                turn.ended(Unavailable("the server is shutting down"))
                raise
            error: BaseException = Unavailable("the create was cancelled")
            turn.ended(error)
            _fail(request, error)
            return
        except Exception as exc:
            turn.ended(exc)
            before = turn.after
            inherited = before is not None and before.over.done() and before.over.exception() is exc
            if not inherited and not isinstance(exc, StoreUnavailable):
                log.error("create failed: %s", exc)
            _fail(request, exc)
            return
        turn.ended()  # the next may commit, while this one is handed on
        request.committed = True
        self._on_committed([o.notification for o in result.outcomes if o.created], result)
        if not request.future.done():
            request.future.set_result(list(result.outcomes))

    def close(self) -> None:
        """Refuse new creates; ``run`` returns once those already submitted are committed."""
        if not self._closing:
            self._closing = True
            self._queue.append(None)
            self._arrived.set()

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

    async def _create(
        self, items: Sequence[NewNotification], turn: Turn | None = None, *, marks: bool = True
    ) -> CreateResult:
        """One store transaction; it also records the pending "delivered" marks (with
        ``marks``), so that the queue cap counts only rows no session has taken."""
        # Without a turn, the plain call (the stores' own fakes in tests need not know turns).
        create = self._store.create if turn is None else partial(self._store.create, turn=turn)
        if self._delivery is None or not marks:
            return await create(
                items, now=self._clock.now(), queue_cap=self._queue_cap, offline=self._offline
            )
        async with self._delivery.taking() as delivered:
            return await create(
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
