"""Engine rules, with the in-memory store and a fake clock: no network, no database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from server.engine import Engine, EngineConfig, Session, SessionLimits
from server.engine.errors import InvalidArgument, NotFound, Unavailable
from server.engine.events import (
    Closed,
    CloseReason,
    ConnectionEstablished,
    Delivery,
    ErrorEvent,
    Event,
    Heartbeat,
    MarkedRead,
    MarkRead,
    Ping,
    Pong,
    Subscribe,
    SubscriptionUpdated,
    UnknownCommand,
    Unsubscribe,
)
from server.engine.models import Content, NewNotification, Notification
from server.store.memory import MemoryStore
from tests.engine.fakes import FakeClock, pending, take

pytestmark = pytest.mark.timeout(10)


def note(
    user: str, type_: str = "t", title: str = "hello", key: str | None = None
) -> NewNotification:
    return NewNotification(user, Content(type=type_, title=title), idempotency_key=key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_engine(clock: FakeClock) -> AsyncIterator[Callable[..., asyncio.Future[Engine]]]:
    engines: list[Engine] = []

    async def make(**overrides: object) -> Engine:
        session = overrides.pop("session", SessionLimits(heartbeat_interval=3600))
        config = EngineConfig(node_id="n1", session=session, **overrides)  # type: ignore[arg-type]
        engine = Engine(MemoryStore(), config, clock)
        await engine.start()
        engines.append(engine)
        return engine

    yield make  # type: ignore[misc]
    for engine in engines:
        await engine.stop()


@pytest.fixture
async def engine(make_engine: Callable[..., asyncio.Future[Engine]]) -> Engine:
    return await make_engine()


def delivered(events: list[Event]) -> list[Notification]:
    return [e.notification for e in events if isinstance(e, Delivery)]


def hang_up(session: Session) -> None:
    """The client went away; the last event the transport took was not written."""
    session.close(CloseReason.CLIENT_GONE)


async def finish(session: Session) -> None:
    """The transport wrote everything it took (and asked for more), then the client left."""
    waiter = asyncio.ensure_future(anext(session))
    await asyncio.sleep(0)
    session.close(CloseReason.CLIENT_GONE)
    assert await waiter == Closed(CloseReason.CLIENT_GONE)


async def test_greeting_comes_first_with_empty_backlog(engine: Engine) -> None:
    session = await engine.connect("u1")
    (hello,) = await take(session, 1)
    assert isinstance(hello, ConnectionEstablished)
    assert hello.user_id == "u1" and hello.queued == 0 and not hello.truncated
    assert hello.connection_id.startswith("n1-")


async def test_live_delivery_reaches_every_session_of_the_user_only(engine: Engine) -> None:
    a1, a2, b = [await engine.connect(u) for u in ("a", "a", "b")]
    for s in (a1, a2, b):
        await take(s, 1)
    created = await engine.create(note("a"))
    for s in (a1, a2):
        (event,) = await take(s, 1)
        assert isinstance(event, Delivery) and event.notification == created.notification
    assert pending(b) == 0


async def test_offline_queue_keeps_newest_100_in_order_then_empties(engine: Engine) -> None:
    ids = [(await engine.create(note("u", title=f"n{i}"))).notification.id for i in range(105)]
    stats = await engine.stats()
    assert stats.queued == 100 and stats.dropped == 5

    session = await engine.connect("u")
    events = await take(session, 101)
    hello = events[0]
    assert isinstance(hello, ConnectionEstablished)
    assert hello.queued == 100 and hello.truncated
    assert [n.id for n in delivered(events)] == ids[5:]
    await finish(session)

    again = await engine.connect("u")
    (hello,) = await take(again, 1)
    assert isinstance(hello, ConnectionEstablished)
    assert hello.queued == 0 and not hello.truncated
    assert (await engine.stats()).queued == 0


async def test_queue_cap_is_configurable(
    make_engine: Callable[..., asyncio.Future[Engine]],
) -> None:
    engine = await make_engine(max_offline_queue=3)
    for i in range(5):
        await engine.create(note("u", title=str(i)))
    session = await engine.connect("u")
    events = await take(session, 4)
    assert [n.title for n in delivered(events)] == ["2", "3", "4"]


async def test_undelivered_backlog_stays_queued(engine: Engine) -> None:
    for i in range(3):
        await engine.create(note("u", title=str(i)))
    session = await engine.connect("u")
    await take(session, 3)  # greeting, "0" (written: its successor was asked for), "1"
    hang_up(session)  # "1" was taken but never confirmed as written
    again = await engine.connect("u")
    events = await take(again, 3)
    assert isinstance(events[0], ConnectionEstablished) and events[0].queued == 2
    assert [n.title for n in delivered(events)] == ["1", "2"]


async def test_resume_with_since_replays_what_was_already_delivered(engine: Engine) -> None:
    session = await engine.connect("u")
    await take(session, 1)
    ids = [(await engine.create(note("u"))).notification.id for _ in range(4)]
    await take(session, 4)
    hang_up(session)

    resumed = await engine.connect("u", since=ids[1])
    events = await take(resumed, 3)
    assert isinstance(events[0], ConnectionEstablished) and events[0].queued == 2
    assert [n.id for n in delivered(events)] == ids[2:]


async def test_resume_and_queue_merge_without_duplicates(engine: Engine) -> None:
    first = [(await engine.create(note("u"))).notification.id for _ in range(3)]
    session = await engine.connect("u", since=0)
    events = await take(session, 4)
    assert isinstance(events[0], ConnectionEstablished) and events[0].queued == 3
    assert [n.id for n in delivered(events)] == first


async def test_resume_is_capped_and_says_truncated(
    make_engine: Callable[..., asyncio.Future[Engine]],
) -> None:
    engine = await make_engine(max_offline_queue=5)
    session = await engine.connect("u")
    await take(session, 1)
    ids = [(await engine.create(note("u"))).notification.id for _ in range(8)]
    await take(session, 8)
    hang_up(session)
    resumed = await engine.connect("u", since=0)
    events = await take(resumed, 6)
    hello = events[0]
    assert isinstance(hello, ConnectionEstablished) and hello.truncated and hello.queued == 5
    assert [n.id for n in delivered(events)] == ids[3:]


async def test_concurrent_creates_during_connect_arrive_in_order_without_gaps(
    engine: Engine,
) -> None:
    async def produce() -> list[int]:
        ids = []
        for _ in range(200):
            ids.append((await engine.create(note("u"))).notification.id)
            await asyncio.sleep(0)
        return ids

    producer = asyncio.create_task(produce())
    await asyncio.sleep(0)
    sessions = []
    for _ in range(5):  # several connects interleaved with the producer
        sessions.append(await engine.connect("u", since=0))
        await asyncio.sleep(0)
    ids = await producer
    for session in sessions:
        events = await take(session, 1)
        hello = events[0]
        assert isinstance(hello, ConnectionEstablished)
        got: list[int] = []
        while pending(session):
            event = await anext(session)
            if isinstance(event, Delivery):
                got.append(event.notification.id)
        assert got == sorted(set(got)), "strictly increasing, no duplicate"
        assert got == ids[-len(got) :], "no gap up to the newest"
        assert len(got) >= 100 or got[0] == ids[0]


async def test_filter_applies_to_replay_and_live(engine: Engine) -> None:
    await engine.create(note("u", type_="a"))
    await engine.create(note("u", type_="b"))
    session = await engine.connect("u", types=["a"])
    events = await take(session, 2)
    assert [n.type for n in delivered(events)] == ["a"]
    await engine.create(note("u", type_="b"))
    await engine.create(note("u", type_="a"))
    (event,) = await take(session, 1)
    assert isinstance(event, Delivery) and event.notification.type == "a"
    assert pending(session) == 0


async def test_subscribe_and_unsubscribe_answer_with_the_new_filter(engine: Engine) -> None:
    session = await engine.connect("u")
    await take(session, 1)
    await session.handle(Unsubscribe(("x",)))
    await session.handle(Subscribe(("a",)))
    await session.handle(Subscribe(("b",)))
    await session.handle(Unsubscribe(("a", "b")))
    events = await take(session, 4)
    filters = [e.type_filter for e in events if isinstance(e, SubscriptionUpdated)]
    assert [(f.only, f.excluded) for f in filters] == [
        (None, {"x"}),
        ({"a"}, frozenset()),
        ({"a", "b"}, frozenset()),
        (frozenset(), frozenset()),
    ]
    await engine.create(note("u", type_="a"))
    await asyncio.sleep(0)
    assert pending(session) == 0, "an empty 'only' list receives nothing"


async def test_one_session_changing_its_filter_leaves_the_others_receiving_everything(
    engine: Engine,
) -> None:
    """Sessions that named no types share one "every type" filter value: a change makes
    the changing session a filter of its own and no other."""
    changed, other, same_user = [await engine.connect(u) for u in ("a", "b", "a")]
    for s in (changed, other, same_user):
        await take(s, 1)
    await changed.handle(Unsubscribe(("x",)))
    await changed.handle(Subscribe(("y",)))
    await take(changed, 2)
    assert other.type_filter.is_everything and same_user.type_filter.is_everything
    for user in ("a", "b"):
        await engine.create(note(user, type_="x"))
    (got_other,) = await take(other, 1)
    (got_same,) = await take(same_user, 1)
    assert isinstance(got_other, Delivery) and got_other.notification.type == "x"
    assert isinstance(got_same, Delivery) and got_same.notification.type == "x"
    assert pending(changed) == 0
    assert (await engine.connect("c")).type_filter.is_everything, "and a new session too"


async def test_ping_pong_and_unknown_and_invalid_messages(engine: Engine) -> None:
    session = await engine.connect("u")
    await take(session, 1)
    await session.handle(Ping())
    await session.handle(UnknownCommand("shout"))
    await session.handle(Subscribe(("",)))
    await session.handle(MarkRead(0))
    pong, unknown, bad_types, bad_id = await take(session, 4)
    assert isinstance(pong, Pong)
    assert isinstance(unknown, ErrorEvent) and unknown.code == "unknown_message_type"
    assert isinstance(bad_types, ErrorEvent) and bad_types.code == "invalid_message"
    assert isinstance(bad_id, ErrorEvent) and bad_id.code == "invalid_message"


async def test_mark_read_reaches_every_session_and_hides_other_users(engine: Engine) -> None:
    mine = (await engine.create(note("u"))).notification
    theirs = (await engine.create(note("v"))).notification
    s1, s2 = await engine.connect("u"), await engine.connect("u")
    await take(s1, 2)
    await take(s2, 2)
    await s1.handle(MarkRead(mine.id))
    for s in (s1, s2):
        (event,) = await take(s, 1)
        assert event == MarkedRead(mine.id)
    await s1.handle(MarkRead(theirs.id))
    await s1.handle(MarkRead(999_999))
    other, missing = await take(s1, 2)
    assert isinstance(other, ErrorEvent) and isinstance(missing, ErrorEvent)
    assert other.code == missing.code == "not_found"
    assert other.message.replace(str(theirs.id), "#") == missing.message.replace("999999", "#")
    with pytest.raises(NotFound):
        await engine.mark_read("u", theirs.id)
    assert (await engine.unread_count("u")) == 0
    assert (await engine.unread_count("v")) == 1


async def test_client_rate_limit(
    make_engine: Callable[..., asyncio.Future[Engine]], clock: FakeClock
) -> None:
    engine = await make_engine(session=SessionLimits(heartbeat_interval=3600, max_rate=5))
    session = await engine.connect("u")
    await take(session, 1)
    for _ in range(12):  # burst is twice the rate
        await session.handle(Ping())
    events = await take(session, 12)
    assert sum(isinstance(e, Pong) for e in events) == 10
    assert [e.code for e in events if isinstance(e, ErrorEvent)] == ["rate_limited"] * 2
    clock.advance(1.0)
    await session.handle(Ping())
    (event,) = await take(session, 1)
    assert isinstance(event, Pong)


async def test_slow_session_is_closed_and_keeps_its_queue(
    make_engine: Callable[..., asyncio.Future[Engine]],
) -> None:
    engine = await make_engine(session=SessionLimits(heartbeat_interval=3600, max_buffer=10))
    session = await engine.connect("u")
    await take(session, 1)
    ids = [(await engine.create(note("u"))).notification.id for _ in range(15)]
    assert session.closed
    (event,) = await take(session, 1)
    assert event == Closed(CloseReason.SLOW, "the client did not keep up")
    assert (await engine.status("u")).connection_count == 0
    again = await engine.connect("u")
    events = await take(again, 16)
    assert [n.id for n in delivered(events)] == ids


async def test_heartbeat_at_the_configured_interval(
    make_engine: Callable[..., asyncio.Future[Engine]], clock: FakeClock
) -> None:
    engine = await make_engine(session=SessionLimits(heartbeat_interval=0.05))
    session = await engine.connect("u")
    (hello,) = await take(session, 1)
    assert pending(session) == 0
    clock.advance(0.11)
    beat1, beat2 = await take(session, 2, timeout=1.0)
    assert isinstance(hello, ConnectionEstablished) and hello.heartbeat_interval == 0.05
    assert isinstance(beat1, Heartbeat) and isinstance(beat2, Heartbeat)


async def test_broadcast_to_list_and_to_everyone_known(engine: Engine) -> None:
    await engine.create(note("a"))
    listener = await engine.connect("c")
    await take(listener, 1)
    assert await engine.broadcast(Content(type="news", title="hi"), ["a", "b", "b"]) == 2
    assert await engine.broadcast(Content(type="news", title="all"), None) == 3
    events = await take(listener, 1)
    assert [n.title for n in delivered(events)] == ["all"]
    page = await engine.list_notifications("b")
    assert [n.title for n in page.notifications] == ["all", "hi"]


async def test_idempotent_create_returns_the_first(engine: Engine) -> None:
    first = await engine.create(note("u", key="k1"))
    again = await engine.create(note("u", title="changed", key="k1"))
    other_user = await engine.create(note("v", key="k1"))
    assert first.created and not again.created and other_user.created
    assert again.notification == first.notification
    assert (await engine.list_notifications("u")).notifications == [first.notification]


async def test_disconnect_closes_every_session_of_the_user(engine: Engine) -> None:
    s1, s2, other = [await engine.connect(u) for u in ("u", "u", "v")]
    assert await engine.disconnect("u") == 2
    for s in (s1, s2):
        (event,) = await take(s, 1)  # pending events are dropped; the close comes next
        assert event == Closed(CloseReason.DISCONNECTED, "disconnected by an operator")
    assert not other.closed
    assert (await engine.status("u")).connection_count == 0
    assert (await engine.status("v")).connected


async def test_stats_count_sessions_and_written_notifications(engine: Engine) -> None:
    s = await engine.connect("u")
    await engine.connect("u")
    await engine.connect("v")
    await take(s, 1)
    await engine.create(note("u"))
    await take(s, 1)
    stats = await engine.stats()
    assert (stats.total_connections, stats.unique_users) == (3, 2)
    assert stats.messages_sent == 0, "taken but not yet written"
    await finish(s)
    stats = await engine.stats()
    assert stats.messages_sent == 1
    assert (stats.total_connections, stats.unique_users) == (2, 2)


async def test_bad_input_changes_nothing(engine: Engine) -> None:
    with pytest.raises(InvalidArgument) as err:
        await engine.connect("")
    assert err.value.field == "user_id"
    with pytest.raises(InvalidArgument):
        await engine.connect("u", since=-1)
    with pytest.raises(InvalidArgument):
        await engine.broadcast(Content(type="t", title="x"), ["ok", ""])
    with pytest.raises(InvalidArgument):
        await engine.list_notifications("u", limit=0)
    assert await engine.list_notifications("ok") == await engine.list_notifications("nobody")
    for bad in (
        {"type": "", "title": "x"},
        {"type": "t" * 65, "title": "x"},
        {"type": "t", "title": ""},
        {"type": "t", "title": "x" * 201},
        {"type": "t", "title": "x", "message": "m" * 4001},
        {"type": "t", "title": "x", "data_json": "[1]"},
        {"type": "t", "title": "x", "data_json": "{"},
    ):
        with pytest.raises(InvalidArgument):
            Content(**bad)  # type: ignore[arg-type]


async def test_stopped_engine_refuses_work(clock: FakeClock) -> None:
    engine = Engine(MemoryStore(), EngineConfig(node_id="x"), clock)
    await engine.start()
    session = await engine.connect("u")
    await engine.stop()
    (event,) = await take(session, 1)
    assert event == Closed(CloseReason.SHUTDOWN, "the server is shutting down")
    with pytest.raises(Unavailable):
        await engine.create(note("u"))
