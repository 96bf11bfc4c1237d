"""The store's health: flips at once both ways, and logs an outage once, not per call."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.engine.store_health import StoreHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def health(clock: Clock, caplog: pytest.LogCaptureFixture) -> StoreHealth:
    caplog.set_level(logging.DEBUG, logger="server.store")
    h = StoreHealth(quiet=30.0, clock=clock)
    h.succeeded()  # the store answered once: it exists
    return h


def test_first_failure_and_first_success_flip_and_log_once_each(
    health: StoreHealth, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(100):
        health.failed("connection refused")
    assert not health.available
    clock.now += 4.2
    for _ in range(100):
        health.succeeded()
    assert bool(health.available)  # (bool: mypy keeps the narrowing above across calls)
    assert logged(caplog) == [
        "store unavailable: connection refused",
        "store available again after 4.2 s",
    ]


def test_a_flapping_store_is_reported_once_per_quiet_period(
    health: StoreHealth, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(5):
        health.failed("reset")
        clock.now += 1
        health.succeeded()
        clock.now += 1
    assert len(logged(caplog)) == 2
    clock.now += 30
    health.failed("reset")
    assert logged(caplog)[-1] == "store unavailable: reset (4 short outages since the last report)"


def test_a_long_outage_within_the_quiet_period_is_reported_once_it_ends(
    health: StoreHealth, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    health.failed("reset")
    clock.now += 1
    health.succeeded()
    clock.now += 1
    health.failed("refused")  # a second outage soon after the first: not reported yet
    assert len(logged(caplog)) == 2
    clock.now += 29
    health.failed("refused")  # still down (a probe): now it is
    clock.now += 5
    health.succeeded()
    assert logged(caplog)[2:] == [
        "store unavailable: refused",
        "store available again after 34.0 s",
    ]


def test_a_call_begun_before_the_outage_does_not_end_it(health: StoreHealth) -> None:
    began = health.outages
    health.failed("terminated")
    health.succeeded(began)  # answered just before the database went away
    assert not health.available
    health.succeeded(health.outages)
    assert health.available


def test_a_store_that_never_answered_leaves_reporting_to_start_up(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="server.store")
    health = StoreHealth(clock=clock)
    health.failed("database does not exist")
    assert not health.available
    assert logged(caplog) == []


async def test_changed_wakes_waiters_on_each_flip(health: StoreHealth) -> None:
    async with asyncio.timeout(5):
        waiter = asyncio.create_task(health.changed())
        await asyncio.sleep(0)
        assert not waiter.done()
        health.failed("gone")
        await waiter
        waiter = asyncio.create_task(health.changed())
        await asyncio.sleep(0)
        health.failed("still gone")  # no flip
        await asyncio.sleep(0)
        assert not waiter.done()
        health.succeeded()
        await waiter
