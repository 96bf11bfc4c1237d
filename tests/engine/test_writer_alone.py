"""A create the writer has alone in flight is committed with ``ALONE`` set (the store may
skip its thread); every ``PROBE_EVERY``-th is not, and once creates arrive during a commit
none is, for ``CROWD_COMMITS`` commits (memory store, fake clock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import pytest

from server.engine import Engine, EngineConfig, SessionLimits
from server.engine.models import Content, NewNotification
from server.engine.store import ALONE, CreateResult
from server.engine.writer import CROWD_COMMITS, PROBE_EVERY
from server.store.memory import MemoryStore
from tests.engine.fakes import FakeClock

pytestmark = pytest.mark.timeout(10)


class RecordingStore(MemoryStore):
    """Records ``ALONE`` at each create; ``gate``, when set, holds creates until opened."""

    def __init__(self) -> None:
        super().__init__()
        self.alone: list[bool] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def create(
        self,
        items: Sequence[NewNotification],
        *,
        delivered: Collection[int] = (),
        **kwargs: Any,
    ) -> CreateResult:
        self.alone.append(ALONE.get())
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        return await super().create(items, delivered=delivered, **kwargs)


def note(user: str, title: str = "n") -> NewNotification:
    return NewNotification(user, Content(type="t", title=title))


@pytest.fixture
async def engine_store() -> AsyncIterator[tuple[Engine, RecordingStore]]:
    store = RecordingStore()
    engine = Engine(
        store,
        EngineConfig(node_id="n1", session=SessionLimits(heartbeat_interval=3600)),
        FakeClock(),
    )
    await engine.start()
    yield engine, store
    await engine.stop()


async def test_creates_one_at_a_time_are_alone_but_for_every_probe(
    engine_store: tuple[Engine, RecordingStore],
) -> None:
    engine, store = engine_store
    for i in range(2 * PROBE_EVERY):
        assert (await engine.create(note("u", f"n{i}"))).created
    probe = [(i + 1) % PROBE_EVERY != 0 for i in range(2 * PROBE_EVERY)]
    assert store.alone == probe


async def test_creates_arriving_during_a_commit_end_the_lone_commits_for_a_while(
    engine_store: tuple[Engine, RecordingStore],
) -> None:
    engine, store = engine_store
    store.gate = asyncio.Event()
    first = asyncio.ensure_future(engine.create(note("u", "first")))
    await store.entered.wait()
    second = asyncio.ensure_future(engine.create(note("u", "second")))  # arrives meanwhile
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(first, second)
    for i in range(CROWD_COMMITS + 1):
        await engine.create(note("u", f"n{i}"))
    # The first was alone; the CROWD_COMMITS commits after it found one queued behind it
    # (the second's included) are not; then creates are alone again.
    assert store.alone == [True, *[False] * CROWD_COMMITS, True, True]
    ids = [n.id for n in await store.fetch(range(1, CROWD_COMMITS + 4))]
    assert ids == sorted(ids) and len(ids) == CROWD_COMMITS + 3
