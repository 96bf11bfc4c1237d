"""Test doubles for engine tests: a controllable clock and a session reader."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from server.engine.events import Event
from server.engine.session import Session


class FakeTimer:
    """A call scheduled on a ``FakeClock``."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Time moves only when the test says so; timers fire as it passes them, in order."""

    def __init__(self) -> None:
        self._mono = 1000.0
        self._wall = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
        self._timers: list[tuple[float, int, FakeTimer, Callable[[], None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(self._timers, (self._mono + delay, next(self._order), timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, firing every timer due on the way at its time."""
        end = self._mono + seconds
        while self._timers and self._timers[0][0] <= end:
            when, _, timer, callback = heapq.heappop(self._timers)
            self._set(max(when, self._mono))
            if not timer.cancelled:
                callback()
        self._set(end)

    def _set(self, mono: float) -> None:
        self._wall += timedelta(seconds=mono - self._mono)
        self._mono = mono


async def take(session: Session, n: int, timeout: float = 2.0) -> list[Event]:
    """The next ``n`` events of a session (each read confirms the one before)."""
    out: list[Event] = []
    async with asyncio.timeout(timeout):
        for _ in range(n):
            out.append(await anext(session))
    return out


def pending(session: Session) -> int:
    """How many events wait in the session's outbox."""
    return len(session._outbox)
