"""Hooks through which the engine reports what happens, for metrics; it never depends on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from server.engine.events import CloseReason
from server.engine.models import Notification


class Observer(Protocol):
    """Receives engine facts. Calls are on the hot path: implementations must be cheap."""

    def session_opened(self) -> None: ...

    def session_closed(self, reason: CloseReason) -> None: ...

    def created(self, notifications: Sequence[Notification]) -> None: ...

    def written(self, notification: Notification, latency_s: float) -> None:
        """A session's transport wrote ``notification``, ``latency_s`` after its creation."""
        ...

    def dropped(self, count: int) -> None:
        """``count`` notifications left offline queues because of the cap."""
        ...


class NullObserver:
    """Reports nothing."""

    def session_opened(self) -> None:
        return None

    def session_closed(self, reason: CloseReason) -> None:
        return None

    def created(self, notifications: Sequence[Notification]) -> None:
        return None

    def written(self, notification: Notification, latency_s: float) -> None:
        return None

    def dropped(self, count: int) -> None:
        return None
