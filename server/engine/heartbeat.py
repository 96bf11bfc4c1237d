"""Every session's heartbeat on one timer.

A timer per session costs a few hundred bytes each and a callback each per interval.
Instead sessions wait in slots ``step`` seconds wide; one timer fires each slot in
turn, and every session in it beats and moves one interval on. A session's beats come
``interval`` apart, the first one ``interval`` after it started, give or take a step
(at most a second, and a sixteenth of the interval).
"""

from __future__ import annotations

import math
from typing import Protocol

from server.engine.clock import Cancellable, Clock


class Beating(Protocol):
    """What the heartbeats drive."""

    def beat(self) -> None:
        """Send a heartbeat now."""
        ...


class HeartbeatTimer:
    """Slots of sessions due for a heartbeat, and the one timer that serves them."""

    def __init__(self, interval: float, clock: Clock) -> None:
        if interval <= 0:
            raise ValueError("the heartbeat interval must be positive")
        self._interval = interval
        self._clock = clock
        self._step = min(1.0, max(interval / 16, 0.005))
        self._slots: dict[int, set[Beating]] = {}
        self._slot_of: dict[Beating, int] = {}
        self._timer: Cancellable | None = None

    def add(self, session: Beating) -> None:
        """Start beating for ``session`` (its first beat one interval from now)."""
        self._place(session, self._due())
        self._arm()

    def remove(self, session: Beating) -> None:
        slot = self._slot_of.pop(session, None)
        if slot is not None:
            sessions = self._slots[slot]
            sessions.discard(session)
            if not sessions:
                del self._slots[slot]

    def __len__(self) -> int:
        return len(self._slot_of)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._slots.clear()
        self._slot_of.clear()

    def _due(self) -> int:
        return math.ceil((self._clock.monotonic() + self._interval) / self._step)

    def _place(self, session: Beating, slot: int) -> None:
        self._slots.setdefault(slot, set()).add(session)
        self._slot_of[session] = slot

    def _arm(self) -> None:
        if self._slots and self._timer is None:
            delay = min(self._slots) * self._step - self._clock.monotonic()
            self._timer = self._clock.call_later(max(delay, 0.0), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._clock.monotonic() / self._step
        due = [slot for slot in self._slots if slot <= now + 1e-9]
        next_slot = self._due()
        for slot in sorted(due):
            for session in self._slots.pop(slot):
                self._place(session, next_slot)
                session.beat()
        self._arm()
