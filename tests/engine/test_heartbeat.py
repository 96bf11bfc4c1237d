"""One timer for every session's heartbeat."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from server.engine.heartbeat import Heartbeats

pytestmark = pytest.mark.timeout(10)


class Beater:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.beaten = asyncio.Event()

    def beat(self) -> None:
        self.times.append(asyncio.get_running_loop().time())
        self.beaten.set()

    async def beats(self, n: int) -> list[float]:
        while len(self.times) < n:
            self.beaten.clear()
            await self.beaten.wait()
        return self.times[:n]


async def test_each_session_beats_every_interval() -> None:
    hb = Heartbeats(0.08)
    loop = asyncio.get_running_loop()
    start = loop.time()
    a, b = Beater(), Beater()
    hb.add(a)
    hb.add(b)
    times = await a.beats(3)
    await b.beats(3)
    step = 0.08 / 16
    assert times[0] - start == pytest.approx(0.08, abs=2 * step + 0.02)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(g == pytest.approx(0.08, abs=2 * step + 0.02) for g in gaps)
    hb.close()


async def test_a_removed_session_stops_beating() -> None:
    hb = Heartbeats(0.05)
    gone, kept = Beater(), Beater()
    hb.add(gone)
    hb.add(kept)
    hb.remove(gone)
    assert len(hb) == 1
    await kept.beats(2)
    assert gone.times == []
    hb.close()


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Heartbeats(0)
