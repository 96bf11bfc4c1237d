"""The engine's store probe: a ping without an answer marks the store down — unless
other calls were answered meanwhile (the loop was busy, the store was not down)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from server.engine import Engine, EngineConfig, SessionLimits
from server.engine import engine as engine_module
from server.store.memory import MemoryStore
from tests.engine.fakes import FakeClock

pytestmark = pytest.mark.timeout(10)


class HangingPing(MemoryStore):
    """A store whose pings never answer; ``pings`` counts them as they begin."""

    def __init__(self) -> None:
        super().__init__()
        self.pings = 0
        self.pinged = asyncio.Event()

    async def ping(self) -> None:
        self.pings += 1
        self.pinged.set()
        await asyncio.Event().wait()

    async def next_ping(self) -> None:
        self.pinged.clear()
        await self.pinged.wait()


@pytest.fixture
async def store(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HangingPing]:
    monkeypatch.setattr(engine_module, "PROBE_INTERVAL", 0.01)
    monkeypatch.setattr(engine_module, "PROBE_TIMEOUT", 0.05)
    store = HangingPing()
    config = EngineConfig(node_id="n1", session=SessionLimits(heartbeat_interval=3600))
    engine = Engine(store, config, FakeClock())
    await engine.start()
    yield store
    await engine.stop()


async def test_an_unanswered_ping_marks_the_store_down(store: HangingPing) -> None:
    await store.next_ping()
    await store.health.changed()
    assert not store.health.available


async def test_a_slow_ping_while_other_calls_are_answered_is_no_outage(
    store: HangingPing,
) -> None:
    await store.next_ping()
    store.health.succeeded()  # another call answered while the ping waits
    await store.next_ping()  # the first ping timed out; the probe asks again
    assert store.health.available
    assert store.pings == 2
