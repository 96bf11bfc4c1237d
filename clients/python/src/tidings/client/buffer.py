"""The buffer between a Subscriber's network reader and the application's iterator."""

from __future__ import annotations

import asyncio
from collections import deque

from tidings.client.models import Notification


class Buffer:
    """Received, not yet handed out notifications; then an end (a clean stop or an error).

    The reader never waits here: it must keep reading, or heartbeats and command answers
    would go unheard while the application is busy. The Subscriber watches ``len`` and
    pauses the stream itself when the application falls too far behind.
    """

    def __init__(self) -> None:
        self._items: deque[Notification] = deque()
        self._end: BaseException | None = None
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def ended(self) -> bool:
        return self._end is not None

    def put(self, notification: Notification) -> None:
        if self._end is None:
            self._items.append(notification)
            self._changed.set()

    def end(self, error: BaseException | None = None, *, discard: bool = False) -> None:
        """No more items: the iterator stops (``error`` None) or raises ``error``, once the
        buffered items are handed out (unless ``discard``)."""
        if self._end is None:
            self._end = error if error is not None else StopAsyncIteration()
        if discard:
            self._items.clear()
        self._changed.set()

    async def get(self) -> Notification:
        while not self._items:
            if self._end is not None:
                if isinstance(self._end, StopAsyncIteration):
                    raise StopAsyncIteration
                raise self._end
            self._changed.clear()
            await self._changed.wait()
        item = self._items.popleft()
        self._changed.set()
        return item

    async def wait_until_at_most(self, size: int) -> None:
        """Return once at most ``size`` items are buffered, or the inbox has ended."""
        while len(self._items) > size and self._end is None:
            self._changed.clear()
            await self._changed.wait()
