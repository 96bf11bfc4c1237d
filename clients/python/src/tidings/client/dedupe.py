"""Remembering which notification ids were already handed to the application."""

from __future__ import annotations

from collections import deque


class RecentIds:
    """The last ``capacity`` ids seen, for dropping duplicates after a resume.

    A resume replays every id after the last one the application processed, so the
    ones still waiting in the Subscriber's buffer come again; the server's queue may
    also hold ids whose delivery it had not recorded when it crashed. A bounded window
    is enough: a replay never reaches further back than the server's replay cap plus
    the client's buffer.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._order: deque[int] = deque()
        self._ids: set[int] = set()
        self._capacity = capacity

    def __contains__(self, notification_id: object) -> bool:
        return notification_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, notification_id: int) -> None:
        if notification_id in self._ids:
            return
        self._ids.add(notification_id)
        self._order.append(notification_id)
        if len(self._order) > self._capacity:
            self._ids.discard(self._order.popleft())
