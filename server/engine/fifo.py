"""A first-in first-out queue that costs a list, not a deque.

An idle session holds an empty outbox for hours: ``collections.deque`` allocates a
760-byte block up front; this holds no list at all while empty. Taking from the front
advances an index; the list is dropped once everything was taken, so the cost stays
O(1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class Fifo(Generic[T]):
    __slots__ = ("_head", "_items")

    def __init__(self) -> None:
        # None while empty: an idle session's outbox holds no list at all.
        self._items: list[T | None] | None = None  # None entries: taken already
        self._head = 0

    def append(self, item: T) -> None:
        items = self._items
        if items is None:
            self._items = [item]
        else:
            items.append(item)

    def popleft(self) -> T:
        """The oldest item; ``IndexError`` when empty."""
        items, head = self._items, self._head
        if items is None:
            raise IndexError("pop from an empty Fifo")
        item = items[head]
        if head + 1 == len(items):
            self._items = None
            self._head = 0
        else:
            items[head] = None  # let it be collected now
            self._head = head + 1
        return cast(T, item)

    def take(self, limit: int) -> list[T]:
        """The oldest items, at most ``limit`` of them, out of the queue (one slice rather
        than a ``popleft`` each)."""
        items, head = self._items, self._head
        if items is None:
            return []
        end = head + limit
        if end >= len(items):
            self._items = None
            self._head = 0
            return cast(list[T], items[head:] if head else items)
        taken = cast(list[T], items[head:end])
        items[head:end] = [None] * limit  # let them be collected now
        self._head = end
        return taken

    def clear(self) -> None:
        self._items = None
        self._head = 0

    def __len__(self) -> int:
        items = self._items
        return 0 if items is None else len(items) - self._head

    def __bool__(self) -> bool:
        return self._items is not None  # never an empty list

    def __iter__(self) -> Iterator[T]:
        items = self._items
        return iter(() if items is None else cast(list[T], items[self._head :]))
