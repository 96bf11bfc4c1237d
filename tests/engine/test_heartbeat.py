"""One timer for every session's heartbeat, on a fake clock."""

from __future__ import annotations

import itertools

import pytest

from server.engine.heartbeat import HeartbeatTimer
from tests.engine.fakes import FakeClock

pytestmark = pytest.mark.timeout(10)


class Beater:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.times: list[float] = []

    def beat(self) -> None:
        self.times.append(self.clock.monotonic())


def test_each_session_beats_every_interval_give_or_take_a_step() -> None:
    clock = FakeClock()
    hb = HeartbeatTimer(0.8, clock)
    step = 0.8 / 16
    start = clock.monotonic()
    a = Beater(clock)
    hb.add(a)
    clock.advance(0.3)
    b = Beater(clock)
    hb.add(b)
    clock.advance(10)
    for beater, began in ((a, start), (b, start + 0.3)):
        assert len(beater.times) >= 11
        assert beater.times[0] - began == pytest.approx(0.8, abs=step)
        gaps = [later - earlier for earlier, later in itertools.pairwise(beater.times)]
        assert all(g == pytest.approx(0.8, abs=step) for g in gaps), gaps
    hb.close()


def test_no_beat_before_the_interval() -> None:
    clock = FakeClock()
    hb = HeartbeatTimer(30, clock)
    a = Beater(clock)
    hb.add(a)
    clock.advance(29)
    assert a.times == []
    clock.advance(2)
    assert len(a.times) == 1
    hb.close()


def test_a_removed_session_stops_beating() -> None:
    clock = FakeClock()
    hb = HeartbeatTimer(0.05, clock)
    gone, kept = Beater(clock), Beater(clock)
    hb.add(gone)
    hb.add(kept)
    hb.remove(gone)
    assert len(hb) == 1
    clock.advance(1)
    assert len(kept.times) >= 2
    assert gone.times == []
    hb.close()


def test_closed_heartbeats_fire_no_more() -> None:
    clock = FakeClock()
    hb = HeartbeatTimer(0.05, clock)
    a = Beater(clock)
    hb.add(a)
    hb.close()
    clock.advance(1)
    assert a.times == []


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        HeartbeatTimer(0, FakeClock())
