"""Cluster rules with two engines in one process: a shared store, an in-memory broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from server.broker.memory import MemoryBroker
from server.cluster import Cluster
from server.engine import Engine, EngineConfig, Session, SessionLimits
from server.engine.events import Closed, CloseReason, ConnectionEstablished, Delivery, MarkedRead
from server.engine.models import Content, NewNotification
from server.store.memory import MemoryStore
from tests.engine.fakes import take
from tests.waiting import until

pytestmark = pytest.mark.timeout(20)

TICK = 0.05


class Pair:
    """Nodes ``a`` and ``b`` on one store and one bus."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.bus = uuid.uuid4().hex
        self.nodes: dict[str, tuple[Engine, Cluster, MemoryBroker]] = {}

    async def add(self, name: str) -> Engine:
        broker = MemoryBroker(self.bus)
        config = EngineConfig(node_id=name, session=SessionLimits(heartbeat_interval=3600))
        cluster = Cluster(broker, name, heartbeat_interval=TICK, expiry=4 * TICK)
        engine = Engine(self.store, config, peers=cluster)
        await engine.start()
        cluster.attach(engine)
        await cluster.start()
        self.nodes[name] = (engine, cluster, broker)
        return engine

    def engine(self, name: str) -> Engine:
        return self.nodes[name][0]

    def broker(self, name: str) -> MemoryBroker:
        return self.nodes[name][2]

    async def stop(self, name: str, *, gracefully: bool = True) -> None:
        engine, cluster, broker = self.nodes.pop(name)
        if gracefully:
            await cluster.stop()
        else:  # like SIGKILL: no goodbye, the broker just goes quiet
            broker.cut()
            for task in cluster._tasks:
                task.cancel()
        await engine.stop()


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    p = Pair()
    await p.add("a")
    await p.add("b")
    yield p
    for name in list(p.nodes):
        await p.stop(name)


def note(user: str, title: str = "hi") -> NewNotification:
    return NewNotification(user, Content(type="t", title=title))


async def connected(engine: Engine, user: str) -> Session:
    session = await engine.connect(user)
    (hello,) = await take(session, 1)
    assert isinstance(hello, ConnectionEstablished)
    return session


async def seen(engine: Engine, user: str, count: int) -> None:
    async def check() -> bool:
        return (await engine.status(user)).connection_count == count

    await until(check)


async def test_created_on_a_reaches_a_session_on_b(pair: Pair) -> None:
    session = await connected(pair.engine("b"), "u")
    made = (await pair.engine("a").create(note("u"))).notification
    (event,) = await take(session, 1)
    assert isinstance(event, Delivery)
    assert event.notification == made


async def test_one_user_on_both_nodes_and_mark_read_crosses(pair: Pair) -> None:
    on_a = await connected(pair.engine("a"), "u")
    on_b = await connected(pair.engine("b"), "u")
    made = (await pair.engine("a").create(note("u"))).notification
    for s in (on_a, on_b):
        (event,) = await take(s, 1)
        assert isinstance(event, Delivery)
    await pair.engine("a").mark_read("u", made.id)
    for s in (on_a, on_b):
        assert await take(s, 1) == [MarkedRead(made.id)]


async def test_presence_status_stats_and_disconnect_across_nodes(pair: Pair) -> None:
    a, b = pair.engine("a"), pair.engine("b")
    on_b = await connected(b, "u")
    await connected(b, "v")
    await connected(a, "v")
    await seen(a, "u", 1)
    await seen(a, "v", 2)
    stats = await a.stats()
    assert (stats.total_connections, stats.unique_users) == (3, 2)
    assert sorted(n.node_id for n in stats.nodes) == ["a", "b"]

    assert await a.disconnect("u") == 1
    assert await take(on_b, 1) == [Closed(CloseReason.DISCONNECTED, "disconnected by an operator")]
    await seen(a, "u", 0)


async def test_offline_user_is_queued_once_and_gets_it_anywhere(pair: Pair) -> None:
    a, b = pair.engine("a"), pair.engine("b")
    made = [(await a.create(note("off", str(i)))).notification.id for i in range(3)]
    assert (await b.stats()).queued == 3
    session = await b.connect("off")
    events = await take(session, 4)
    assert [e.notification.id for e in events if isinstance(e, Delivery)] == made


async def test_a_cut_broker_loses_nothing_and_heals(pair: Pair) -> None:
    a, b = pair.engine("a"), pair.engine("b")
    session = await connected(b, "u")
    pair.broker("b").cut()
    during = [(await a.create(note("u", str(i)))).notification.id for i in range(5)]
    events = await take(session, 5)  # the store catch-up tick delivers them anyway
    assert [e.notification.id for e in events if isinstance(e, Delivery)] == during
    pair.broker("b").restore()
    after = (await a.create(note("u", "after"))).notification.id
    (event,) = await take(session, 1)
    assert isinstance(event, Delivery)
    assert event.notification.id == after
    await seen(a, "u", 1)


async def test_a_silent_node_is_forgotten(pair: Pair) -> None:
    a, b = pair.engine("a"), pair.engine("b")
    await connected(b, "ghost")
    await seen(a, "ghost", 1)
    await pair.stop("b", gracefully=False)
    await seen(a, "ghost", 0)
    assert [n.node_id for n in (await a.stats()).nodes] == ["a"]


async def test_a_node_joining_late_learns_who_is_where(pair: Pair) -> None:
    await connected(pair.engine("a"), "early")
    late = await pair.add("c")
    await seen(late, "early", 1)


Factory = Callable[[str], Awaitable[Engine]]
