"""A queue and an event for per-connection state that sits idle for hours.

Every idle WebSocket holds two ``asyncio.Queue`` (hypercorn's queue to the app, Quart's
queue of received messages) and two ``asyncio.Event`` (hypercorn's ``can_read``, the
guarded stream's ``_gone``). Each ``Queue`` makes four ``collections.deque`` up front
(items, getters, putters and its ``Event``'s waiters) and each ``Event`` one, at 760 bytes
a deque: about 7.6 KiB of an idle socket's 42 KiB (docs/BENCHMARKS.md, "Idle memory").

``SlimQueue`` and ``SlimEvent`` behave as those do for the calls made of them (``get``,
``put``, ``put_nowait``, ``get_nowait``, ``qsize``, ``empty``; ``set``, ``wait``,
``clear``, ``is_set``), cancellation included, and allocate nothing until used: an empty
queue with nobody waiting holds four slots, an event three. ``first_of`` waits for the
first of several futures with less held while it waits than ``asyncio.wait``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _wake_first(waiters: list[asyncio.Future[None]] | None) -> None:
    """Wake the first of ``waiters`` not already woken or cancelled."""
    if waiters:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
                return


class SlimQueue(Generic[T]):
    """A FIFO queue (bounded with ``maxsize`` > 0) for one event loop, as ``asyncio.Queue``."""

    __slots__ = ("_getters", "_items", "_maxsize", "_putters")

    def __init__(self, maxsize: int = 0) -> None:
        self._maxsize = maxsize
        self._items: deque[T] | None = None  # made by the first put, dropped once empty
        self._getters: list[asyncio.Future[None]] | None = None
        self._putters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items is not None else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self._maxsize <= self.qsize()

    def put_nowait(self, item: T) -> None:
        if self.full():
            raise asyncio.QueueFull
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        _wake_first(self._getters)

    def get_nowait(self) -> T:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None
        _wake_first(self._putters)
        return item

    async def put(self, item: T) -> None:
        while self.full():
            if self._putters is None:
                self._putters = []
            await _wait_in(self._putters, self.full)
            if not self._putters:
                self._putters = None
        self.put_nowait(item)

    async def get(self) -> T:
        while not self._items:
            if self._getters is None:
                self._getters = []
            await _wait_in(self._getters, self.empty)
            if not self._getters:
                self._getters = None
        return self.get_nowait()


async def _wait_in(
    waiters: list[asyncio.Future[None]], nothing_to_pass_on: Callable[[], bool]
) -> None:
    """Wait in ``waiters`` until woken.

    A waiter cancelled after being woken passes the wake-up on to the next, unless
    ``nothing_to_pass_on()``, as ``asyncio.Queue`` does.
    """
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    except asyncio.CancelledError:
        waiters.remove(waiter)
        if waiter.done() and not waiter.cancelled() and not nothing_to_pass_on():
            _wake_first(waiters)
        raise
    waiters.remove(waiter)


class SlimEvent:
    """``asyncio.Event`` for one event loop, its waiters' list made on the first wait."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            waiters, self._waiters = self._waiters, None
            for waiter in waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None


class SlimEventWrapper:
    """hypercorn's ``EventWrapper`` (its ``WorkerContext.event_class``) on a ``SlimEvent``."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = SlimEvent()

    async def clear(self) -> None:
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()

    async def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


async def first_of(*futures: asyncio.Future[Any]) -> None:
    """Return once any of ``futures`` is done (none is cancelled if this is).

    ``asyncio.wait(..., return_when=FIRST_COMPLETED)`` would do, but keeps a set, a
    closure and two coroutine frames for as long as it waits (docs/BENCHMARKS.md, "Small
    costs"), and every idle socket waits in two such calls for its whole life.
    """
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done(_: object) -> None:
        if not first.done():
            first.set_result(None)

    for future in futures:
        future.add_done_callback(done)
    try:
        await first
    finally:
        for future in futures:
            future.remove_done_callback(done)
