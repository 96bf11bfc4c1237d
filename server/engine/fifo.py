"""A first-in first-out queue that costs a list, not a deque.

An idle session holds an empty outbox for hours: ``collections.deque`` allocates a
760-byte block up front, a list a few pointers. Taking from the front advances an
index; the list is reset once everything was taken, so the cost stays O(1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class Fifo(Generic[T]):
    __slots__ = ("_head", "_items")

    def __init__(self) -> None:
        self._items: list[T | None] = []  # None: taken already
        self._head = 0

    def append(self, item: T) -> None:
        self._items.append(item)

    def popleft(self) -> T:
        """The oldest item; ``IndexError`` when empty."""
        items, head = self._items, self._head
        if head >= len(items):
            raise IndexError("pop from an empty Fifo")
        item = items[head]
        if head + 1 == len(items):
            items.clear()
            self._head = 0
        else:
            items[head] = None  # let it be collected now
            self._head = head + 1
        return cast(T, item)

    def clear(self) -> None:
        self._items = []
        self._head = 0

    def __len__(self) -> int:
        return len(self._items) - self._head

    def __bool__(self) -> bool:
        return len(self._items) > self._head

    def __iter__(self) -> Iterator[T]:
        return iter(cast(list[T], self._items[self._head :]))
