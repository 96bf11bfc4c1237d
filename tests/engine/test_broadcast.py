"""A broadcast to many users commits in slices and delivers each slice as it commits."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import UTC, datetime

import pytest

from server.engine import Engine, EngineConfig, Session, SessionLimits
from server.engine.errors import StoreUnavailable
from server.engine.events import ConnectionEstablished, Delivery, Ping, Pong
from server.engine.models import Content, NewNotification
from server.engine.store import CreateResult, Turn
from server.store.memory import MemoryStore
from tests.engine.fakes import FakeClock, take

pytestmark = pytest.mark.timeout(10)

USERS = [f"u{i}" for i in range(10)]


class GatedStore(MemoryStore):
    """Records the size of every create called and of every create committed; holds the
    ``hold``-th until ``release`` is set, or fails it when ``fail`` is set."""

    def __init__(self, hold: int) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.committed: list[int] = []
        self.hold = hold
        self.fail = False
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.called = asyncio.Condition()

    async def calls(self, n: int) -> None:
        """Wait until ``create`` has been called ``n`` times."""
        async with self.called:
            await self.called.wait_for(lambda: len(self.sizes) >= n)

    async def create(
        self,
        items: Sequence[NewNotification],
        *,
        now: datetime,
        queue_cap: int,
        offline: Callable[[str], bool],
        delivered: Collection[int] = (),
        turn: Turn | None = None,
    ) -> CreateResult:
        self.sizes.append(len(items))
        async with self.called:
            self.called.notify_all()
        if len(self.sizes) == self.hold:
            self.holding.set()
            await self.release.wait()
            if self.fail:
                raise StoreUnavailable("the database went away")
        result = await super().create(
            items, now=now, queue_cap=queue_cap, offline=offline, delivered=delivered, turn=turn
        )
        self.committed.append(len(items))
        return result


@pytest.fixture
async def gated() -> AsyncIterator[tuple[Engine, GatedStore]]:
    # The users become known with one create (call 1); the broadcast's second slice is
    # call 3: it waits until the test releases it.
    store = GatedStore(hold=3)
    config = EngineConfig(
        node_id="n1", session=SessionLimits(heartbeat_interval=3600), broadcast_slice=4
    )
    engine = Engine(store, config, FakeClock())
    await engine.start()
    await engine.create_many([NewNotification(u, Content(type="t", title="hi")) for u in USERS])
    try:
        yield engine, store
    finally:
        store.release.set()
        await engine.stop()


async def connected(engine: Engine, user: str) -> Session:
    """A session of ``user`` that has taken its greeting and its replayed backlog."""
    session = await engine.connect(user)
    (hello,) = await take(session, 1)
    assert isinstance(hello, ConnectionEstablished)
    await take(session, hello.queued)
    return session


def titles(events: object) -> list[str]:
    assert isinstance(events, list)
    return [e.notification.title for e in events if isinstance(e, Delivery)]


async def test_a_large_broadcast_commits_in_slices_and_delivers_each_as_it_commits(
    gated: tuple[Engine, GatedStore],
) -> None:
    engine, store = gated
    # Known users, sorted: u0..u9, then "z-ops" (known by connecting): slices of 4.
    early, late, ops = [await connected(engine, u) for u in ("u1", "u9", "z-ops")]
    broadcast = asyncio.create_task(engine.broadcast(Content(type="news", title="all"), None))
    async with asyncio.timeout(2):
        await store.holding.wait()
    assert store.committed[1:] == [4], "the first slice committed; the second is being written"
    assert titles(await take(early, 1)) == ["all"], "delivered as its slice committed"
    await ops.handle(Ping())
    (pong,) = await take(ops, 1)
    assert isinstance(pong, Pong), "other sessions are answered while slices are written"
    assert not broadcast.done(), "the answer waits for every slice"

    store.release.set()
    assert await broadcast == len(USERS) + 1
    assert store.committed[1:] == [4, 4, 3]
    assert titles(await take(late, 1)) == ["all"]
    for user in [*USERS, "z-ops"]:
        page = await engine.list_notifications(user)
        assert [n.title for n in page.notifications].count("all") == 1, user
    ids = [(await engine.list_notifications(u)).notifications[0].id for u in USERS]
    assert ids == sorted(ids), "ids follow the order the slices were committed in"


async def test_a_broadcast_that_fails_midway_keeps_the_slices_committed_before(
    gated: tuple[Engine, GatedStore],
) -> None:
    engine, store = gated
    first = await connected(engine, "u0")
    broadcast = asyncio.create_task(engine.broadcast(Content(type="news", title="all"), None))
    async with asyncio.timeout(2):
        await store.holding.wait()
    store.fail = True
    store.release.set()
    with pytest.raises(StoreUnavailable):
        await broadcast
    assert titles(await take(first, 1)) == ["all"], "the committed slice was delivered"
    got = {
        u: [n.title for n in (await engine.list_notifications(u)).notifications].count("all")
        for u in USERS
    }
    assert got == {u: 1 if u in USERS[:4] else 0 for u in USERS}
    assert store.committed[1:] == [4], "nothing is committed after the slice that failed"


async def test_a_broadcast_within_one_slice_is_one_transaction(
    gated: tuple[Engine, GatedStore],
) -> None:
    engine, store = gated
    assert await engine.broadcast(Content(type="news", title="few"), USERS[:4]) == 4
    assert store.sizes[1:] == [4]


async def test_the_next_slice_is_under_way_while_one_is_written_and_commits_after_it(
    gated: tuple[Engine, GatedStore],
) -> None:
    engine, store = gated
    late = await connected(engine, "u9")
    broadcast = asyncio.create_task(engine.broadcast(Content(type="news", title="all"), None))
    async with asyncio.timeout(2):
        await store.holding.wait()
        await store.calls(4)  # the third slice's create began while the second is held
    assert store.committed[1:] == [4], "it waits for the one before it"
    assert [n.title for n in (await engine.list_notifications("u9")).notifications] == ["hi"]
    store.release.set()
    assert await broadcast == len(USERS)
    assert store.committed[1:] == [4, 4, 2]
    assert titles(await take(late, 1)) == ["all"]
    ids = [(await engine.list_notifications(u)).notifications[0].id for u in USERS]
    assert ids == sorted(ids), "ids follow the order of the slices"


async def test_a_create_queued_after_one_that_fails_is_not_committed() -> None:
    store = GatedStore(hold=1)
    engine = Engine(store, EngineConfig(node_id="n1"), FakeClock())
    await engine.start()
    try:
        writer = engine._writer
        one = writer.queue([NewNotification("a", Content(type="t", title="one"))])
        two = writer.queue([NewNotification("b", Content(type="t", title="two"))], after=one)
        other = writer.queue([NewNotification("c", Content(type="t", title="other"))])
        async with asyncio.timeout(2):
            await store.holding.wait()
        store.fail = True
        store.release.set()
        with pytest.raises(StoreUnavailable):
            await one.future
        with pytest.raises(StoreUnavailable):
            await two.future
        assert [o.created for o in await other.future] == [True], "not chained: committed"
        assert (await engine.list_notifications("b")).notifications == []
    finally:
        store.release.set()
        await engine.stop()


@pytest.mark.parametrize("recipients", [4, 10])  # one slice (grouped), three (under way)
async def test_a_finished_broadcast_keeps_none_of_its_slices_alive(recipients: int) -> None:
    # Once the writer waits again, nothing of the broadcast's slices (their items, rows,
    # outcomes) is referenced by it: after a broadcast to 100 000, the last slice stayed
    # alive until the next create came.
    config = EngineConfig(
        node_id="n1", session=SessionLimits(heartbeat_interval=3600), broadcast_slice=4
    )
    engine = Engine(MemoryStore(), config, FakeClock())
    await engine.start()
    try:
        content = Content(type="t", title="everyone")
        assert await engine.broadcast(content, USERS[:recipients]) == recipients
        gc.collect()
        alive = [o for o in gc.get_objects() if type(o) is NewNotification]
        assert [o for o in alive if o.content is content] == []
    finally:
        await engine.stop()


@pytest.mark.parametrize(
    "content",
    [
        Content(type="t", title="hi"),
        Content(type="t", title="hi", expires_at=datetime(2030, 1, 1, tzinfo=UTC)),
        Content(type="t", title="hi", ignore_mutes=True),
    ],
)
def test_a_broadcast_s_requests_are_those_made_one_by_one(content: Content) -> None:
    made = NewNotification.for_recipients(USERS, content)
    assert made == [NewNotification(u, content, user_id_checked=True) for u in USERS]
    assert [m.expires_at for m in made] == [content.expires_at] * len(USERS)
    assert {m.ignore_mutes for m in made} == {content.ignore_mutes}
    assert NewNotification.for_recipients([], content) == []


async def test_a_muted_type_is_not_delivered_by_a_broadcast(
    gated: tuple[Engine, GatedStore],
) -> None:
    engine, store = gated
    store.hold = 0  # nothing held
    muted, other = await engine.connect("u0"), await engine.connect("u1")
    await engine.update_preferences("u0", ["t"])
    await engine.broadcast(Content(type="t", title="muted"), ["u0", "u1"])
    await engine.broadcast(Content(type="t", title="loud", ignore_mutes=True), ["u0"])
    async with asyncio.timeout(5):
        got = [e async for e in _deliveries(muted, 1)]
        assert [d.notification.title for d in got] == ["loud"]
        got = [e async for e in _deliveries(other, 1)]
        assert [d.notification.title for d in got] == ["muted"]


async def _deliveries(session: Session, count: int) -> AsyncIterator[Delivery]:
    """The session's next ``count`` deliveries of the test's broadcasts (other events and
    the fixture's replayed ``hi`` skipped)."""
    seen = 0
    async for event in session:
        if isinstance(event, Delivery) and event.notification.title != "hi":
            yield event
            seen += 1
            if seen == count:
                return
