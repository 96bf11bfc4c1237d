"""Test doubles for engine tests: a controllable clock and a session reader."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from server.engine.events import Event
from server.engine.session import Session


class FakeClock:
    """Time moves only when the test says so."""

    def __init__(self) -> None:
        self._mono = 1000.0
        self._wall = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)


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
