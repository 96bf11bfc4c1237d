"""A session ends with its token unless refreshed (server/engine/session.py), on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from server.engine import Engine, EngineConfig, Session, SessionLimits
from server.engine.events import (
    Closed,
    CloseReason,
    ConnectionEstablished,
    ErrorEvent,
    Event,
    Expiry,
    Ping,
    Pong,
    Refresh,
    TokenExpiring,
    TokenRefreshed,
)
from server.store.memory import MemoryStore
from tests.engine.fakes import FakeClock, pending, take

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(clock: FakeClock) -> AsyncIterator[Engine]:
    # Heartbeats far away: they must not mix into the events these tests read.
    config = EngineConfig(node_id="n", session=SessionLimits(heartbeat_interval=10_000))
    engine = Engine(MemoryStore(), config, clock)
    await engine.start()
    yield engine
    await engine.stop()


def expiry(clock: FakeClock, lifetime: float, *, age: float = 0.0, iat: bool = True) -> Expiry:
    """A token issued ``age`` seconds ago that lives ``lifetime`` seconds in all."""
    now = clock.now().timestamp()
    return Expiry(now - age + lifetime, now - age if iat else None)


async def connect(engine: Engine, token: Expiry | None) -> Session:
    session = await engine.connect("u", expiry=token)
    (hello,) = await take(session, 1)
    assert isinstance(hello, ConnectionEstablished)
    return session


async def drained(session: Session) -> list[Event]:
    return await take(session, pending(session) + (1 if session.closed else 0))


async def test_warned_a_tenth_of_the_lifetime_before_and_closed_at_exp(
    engine: Engine, clock: FakeClock
) -> None:
    token = expiry(clock, 60)
    session = await connect(engine, token)
    clock.advance(53.9)
    assert pending(session) == 0
    clock.advance(0.2)  # 6 s (a tenth of 60 s) before the end
    (warning,) = await drained(session)
    assert warning == TokenExpiring(clock.now() + timedelta(seconds=5.9))
    clock.advance(5.8)
    assert not session.closed
    clock.advance(0.2)
    assert await drained(session) == [Closed(CloseReason.TOKEN_EXPIRED, "the token has expired")]


async def test_the_warning_is_at_most_30_seconds_before(engine: Engine, clock: FakeClock) -> None:
    session = await connect(engine, expiry(clock, 3600, age=3000))  # 600 s left
    clock.advance(569.9)
    assert pending(session) == 0
    clock.advance(0.2)
    assert isinstance((await drained(session))[0], TokenExpiring)


async def test_without_iat_the_lifetime_counts_from_connect(
    engine: Engine, clock: FakeClock
) -> None:
    session = await connect(engine, expiry(clock, 20, iat=False))
    clock.advance(17.9)
    assert pending(session) == 0
    clock.advance(0.2)
    assert isinstance((await drained(session))[0], TokenExpiring)


async def test_a_refresh_for_the_same_user_moves_the_end(engine: Engine, clock: FakeClock) -> None:
    session = await connect(engine, expiry(clock, 10))
    clock.advance(9.5)
    assert isinstance((await drained(session))[0], TokenExpiring)
    fresh = expiry(clock, 10)
    await session.handle(Refresh("u", fresh))
    assert await drained(session) == [
        TokenRefreshed(clock.now() + timedelta(seconds=10)),
    ]
    clock.advance(5)  # well past the first token's end
    assert not session.closed
    clock.advance(4.1)
    assert isinstance((await drained(session))[0], TokenExpiring)
    clock.advance(1)
    assert session.close_reason is CloseReason.TOKEN_EXPIRED


async def test_a_bad_refresh_is_an_error_and_changes_nothing(
    engine: Engine, clock: FakeClock
) -> None:
    session = await connect(engine, expiry(clock, 10))
    await session.handle(Refresh(error="invalid token: Signature verification failed"))
    await session.handle(Ping())
    error, pong = await drained(session)
    assert error == ErrorEvent("unauthorized", "invalid token: Signature verification failed")
    assert isinstance(pong, Pong)
    clock.advance(10.1)
    assert session.close_reason is CloseReason.TOKEN_EXPIRED


async def test_a_refresh_for_another_user_closes_the_session(
    engine: Engine, clock: FakeClock
) -> None:
    session = await connect(engine, expiry(clock, 10))
    await session.handle(Refresh("someone-else", expiry(clock, 3600)))
    (closed,) = await drained(session)
    assert isinstance(closed, Closed) and closed.reason is CloseReason.UNAUTHORIZED
    assert (await engine.status("u")).connection_count == 0


async def test_insecure_sessions_never_expire(engine: Engine, clock: FakeClock) -> None:
    session = await connect(engine, None)
    clock.advance(9_000)  # longer than any test token here, shorter than a heartbeat
    assert pending(session) == 0 and not session.closed
    await session.handle(Refresh("u", None))
    assert await drained(session) == [TokenRefreshed(None)]


async def test_a_session_that_ends_first_leaves_no_timer(engine: Engine, clock: FakeClock) -> None:
    session = await connect(engine, expiry(clock, 10))
    session.close(CloseReason.CLIENT_GONE)
    await drained(session)
    clock.advance(20)
    assert pending(session) == 0
    assert session.close_reason is CloseReason.CLIENT_GONE
