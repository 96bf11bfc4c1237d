"""Pulling a session's events one at a time (``take``/``wait``), and what an idle one holds."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from server.engine import Engine, EngineConfig, SessionLimits
from server.engine.events import Closed, CloseReason, ConnectionEstablished, Delivery
from server.engine.models import Content, NewNotification
from server.store.memory import MemoryStore
from tests.engine.fakes import FakeClock

pytestmark = pytest.mark.timeout(20)


async def started() -> Engine:
    limits = SessionLimits(heartbeat_interval=3600)
    engine = Engine(MemoryStore(), EngineConfig(node_id="n1", session=limits), FakeClock())
    await engine.start()
    return engine


async def test_take_returns_events_in_order_then_none_and_wait_resolves_on_the_next() -> None:
    engine = await started()
    try:
        session = await engine.connect("u")
        assert isinstance(session.take(), ConnectionEstablished)
        assert session.take() is None
        waiter = session.wait()
        assert not waiter.done()
        first = await engine.create(NewNotification("u", Content(type="t", title="1")))
        second = await engine.create(NewNotification("u", Content(type="t", title="2")))
        await waiter
        taken = [session.take(), session.take()]
        assert all(isinstance(e, Delivery) for e in taken)
        ids = [e.notification.id for e in taken if isinstance(e, Delivery)]
        assert ids == [first.notification.id, second.notification.id]
        assert session.take() is None
        session.close(CloseReason.CLIENT_GONE)
        assert session.wait().done()  # closed: nothing to wait for
        closed = session.take()
        assert isinstance(closed, Closed) and closed.reason is CloseReason.CLIENT_GONE
        assert session.take() is None  # ``Closed`` comes once
        assert session.wait().done()
    finally:
        await engine.stop()


async def test_taking_the_next_confirms_the_one_before() -> None:
    engine = await started()
    try:
        session = await engine.connect("u")
        session.take()
        await engine.create(NewNotification("u", Content(type="t", title="1")))
        await session.wait()
        assert isinstance(session.take(), Delivery)
        assert engine.node_stats().messages_sent == 0  # taken, not yet written
        assert session.take() is None  # asking again: the one before was written
        assert engine.node_stats().messages_sent == 1
    finally:
        await engine.stop()


async def test_an_idle_session_holds_little_of_the_engine_heap() -> None:
    """Sessions sit idle for hours by the thousand: what the engine keeps for each one
    (the session, its empty outbox, its hub and heartbeat entries): 1 538 B before
    ``Session`` had slots and made its rate bucket, outbox list and taken list lazily."""
    engine = await started()
    n = 300
    try:
        for i in range(n):  # warm up: first-use allocations are not per session
            warm = await engine.connect(f"w{i}")
            await anext(warm)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            sessions = []
            for i in range(n):
                session = await engine.connect(f"u{i}")
                await anext(session)  # the greeting
                sessions.append(session)
            gc.collect()
            per_session = (tracemalloc.get_traced_memory()[0] - before) / n
        finally:
            tracemalloc.stop()
        assert per_session < 1200, f"{per_session:.0f} B per idle session"
    finally:
        await engine.stop()


async def test_draining_in_batches_takes_in_order_confirms_all_and_frees_the_byte_bound() -> None:
    """``drain`` takes the outbox in slices; what it took counts as written only once
    confirmed, and the bytes it held are free again (the session is not closed as slow
    for what it already handed over)."""
    limits = SessionLimits(heartbeat_interval=3600, max_buffer=10, max_buffer_bytes=4000)
    engine = Engine(MemoryStore(), EngineConfig(node_id="n1", session=limits), FakeClock())
    await engine.start()
    try:
        session = await engine.connect("u")
        assert isinstance(session.take(), ConnectionEstablished)
        for rounds in range(3):
            ids = []
            for i in range(8):  # ~8 x 460 bytes: close to the bound each round
                content = Content(type="t", title=f"{rounds}.{i}", message="m" * 300)
                created = await engine.create(NewNotification("u", content))
                ids.append(created.notification.id)
            first = session.drain(3)
            rest = session.drain(64)
            taken = [e.notification.id for e in (*first, *rest) if isinstance(e, Delivery)]
            assert taken == ids and len(first) == 3
            assert not session.waiting and not session.closed
            sent = engine.node_stats().messages_sent
            session.confirm()
            assert engine.node_stats().messages_sent == sent + 8
        session.close(CloseReason.CLIENT_GONE)
        assert session.drain(5) == [Closed(CloseReason.CLIENT_GONE)]
    finally:
        await engine.stop()
