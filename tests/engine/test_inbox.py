"""The engine's inbox rules (seen, mark all read, archive, delete, counts, mutes, expiry),
with the in-memory store and a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.engine import Engine, EngineConfig, Session, SessionLimits
from server.engine.errors import InvalidArgument, NotFound
from server.engine.events import (
    Archive,
    ConnectionEstablished,
    CountsEvent,
    Delete,
    Delivery,
    ErrorEvent,
    GetCounts,
    MarkAllRead,
    MarkSeen,
    NotificationArchived,
    NotificationDeleted,
    NotificationsMarkedRead,
    NotificationsSeen,
    NotificationUnarchived,
    Ping,
    Pong,
    PreferencesUpdated,
    Unarchive,
    UpdatePreferences,
)
from server.engine.models import (
    MUTED_TYPES_MAX,
    Content,
    Counts,
    InboxQuery,
    NewNotification,
    Preferences,
    Priority,
    Replay,
    TypeCounts,
    batch_item,
)
from server.store.memory import MemoryStore
from tests.engine.fakes import FakeClock, pending, take
from tests.waiting import until

pytestmark = pytest.mark.timeout(10)


def note(
    user: str = "u",
    type_: str = "t",
    *,
    expires_at: datetime | None = None,
    ignore_mutes: bool = False,
) -> NewNotification:
    return NewNotification(
        user, Content(type=type_, title="hi"), expires_at=expires_at, ignore_mutes=ignore_mutes
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def engine(clock: FakeClock, store: MemoryStore) -> AsyncIterator[Engine]:
    config = EngineConfig(node_id="n1", session=SessionLimits(heartbeat_interval=3600))
    engine = Engine(store, config, clock)
    await engine.start()
    yield engine
    await engine.stop()


async def connected(engine: Engine, user: str = "u") -> Session:
    session = await engine.connect(user)
    (hello,) = await take(session, 1)
    assert isinstance(hello, ConnectionEstablished)
    return session


async def made(engine: Engine, *items: NewNotification) -> list[int]:
    return [(await engine.create(i)).notification.id for i in items]


async def only_pong(session: Session) -> None:
    """Nothing else waits in the session: a ping is answered next."""
    await session.handle(Ping())
    (event,) = await take(session, 1)
    assert isinstance(event, Pong)


# --- validation -----------------------------------------------------------------------------


async def test_expires_at_must_be_aware_and_later_than_now(
    engine: Engine, clock: FakeClock
) -> None:
    with pytest.raises(InvalidArgument) as naive:
        Content(type="t", title="x", expires_at=datetime(2030, 1, 1))
    assert naive.value.field == "expires_at"
    for moment in (clock.now(), clock.now() - timedelta(seconds=1)):
        with pytest.raises(InvalidArgument) as past:
            await engine.create(note(expires_at=moment))
        assert past.value.field == "expires_at"
        with pytest.raises(InvalidArgument) as in_batch:
            await engine.create_many([note(), note(expires_at=moment)])
        assert in_batch.value.field == "notifications[1].expires_at"
        with pytest.raises(InvalidArgument) as broadcast:
            await engine.broadcast(Content(type="t", title="x", expires_at=moment), ["u"])
        assert broadcast.value.field == "expires_at"
    assert (await engine.list_notifications("u")).notifications == []


def test_a_notification_takes_expiry_and_mutes_from_its_content() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    item = NewNotification("u", Content(type="t", title="x", expires_at=at, ignore_mutes=True))
    assert (item.expires_at, item.ignore_mutes) == (at, True)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"types": ("",)}, "type"),
        ({"types": ("x" * 65,)}, "type"),
        ({"types": "abc"}, "type"),
        ({"priorities": ("soon",)}, "priority"),
        ({"created_after": datetime(2030, 1, 1)}, "created_after"),
        ({"created_before": "yesterday"}, "created_before"),
        ({"limit": 0}, "limit"),
        ({"before_id": 0}, "before_id"),
        ({"read": "yes"}, "read"),
        ({"seen": 1}, "seen"),
        ({"archived": None}, "archived"),
    ],
)
def test_a_bad_list_query_names_its_field(query: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as bad:
        InboxQuery(**query)  # type: ignore[arg-type]
    assert bad.value.field == field


def test_a_list_query_is_normalised() -> None:
    query = InboxQuery(types=("b", "a", "b"), priorities=("high", Priority.LOW), limit=10_000)  # type: ignore[arg-type]
    assert query.types == ("a", "b")
    assert set(query.priorities) == {Priority.HIGH, Priority.LOW}
    assert query.limit == 200


def test_preferences_are_sorted_unique_and_bounded() -> None:
    assert Preferences(("b", "a", "b")).muted_types == ("a", "b")
    for bad in (("",), ("x" * 65,), tuple(f"t{i}" for i in range(MUTED_TYPES_MAX + 1))):
        with pytest.raises(InvalidArgument) as error:
            Preferences(bad)
        assert error.value.field == "muted_types"
    assert len(Preferences(tuple(f"t{i}" for i in range(MUTED_TYPES_MAX))).muted_types) == 256
    with batch_item(0), pytest.raises(InvalidArgument):
        Preferences(("",))


async def test_bad_preferences_change_nothing(engine: Engine) -> None:
    await engine.update_preferences("u", ["a"])
    for bad in ("abc", ["a", ""], [f"t{i}" for i in range(300)]):
        with pytest.raises(InvalidArgument) as error:
            await engine.update_preferences("u", bad)
        assert error.value.field == "muted_types"
    assert await engine.preferences("u") == Preferences(("a",))


# --- seen, read all, archive, delete ----------------------------------------------------------


async def test_seen_and_read_all_tell_every_session_once(engine: Engine) -> None:
    ids = await made(engine, note(type_="a"), note(type_="b"), note(type_="a"))
    first, second = await connected(engine), await connected(engine)
    for session in (first, second):
        await take(session, 3)  # the replay
    mark = await engine.mark_seen("u", None)
    assert (mark.up_to_id, mark.changed) == (ids[2], 3)
    read = await engine.mark_all_read("u", "a", 0)
    assert (read.up_to_id, read.changed) == (ids[2], 2)
    for session in (first, second):
        events = await take(session, 2)
        assert events == [NotificationsSeen(ids[2]), NotificationsMarkedRead(ids[2], "a")]
        await only_pong(session)
    assert await engine.counts("u") == Counts(1, 0, {"b": TypeCounts(1, 0)})
    assert await engine.unread_count("u") == 1


async def test_archive_unarchive_delete_and_their_events(engine: Engine) -> None:
    ids = await made(engine, note(), note())
    session = await connected(engine)
    await take(session, 2)  # the replay
    archived = await engine.archive("u", ids[0])
    assert archived.archived
    assert [n.id for n in (await engine.list_notifications("u")).notifications] == [ids[1]]
    listed = await engine.list_notifications("u", InboxQuery(archived=True))
    assert [n.id for n in listed.notifications] == [ids[0]]
    assert (await engine.unarchive("u", ids[0])).archived_at is None
    await engine.delete("u", ids[1])
    assert await take(session, 3) == [
        NotificationArchived(ids[0]),
        NotificationUnarchived(ids[0]),
        NotificationDeleted(ids[1]),
    ]
    for call in (engine.delete("u", ids[1]), engine.archive("other", ids[0])):
        with pytest.raises(NotFound):
            await call
    await only_pong(session)


async def test_session_commands_are_answered_through_the_engine(engine: Engine) -> None:
    ids = await made(engine, note(type_="a"), note(type_="b"))
    session, other = await connected(engine), await connected(engine)
    await take(session, 2)
    await take(other, 2)
    await session.handle(MarkSeen(0))
    await session.handle(MarkAllRead("b", None))
    await session.handle(Archive(ids[0]))
    await session.handle(Unarchive(ids[0]))
    await session.handle(GetCounts())
    await session.handle(UpdatePreferences(("z", "b")))
    await session.handle(Delete(ids[1]))
    expected = [
        NotificationsSeen(ids[1]),
        NotificationsMarkedRead(ids[1], "b"),
        NotificationArchived(ids[0]),
        NotificationUnarchived(ids[0]),
    ]
    counts = Counts(1, 0, {"a": TypeCounts(1, 0)})
    tail = [PreferencesUpdated(("b", "z")), NotificationDeleted(ids[1])]
    assert await take(session, 7) == [*expected, CountsEvent(counts), *tail]
    assert await take(other, 6) == [*expected, *tail]  # counts go to the asker only
    await session.handle(Delete(ids[1]))
    await session.handle(Archive(0))
    await session.handle(MarkAllRead("", None))
    errors = await take(session, 3)
    assert [e.code for e in errors if isinstance(e, ErrorEvent)] == [
        "not_found",
        "invalid_message",
        "invalid_message",
    ]
    await only_pong(other)


# --- mutes ---------------------------------------------------------------------------------------


async def test_a_muted_type_is_stored_but_not_pushed_unless_it_ignores_mutes(
    engine: Engine,
) -> None:
    session = await connected(engine)
    await engine.update_preferences("u", ["m"])
    assert await take(session, 1) == [PreferencesUpdated(("m",))]
    ids = await made(engine, note(type_="m"), note(type_="m", ignore_mutes=True), note())
    events = await take(session, 2)
    assert [e.notification.id for e in events if isinstance(e, Delivery)] == ids[1:]
    await only_pong(session)
    listed = (await engine.list_notifications("u")).notifications
    assert [n.id for n in listed] == ids[::-1]
    counts = await engine.counts("u")
    assert (counts.unread, counts.by_type["m"].unread) == (2, 2)


async def test_a_muted_type_is_not_replayed_to_a_later_session(engine: Engine) -> None:
    await engine.update_preferences("u", ["m"])
    ids = await made(engine, note(type_="m"), note(type_="m", ignore_mutes=True), note())
    session = await engine.connect("u")
    hello, *replay = await take(session, 3)
    assert isinstance(hello, ConnectionEstablished)
    assert [e.notification.id for e in replay if isinstance(e, Delivery)] == ids[1:]
    assert pending(session) == 0


async def test_unmuting_applies_at_once(engine: Engine) -> None:
    await engine.update_preferences("u", ["m"])
    session = await connected(engine)
    await engine.update_preferences("u", [])
    (ids,) = [await made(engine, note(type_="m"))]
    events = await take(session, 2)
    assert events[0] == PreferencesUpdated(())
    assert isinstance(events[1], Delivery) and events[1].notification.id == ids[0]


# --- expiry ------------------------------------------------------------------------------------


async def test_an_expired_notification_is_never_replayed_listed_or_counted(
    engine: Engine, clock: FakeClock, store: MemoryStore
) -> None:
    ids = await made(engine, note(expires_at=clock.now() + timedelta(seconds=10)), note())
    assert (await engine.counts("u")).unread == 2
    clock.advance(10)
    assert [n.id for n in (await engine.list_notifications("u")).notifications] == [ids[1]]
    assert (await engine.counts("u")).unread == 1
    session = await engine.connect("u")
    _, replayed = await take(session, 2)
    assert isinstance(replayed, Delivery) and replayed.notification.id == ids[1]
    assert pending(session) == 0
    assert await engine.sweep_expired() == 1
    assert [n.id for n in await store.fetch(ids)] == [ids[1]]


async def test_a_session_declines_what_expired_before_it_was_offered(
    engine: Engine, clock: FakeClock
) -> None:
    session = await connected(engine)
    item = (await engine.create(note(expires_at=clock.now() + timedelta(seconds=1)))).notification
    assert session.admits(item)
    clock.advance(1)
    assert not session.admits(item)


async def test_the_sweep_runs_in_the_background(clock: FakeClock, store: MemoryStore) -> None:
    config = EngineConfig(node_id="n1", expiry_sweep_interval=0.01, expiry_sweep_batch=2)
    engine = Engine(store, config, clock)
    await engine.start()
    try:
        soon = clock.now() + timedelta(seconds=1)
        ids = await made(engine, *(note(expires_at=soon) for _ in range(5)), note())
        clock.advance(1)

        async def swept() -> bool:
            return [n.id for n in await store.fetch(ids)] == ids[-1:]

        await until(swept)
    finally:
        await engine.stop()


class CountingStore(MemoryStore):
    """The memory store, counting its calls and holding a replay at ``gate`` when set."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None
        self.replayed = asyncio.Event()

    async def preferences(self, user_id: str) -> Preferences:
        self.calls.append("preferences")
        return await super().preferences(user_id)

    async def replay(self, user_id: str, **kwargs: Any) -> Replay:
        self.calls.append("replay")
        replay = await super().replay(user_id, **kwargs)
        self.replayed.set()
        if self.gate is not None:
            await self.gate.wait()
        return replay


async def test_connect_reads_the_mutes_with_the_replay_in_one_store_call(
    clock: FakeClock,
) -> None:
    store = CountingStore()
    engine = Engine(store, EngineConfig(session=SessionLimits(heartbeat_interval=3600)), clock)
    await engine.start()
    try:
        await engine.update_preferences("u", ["m"])
        ids = await made(engine, note(type_="m"), note())
        store.calls.clear()
        session = await engine.connect("u")
        assert store.calls == ["replay"]
        _, replayed = await take(session, 2)
        assert isinstance(replayed, Delivery) and replayed.notification.id == ids[1]
        assert session.muted == {"m"}
    finally:
        await engine.stop()


async def test_a_mute_changed_while_connecting_wins_over_the_replays_read(
    clock: FakeClock,
) -> None:
    store = CountingStore()
    engine = Engine(store, EngineConfig(session=SessionLimits(heartbeat_interval=3600)), clock)
    await engine.start()
    try:
        store.gate = asyncio.Event()
        connecting = asyncio.create_task(engine.connect("u"))
        await store.replayed.wait()  # read: nothing muted
        await engine.update_preferences("u", ["m"])
        store.gate.set()
        session = await connecting
        assert session.muted == {"m"}
        await made(engine, note(type_="m"))
        events = await take(session, 2)  # the change and the greeting (no delivery)
        assert PreferencesUpdated(("m",)) in events
        assert any(isinstance(e, ConnectionEstablished) for e in events)
        await only_pong(session)
    finally:
        await engine.stop()
