"""What a hostile client can make a session hold or send is bounded (issue 12)."""

from __future__ import annotations

import pytest

from server.engine import Engine, EngineConfig, SessionLimits
from server.engine.errors import InvalidArgument
from server.engine.events import Closed, CloseReason, Delivery, ErrorEvent, Ping, Pong, Subscribe
from server.engine.filters import MAX_TYPE_BYTES, MAX_TYPES, TypeFilter
from server.engine.models import Content, NewNotification
from server.store.memory import MemoryStore
from tests.engine.fakes import FakeClock, take

pytestmark = pytest.mark.timeout(10)


def test_a_filter_list_is_bounded_in_types_and_bytes() -> None:
    full = TypeFilter.everything().subscribe(f"t{i}" for i in range(MAX_TYPES))
    with pytest.raises(InvalidArgument) as refused:
        full.subscribe(["one-more"])
    assert refused.value.field == "notification_types"
    assert full.subscribe(["t1"]) == full  # no growth: fine
    assert full.unsubscribe(["t1"]).subscribe(["new"]).only is not None
    with pytest.raises(InvalidArgument):
        TypeFilter.everything().unsubscribe(f"t{i}" for i in range(MAX_TYPES + 1))
    wide = ["é" * 64 + str(i) for i in range(MAX_TYPE_BYTES // 128 + 1)]  # 128+ bytes each
    with pytest.raises(InvalidArgument):
        TypeFilter.everything().subscribe(wide)


async def engine_with(clock: FakeClock, **limits: object) -> Engine:
    session = SessionLimits(heartbeat_interval=3600, **limits)  # type: ignore[arg-type]
    engine = Engine(MemoryStore(), EngineConfig(node_id="n1", session=session), clock)
    await engine.start()
    return engine


async def test_a_refused_subscribe_leaves_the_filter_as_it_was() -> None:
    engine = await engine_with(FakeClock())
    try:
        session = await engine.connect("u")
        await take(session, 1)
        await session.handle(Subscribe(tuple(f"t{i}" for i in range(MAX_TYPES + 1))))
        (event,) = await take(session, 1)
        assert isinstance(event, ErrorEvent) and event.code == "invalid_message"
        assert session.type_filter.is_everything
    finally:
        await engine.stop()


async def test_rejected_messages_count_against_the_rate_limit() -> None:
    engine = await engine_with(FakeClock(), max_rate=5)
    try:
        session = await engine.connect("u")
        await take(session, 1)
        for _ in range(12):  # burst is twice the rate
            session.reject("invalid_json", "the frame is not valid JSON")
        events = await take(session, 12)
        codes = [e.code for e in events if isinstance(e, ErrorEvent)]
        assert codes == ["invalid_json"] * 10 + ["rate_limited"] * 2
        await session.handle(Subscribe(("a",)))  # the bucket is empty for commands too
        (event,) = await take(session, 1)
        assert isinstance(event, ErrorEvent) and event.code == "rate_limited"
    finally:
        await engine.stop()


async def test_a_session_over_its_byte_bound_is_closed_as_slow_and_keeps_its_queue() -> None:
    engine = await engine_with(FakeClock(), max_buffer=1000, max_buffer_bytes=100_000)
    try:
        session = await engine.connect("u")
        await take(session, 1)
        big = Content(type="t", title="x", data_json='{"blob": "' + "x" * 30_000 + '"}')
        ids = [(await engine.create(NewNotification("u", big))).notification.id for _ in range(5)]
        assert session.closed  # 5 × 30 kB > 100 kB, though far fewer than 1000 messages
        (event,) = await take(session, 1)
        assert event == Closed(CloseReason.SLOW, "the client did not keep up")
        again = await engine.connect("u")
        events = await take(again, 6)
        assert [e.notification.id for e in events if isinstance(e, Delivery)] == ids
        await again.handle(Ping())
        assert isinstance((await take(again, 1))[0], Pong)
    finally:
        await engine.stop()
