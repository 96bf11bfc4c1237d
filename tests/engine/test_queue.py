"""Offline queue rules: a row stays queued until a session takes it, and the cap counts
only rows nobody took (memory store, fake clock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import pytest

from server.engine import Engine, EngineConfig, Session, SessionLimits
from server.engine.events import Closed, CloseReason, ConnectionEstablished, Delivery, Event
from server.engine.models import Content, NewNotification
from server.engine.peers import LoneNode
from server.engine.store import CreateResult
from server.store.memory import MemoryStore
from tests.engine.fakes import FakeClock, take
from tests.waiting import until

pytestmark = pytest.mark.timeout(10)

#: Marks reach the store only when a test (or a connect, or a create) makes them.
NEVER = 3600.0

Make = Callable[..., Awaitable[Engine]]


def note(user: str, type_: str = "t", title: str = "n") -> NewNotification:
    return NewNotification(user, Content(type=type_, title=title))


@pytest.fixture
async def make_engine() -> AsyncIterator[Make]:
    engines: list[Engine] = []

    async def make(store: MemoryStore | None = None, **overrides: object) -> Engine:
        config = EngineConfig(
            node_id="n1",
            session=SessionLimits(heartbeat_interval=3600),
            **overrides,  # type: ignore[arg-type]
        )
        engine = Engine(store or MemoryStore(), config, FakeClock())
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop()


async def finish(session: Session) -> None:
    """The transport wrote everything it took (and asked for more), then the client left."""
    waiter = asyncio.ensure_future(anext(session))
    await asyncio.sleep(0)
    session.close(CloseReason.CLIENT_GONE)
    assert await waiter == Closed(CloseReason.CLIENT_GONE)


def hello_of(events: Sequence[Event]) -> ConnectionEstablished:
    assert isinstance(events[0], ConnectionEstablished)
    return events[0]


def titles(events: Sequence[Event]) -> list[str]:
    return [e.notification.title for e in events if isinstance(e, Delivery)]


async def test_truncated_reports_only_drops_since_the_last_connect(make_engine: Make) -> None:
    engine = await make_engine(max_offline_queue=5, delivery_flush_interval=NEVER)
    for i in range(8):
        await engine.create(note("u", title=f"old{i}"))
    first = await engine.connect("u")
    events = await take(first, 6)
    assert hello_of(events).truncated and hello_of(events).queued == 5  # 3 were dropped
    await finish(first)  # all 5 written; their marks not yet in the store
    for i in range(2):
        await engine.create(note("u", title=f"new{i}"))
    second = await engine.connect("u")
    events = await take(second, 3)
    hello = hello_of(events)
    assert (hello.queued, hello.truncated) == (2, False), "nothing was dropped since"
    assert titles(events) == ["new0", "new1"]
    assert (await engine.stats()).dropped == 3


class GatedStore(MemoryStore):
    """Holds a create's answer until ``release`` is set (the row is committed by then)."""

    def __init__(self) -> None:
        super().__init__()
        self.committed = asyncio.Event()
        self.release = asyncio.Event()

    async def create(
        self,
        items: Sequence[NewNotification],
        *,
        now: datetime,
        queue_cap: int,
        offline: Callable[[str], bool],
        **marks: Any,
    ) -> CreateResult:
        result = await super().create(items, now=now, queue_cap=queue_cap, offline=offline, **marks)
        self.committed.set()
        await self.release.wait()
        return result


async def test_a_session_closing_while_a_row_is_in_flight_leaves_it_queued(
    make_engine: Make,
) -> None:
    store = GatedStore()
    engine = await make_engine(store)
    session = await engine.connect("u")
    await take(session, 1)
    creating = asyncio.ensure_future(engine.create(note("u", title="in flight")))
    async with asyncio.timeout(2):
        await store.committed.wait()  # committed while the user looked online
    await finish(session)
    store.release.set()
    await creating
    again = await engine.connect("u")
    events = await take(again, 2)
    assert titles(events) == ["in flight"]


async def test_a_row_written_then_reported_undelivered_is_queued_again(make_engine: Make) -> None:
    engine = await make_engine()
    session = await engine.connect("u")
    await take(session, 1)
    made = (await engine.create(note("u", title="relayed"))).notification
    assert titles(await take(session, 1)) == ["relayed"]
    await finish(session)  # the engine wrote it to the transport...
    engine.undelivered([made.id])  # ...which could not pass it on (a bridge relay)
    again = await engine.connect("u")
    events = await take(again, 2)
    assert titles(events) == ["relayed"]


class RecordingPeers(LoneNode):
    """A cluster of one, which records when it is told a session left, and what was
    queued in the store at that moment."""

    def __init__(self, store: MemoryStore, *, elsewhere: int = 0) -> None:
        self._store = store
        self._elsewhere = elsewhere
        self.left: list[int] = []

    @property
    def clustered(self) -> bool:
        return True

    def sessions_elsewhere(self, user_id: str) -> int:
        return self._elsewhere

    def presence_changed(self, user_id: str, delta: int) -> None:
        if delta < 0:
            self.left.append(sum(len(q) for q in self._store._queued.values()))


async def test_peers_hear_of_a_departure_only_once_its_deliveries_are_recorded() -> None:
    store = MemoryStore()
    peers = RecordingPeers(store)
    engine = Engine(
        store,
        EngineConfig(node_id="n1", session=SessionLimits(heartbeat_interval=3600)),
        FakeClock(),
        peers=peers,
    )
    await engine.start()
    try:
        await engine.create(note("u"))  # queued: nobody is connected
        session = await engine.connect("u")
        assert titles(await take(session, 2)) == ["n"]
        await finish(session)
        assert engine.local_presence() == {"u": 1}, "still counted until peers are told"

        async def told() -> bool:
            return bool(peers.left)

        await until(told, within=2)
        assert peers.left == [0], "a peer must not cap the queue while the row is still in it"
        assert engine.local_presence() == {}
    finally:
        await engine.stop()


@pytest.mark.parametrize(("elsewhere", "queued"), [(0, 0), (1, 1)])
async def test_a_row_every_session_declines_is_queued_only_if_a_session_elsewhere_may_take_it(
    elsewhere: int, queued: int
) -> None:
    store = MemoryStore()
    config = EngineConfig(node_id="n1", session=SessionLimits(heartbeat_interval=3600))
    engine = Engine(store, config, FakeClock(), peers=RecordingPeers(store, elsewhere=elsewhere))
    await engine.start()
    try:
        session = await engine.connect("u", types=["a"])
        await take(session, 1)
        await engine.create(note("u", type_="b"))
        await engine.create(note("u", type_="a", title="taken"))
        assert titles(await take(session, 1)) == ["taken"]
        await finish(session)
        await engine.stop()  # records the queue marks
        assert await store.queued_count() == queued
    finally:
        await engine.stop()
