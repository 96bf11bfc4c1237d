"""The ``Store`` contract (server/engine/store.py), checked on every implementation."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event, func, select
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from server.engine.errors import NotFound
from server.engine.filters import TypeFilter
from server.engine.models import (
    Content,
    InboxQuery,
    NewNotification,
    Notification,
    Page,
    Priority,
)
from server.store import CreateResult, MemoryStore, Store, open_store
from server.store.engines import make_engine, normalise_url
from server.store.migrate import current_revision, head_revision, upgrade
from server.store.postgres import PostgresStore, dsn
from server.store.sqlite import SqliteStore
from server.store.tables import contents as C
from server.store.tables import muted_types as M
from server.store.tables import notifications as N
from server.store.tables import users as U
from tests.store.conftest import Database, empty_database, migrated_store

NOW = datetime(2026, 11, 25, 22, 52, 7, 123000, tzinfo=UTC)
EVERYTHING = TypeFilter.everything()


def item(
    user: str = "u1", type_: str = "t", key: str | None = None, **content: Any
) -> NewNotification:
    return NewNotification(
        user, Content(type=type_, title=content.pop("title", "title"), **content), key
    )


async def create(
    store: Store,
    items: Sequence[NewNotification],
    *,
    cap: int = 100,
    offline: Callable[[str], bool] = lambda _user: True,
    now: datetime = NOW,
    delivered: Sequence[int] = (),
) -> CreateResult:
    return await store.create(items, now=now, queue_cap=cap, offline=offline, delivered=delivered)


async def inbox(store: Store, user: str, *, now: datetime = NOW, **query: Any) -> Page:
    return await store.inbox(user, InboxQuery(**query), now=now)


async def ids_of(store: Store, items: Sequence[NewNotification], **kw: Any) -> list[int]:
    result = await create(store, items, **kw)
    return [o.notification.id for o in result.outcomes]


async def replay_ids(
    store: Store,
    user: str = "u1",
    *,
    since: int | None = None,
    cap: int = 100,
    type_filter: TypeFilter = EVERYTHING,
) -> tuple[list[int], bool]:
    replay = await store.replay(user, since=since, cap=cap, type_filter=type_filter, now=NOW)
    return [n.id for n in replay.notifications], replay.truncated


# --- create ------------------------------------------------------------------------------


async def test_ids_follow_item_order_and_later_creates(store: Store) -> None:
    first = await ids_of(store, [item("a"), item("b"), item("a")])
    second = await ids_of(store, [item("b")])
    assert first == sorted(first)
    assert len(set(first)) == 3
    assert second[0] > first[-1]
    assert await store.last_id() == second[0]


async def test_created_rows_round_trip_exactly(store: Store) -> None:
    data = json.dumps({"n": 12345678901234567890, "f": 1.5, "deep": {"list": [1, "ü", None]}})
    new = item(
        "ü-1",
        "type.x",
        title="Tïtle ✓",
        message="line\nbreak 🎉",
        data_json=data,
        priority=Priority.URGENT,
    )
    (outcome,) = (await create(store, [new])).outcomes
    made = outcome.notification
    assert outcome.created
    assert made == Notification(
        id=made.id,
        user_id="ü-1",
        type="type.x",
        title="Tïtle ✓",
        message="line\nbreak 🎉",
        data_json=new.content.data_json,
        priority=Priority.URGENT,
        created_at=NOW,
    )
    assert await store.fetch([made.id]) == [made]
    (listed,) = (await inbox(store, "ü-1", limit=10)).notifications
    assert listed == made
    assert listed.created_at.utcoffset() == timedelta(0)
    assert json.loads(listed.data_json)["n"] == 12345678901234567890


async def test_empty_create_is_a_no_op(store: Store) -> None:
    result = await create(store, [])
    assert list(result.outcomes) == []
    assert result.dropped == {}
    assert await store.last_id() == 0


async def test_idempotent_retry_returns_the_first(store: Store) -> None:
    (first,) = (await create(store, [item(key="k", title="first")])).outcomes
    (again,) = (await create(store, [item(key="k", title="second")])).outcomes
    assert first.created
    assert not again.created
    assert again.notification == first.notification
    assert await store.last_id() == first.notification.id
    assert await store.queued_count() == 1


async def test_idempotency_within_one_batch(store: Store) -> None:
    outcomes = (
        await create(store, [item("a", key="k"), item("a", key="k"), item("b", key="k")])
    ).outcomes
    assert [o.created for o in outcomes] == [True, False, True]
    assert outcomes[1].notification == outcomes[0].notification
    assert outcomes[2].notification.id > outcomes[0].notification.id
    assert outcomes[2].notification.user_id == "b"


async def test_same_key_for_another_user_creates(store: Store) -> None:
    (a,) = (await create(store, [item("a", key="k")])).outcomes
    (b,) = (await create(store, [item("b", key="k")])).outcomes
    assert b.created
    assert b.notification.id != a.notification.id


async def test_queue_cap_drops_the_oldest_queued(store: Store) -> None:
    ids = await ids_of(store, [item("a"), item("a")], cap=3)
    result = await create(store, [item("a"), item("a"), item("a"), item("b")], cap=3)
    ids += [o.notification.id for o in result.outcomes[:3]]
    assert result.dropped == {"a": 2}
    assert await store.queued_count() == 4
    assert await replay_ids(store, "a") == (ids[2:], True)  # the drop says "truncated"
    assert await replay_ids(store, "a") == (ids[2:], False)  # ... once
    assert (await store.counts("a", now=NOW)).unread == 5  # dropped from the queue, not the inbox


async def test_drops_add_up_until_the_next_connect(store: Store) -> None:
    await create(store, [item("a")] * 3, cap=1)
    result = await create(store, [item("a")], cap=1)
    assert result.dropped == {"a": 1}
    ids, truncated = await replay_ids(store, "a")
    assert truncated
    assert len(ids) == 1


async def test_every_row_is_queued_and_only_offline_users_are_trimmed(store: Store) -> None:
    result = await create(
        store, [item("a")] * 3 + [item("b")] * 3, cap=1, offline=lambda u: u == "b"
    )
    assert result.dropped == {"b": 2}
    assert await store.queued_count() == 4  # an online user's rows wait for its sessions
    assert result.queued == {o.notification.id for o in result.outcomes}
    a_rows = [o.notification.id for o in result.outcomes if o.notification.user_id == "a"]
    ranged = await store.fetch_range(0, 2**62, 10)
    assert [queued for _, queued in ranged] == [True] * 3 + [False, False, True]
    assert await replay_ids(store, "a") == (a_rows, False)


async def test_delivered_rows_leave_the_queue_before_the_cap_counts(store: Store) -> None:
    ids = await ids_of(store, [item("a")] * 3 + [item("b")], cap=3)
    result = await create(store, [item("a")] * 2, cap=3, delivered=[ids[0], ids[1], ids[3], 10**6])
    assert result.dropped == {}, "a row a session took is no drop"
    assert await replay_ids(store, "b") == ([], False)
    new = [o.notification.id for o in result.outcomes]
    assert await replay_ids(store, "a") == ([ids[2], *new], False)


async def test_requeue_puts_rows_back_in_their_queues(store: Store) -> None:
    result = await create(store, [item("a")] * 3, offline=lambda _user: False)
    ids = [o.notification.id for o in result.outcomes]
    await store.dequeue(ids)
    assert await store.queued_count() == 0
    await store.requeue([ids[2], ids[0], 10**6])
    assert await store.queued_count() == 2
    assert await replay_ids(store, "a") == ([ids[0], ids[2]], False)


async def test_queue_marks_apply_to_exactly_the_ids_given(store: Store) -> None:
    """Marks come as runs of consecutive ids (a broadcast's) and scattered ones: each
    reaches its row and no other."""
    ids = await ids_of(store, [item("a")] * 12, offline=lambda _user: False)
    taken = [*ids[0:5], ids[6], *ids[8:10]]
    await store.dequeue(taken)
    assert await replay_ids(store, "a") == ([ids[5], ids[7], *ids[10:]], False)
    ids = await ids_of(store, [item("b")] * 12, offline=lambda _user: False)
    await store.dequeue(ids)
    await store.requeue([*ids[1:6], ids[7], ids[11]])
    assert await replay_ids(store, "b") == ([*ids[1:6], ids[7], ids[11]], False)


async def test_a_large_broadcast_is_one_call_and_few_statements(store: Store) -> None:
    users = [f"user-{i:05d}" for i in range(10_000)]
    statements = _count_statements(store)
    result = await create(store, [item(u, title="broadcast") for u in users], cap=100)
    ids = [o.notification.id for o in result.outcomes]
    assert all(o.created for o in result.outcomes)
    assert [o.notification.user_id for o in result.outcomes] == users
    assert ids == sorted(set(ids))
    assert result.dropped == {}
    assert await store.queued_count() == 10_000
    assert len(await store.known_users()) == 10_000
    if statements is not None:
        assert len(statements) <= 60, statements[:5]


# --- replay ------------------------------------------------------------------------------


async def test_replay_is_the_queue_oldest_first(store: Store) -> None:
    ids = await ids_of(store, [item("a"), item("b"), item("a")])
    assert await replay_ids(store, "a") == ([ids[0], ids[2]], False)
    assert await replay_ids(store, "nobody") == ([], False)


async def test_replay_without_since_is_the_queue(store: Store) -> None:
    ids = await ids_of(store, [item("a")] * 5)
    await store.dequeue(ids[:3])  # delivered: only the last two stay queued
    assert await replay_ids(store, "a") == (ids[3:], False)


async def test_replay_since_is_authoritative(store: Store) -> None:
    ids = await ids_of(store, [item("a")] * 5)
    await store.dequeue(ids[:3])
    assert await replay_ids(store, "a", since=ids[0]) == (ids[1:], False)
    assert await store.queued_count() == 2  # returned: still queued
    assert await replay_ids(store, "a", since=ids[-1]) == ([], False)
    assert await store.queued_count() == 0  # queued but not returned: cleared


async def test_queue_drops_do_not_truncate_a_resume(store: Store) -> None:
    ids = await ids_of(store, [item("a")] * 3, cap=1)
    assert await replay_ids(store, "a", since=0) == (ids, False)
    assert await replay_ids(store, "a") == ([ids[-1]], False)  # the drop count was reset


async def test_replay_cap_keeps_the_newest_and_clears_the_rest(store: Store) -> None:
    ids = await ids_of(store, [item("a")] * 5)
    assert await replay_ids(store, "a", cap=2) == (ids[3:], True)
    assert await store.queued_count() == 2
    assert await replay_ids(store, "a", cap=2) == (ids[3:], False)
    assert await replay_ids(store, "a", since=0, cap=2) == (ids[3:], True)


async def test_replay_cap_zero_returns_nothing(store: Store) -> None:
    await create(store, [item("a")])
    assert await replay_ids(store, "a", cap=0) == ([], True)
    assert await store.queued_count() == 0


async def test_returned_rows_stay_queued_until_dequeued(store: Store) -> None:
    ids = await ids_of(store, [item("a")] * 2)
    assert (await replay_ids(store, "a"))[0] == ids
    assert await store.queued_count() == 2
    assert (await replay_ids(store, "a"))[0] == ids
    await store.dequeue([*ids, 10**6])  # unknown ids are ignored
    assert await store.queued_count() == 0
    assert await replay_ids(store, "a") == ([], False)
    assert await replay_ids(store, "a", since=0) == (ids, False)  # still in the inbox


async def test_replay_applies_the_type_filter(store: Store) -> None:
    ids = await ids_of(store, [item("a", "x"), item("a", "y"), item("a", "z"), item("b", "y")])
    only_x_z = TypeFilter(only=frozenset({"x", "z"}))
    assert await replay_ids(store, "a", type_filter=only_x_z) == ([ids[0], ids[2]], False)
    assert await store.queued_count() == 3  # "y" left a's queue unreturned; b's stays
    not_x = EVERYTHING.unsubscribe(["x"])
    assert await replay_ids(store, "a", since=0, type_filter=not_x) == (ids[1:3], False)


async def test_replay_cap_counts_only_admitted_rows(store: Store) -> None:
    ids = await ids_of(store, [item("a", "x"), item("a", "y"), item("a", "y")])
    only_x = TypeFilter(only=frozenset({"x"}))
    assert await replay_ids(store, "a", cap=1, type_filter=only_x) == ([ids[0]], False)


async def test_replay_with_an_empty_only_filter_clears_the_queue(store: Store) -> None:
    await create(store, [item("a", "x"), item("a", "y")])
    nothing = TypeFilter(only=frozenset())
    assert await replay_ids(store, "a", since=0, type_filter=nothing) == ([], False)
    assert await store.queued_count() == 0


async def test_replay_registers_the_user(store: Store) -> None:
    await store.replay("z", since=None, cap=10, type_filter=EVERYTHING, now=NOW)
    assert await store.known_users() == ["z"]


# --- reads and read state ----------------------------------------------------------------


async def test_inbox_pages_newest_first(store: Store) -> None:
    ids = await ids_of(store, [item("a")] * 5 + [item("b")])
    first = await inbox(store, "a", unread_only=False, limit=2, before_id=None)
    assert [n.id for n in first.notifications] == [ids[4], ids[3]]
    assert first.has_more
    second = await inbox(store, "a", unread_only=False, limit=2, before_id=ids[3])
    assert [n.id for n in second.notifications] == [ids[2], ids[1]]
    assert second.has_more
    last = await inbox(store, "a", unread_only=False, limit=2, before_id=ids[1])
    assert [n.id for n in last.notifications] == [ids[0]]
    assert not last.has_more
    exact = await inbox(store, "a", unread_only=False, limit=5, before_id=None)
    assert len(exact.notifications) == 5
    assert not exact.has_more


async def test_inbox_unread_only_and_unread_count(store: Store) -> None:
    ids = await ids_of(store, [item("a")] * 4 + [item("b")])
    await store.mark_read("a", ids[3], NOW)
    await store.mark_read("a", ids[1], NOW)
    page = await inbox(store, "a", unread_only=True, limit=10, before_id=None)
    assert [n.id for n in page.notifications] == [ids[2], ids[0]]
    assert not page.has_more
    assert (await store.counts("a", now=NOW)).unread == 2
    assert (await store.counts("b", now=NOW)).unread == 1
    assert (await store.counts("nobody", now=NOW)).unread == 0


async def test_mark_read_is_idempotent(store: Store) -> None:
    (made,) = await ids_of(store, [item("a")])
    read = await store.mark_read("a", made, NOW)
    assert read.read_at == NOW
    assert read.read
    again = await store.mark_read("a", made, NOW + timedelta(minutes=5))
    assert again == read
    assert await store.fetch([made]) == [read]


async def test_mark_read_of_another_users_id_is_not_found(store: Store) -> None:
    (made,) = await ids_of(store, [item("a")])
    with pytest.raises(NotFound) as other:
        await store.mark_read("b", made, NOW)
    with pytest.raises(NotFound) as missing:
        await store.mark_read("a", made + 1000, NOW)
    assert str(other.value) == f"notification {made} not found"
    assert str(missing.value) == f"notification {made + 1000} not found"
    with pytest.raises(NotFound):
        await store.mark_read("a", 2**70, NOW)
    assert (await store.fetch([made]))[0].read_at is None


async def test_fetch_is_ascending_and_skips_missing(store: Store) -> None:
    ids = await ids_of(store, [item("a"), item("b"), item("c")])
    found = await store.fetch([ids[2], ids[0], ids[2], 10**6, 2**70])
    assert [n.id for n in found] == [ids[0], ids[2]]
    assert await store.fetch([]) == []


async def test_fetch_range_is_bounded_ascending_and_limited(store: Store) -> None:
    ids = await ids_of(store, [item("a"), item("b"), item("a"), item("c"), item("a")])
    found = await store.fetch_range(ids[0], ids[3], 10)
    assert [n.id for n, _ in found] == ids[1:4]
    assert [n.id for n, _ in await store.fetch_range(0, ids[-1], 2)] == ids[:2]
    assert await store.fetch_range(ids[-1], ids[-1] + 100, 10) == []
    assert await store.fetch_range(ids[3], ids[1], 10) == []


async def test_known_users_and_queued_count(store: Store) -> None:
    assert await store.known_users() == []
    assert await store.queued_count() == 0
    await create(store, [item("b"), item("a", key="k"), item("a", key="k"), item("B")])
    await store.replay("c", since=None, cap=10, type_filter=EVERYTHING, now=NOW)
    assert await store.known_users() == ["B", "a", "b", "c"]
    assert await store.queued_count() == 3


async def test_ping_and_last_id_on_empty(store: Store) -> None:
    await store.ping()
    assert await store.last_id() == 0


async def test_concurrent_stores_do_not_block_each_other(store: Store) -> None:
    """Creates and replays of many users at once all complete (no deadlock)."""
    users = [f"c{i}" for i in range(8)]

    async def churn(user: str) -> None:
        for _ in range(5):
            await create(store, [item(user), item(users[0])], cap=2)
            await replay_ids(store, user, cap=1)
            await replay_ids(store, users[0], cap=1)

    await asyncio.gather(*(churn(u) for u in users))
    assert len(await store.fetch_range(0, 2**62, 1_000)) == 80


# --- SQL only: migrations, engine settings, several processes ----------------------------


async def test_upgrade_twice_is_a_no_op(database: Database) -> None:
    await database.upgrade()
    async with migrated_store(database) as first:  # upgrades again
        await create(first, [item("a")])
    assert await current_revision(database.url, schema=database.schema) == head_revision()
    async with migrated_store(database) as second:
        assert [n.user_id for n, _ in await second.fetch_range(0, 2**62, 10)] == ["a"]


async def test_nodes_upgrading_together_take_turns(database: Database) -> None:
    await asyncio.gather(*(database.upgrade() for _ in range(4)))
    assert await current_revision(database.url, schema=database.schema) == head_revision()


@pytest.mark.parametrize("wal", [True, False], ids=["migrating", "switching-to-wal"])
async def test_a_sqlite_node_waits_for_another_nodes_long_migration(
    tmp_path: Path, wal: bool
) -> None:
    """Longer than a store's 5 s busy timeout: on a loaded machine migrations can be slow.
    Another node may hold the write lock (migrating) or, on a new file, the exclusive one
    (its first connection switching the file to WAL)."""
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if wal:
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("BEGIN IMMEDIATE")  # another node, migrating
    else:
        holder.execute("BEGIN EXCLUSIVE")  # another node's connection, in rollback mode
    loop = asyncio.get_running_loop()
    loop.call_later(6.0, holder.execute, "COMMIT")
    try:
        async with asyncio.timeout(30):
            await upgrade(f"sqlite+aiosqlite:///{path}")
        assert await current_revision(f"sqlite+aiosqlite:///{path}") == head_revision()
    finally:
        holder.close()


async def test_migrations_match_the_models(database: Database) -> None:
    await database.upgrade()
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_schema_diff)
    finally:
        await engine.dispose()
    assert diff == []


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 'settings.db'}")
    # synchronous 2 = FULL: an acknowledged commit is on disk.
    expected = {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 5000, "foreign_keys": 1}
    try:
        async with store.engine.connect() as conn:
            for pragma, value in expected.items():
                assert (await conn.exec_driver_sql(f"PRAGMA {pragma}")).scalar() == value
        await store._lite.open()  # the connection every create commits on
        hot = await store._lite.transaction(
            lambda conn: {p: conn.execute(f"PRAGMA {p}").fetchone()[0] for p in expected}
        )
        assert hot == expected
    finally:
        await store.close()


async def test_sqlite_queue_queries_use_the_partial_index(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}")
    queries = [
        select(func.max(N.c.id)).where(N.c.user_id == "a", N.c.queued),
        select(func.count()).where(N.c.queued),
    ]
    async with migrated_store(database) as store:
        assert isinstance(store, SqliteStore)
        async with store.engine.connect() as conn:
            for query in queries:
                sql = query.compile(conn.sync_connection, compile_kwargs={"literal_binds": True})
                plan = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")).all()
                assert "ix_notifications_queued" in str(plan), plan


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://u@h/db", "postgresql+asyncpg"),
        ("postgresql://u@h:5433/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
        ("sqlite:///tidings.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///tidings.db", "sqlite+aiosqlite"),
    ],
)
def test_urls_get_their_async_driver(url: str, driver: str) -> None:
    normalised = normalise_url(url)
    assert normalised.drivername == driver
    assert normalised.database == make_url(url).database


async def test_open_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    await upgrade("memory://")  # nothing to migrate
    sql = open_store(f"sqlite:///{tmp_path / 'by-url.db'}")
    assert isinstance(sql, SqliteStore)
    await sql.close()
    for url in ("postgres://u@h/db", "postgresql://u@h/db", "postgresql+asyncpg://u@h/db"):
        postgres = open_store(url)
        assert isinstance(postgres, PostgresStore)
        await postgres.close()  # never opened: nothing to do
    assert dsn("postgresql+asyncpg://u:p@h:5433/db?sslmode=disable") == (
        "postgresql://u:p@h:5433/db?sslmode=disable"
    )
    with pytest.raises(ValueError, match="unsupported database URL"):
        open_store("mysql://u@h/db")


@pytest.mark.postgres
async def test_ids_follow_commit_order_across_processes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two stores (as two nodes would) create at once; a reader following "after N" sees
    every row exactly once: no id commits after a larger one."""
    users = [f"w{i}" for i in range(6)]
    async with (
        empty_database("postgres", request, tmp_path) as database,
        migrated_store(database) as node_a,
        migrated_store(database) as node_b,
        migrated_store(database) as follower,
    ):
        created: list[list[int]] = []
        writers_done = asyncio.Event()

        async def write(store: Store, user: str) -> None:
            for _ in range(25):
                ids = await ids_of(store, [item(user), item(users[0])])
                assert ids[0] < ids[1]
                created.append(ids)

        async def follow() -> list[int]:
            seen: list[int] = []
            while True:
                last_round = writers_done.is_set()
                after = seen[-1] if seen else 0
                seen += [n.id for n, _ in await follower.fetch_range(after, 2**62, 10_000)]
                if last_round:
                    return seen
                await asyncio.sleep(0)

        following = asyncio.create_task(follow())
        await asyncio.gather(
            *(write((node_a, node_b)[i % 2], user) for i, user in enumerate(users))
        )
        writers_done.set()
        seen = await following
    assert seen == sorted(i for ids in created for i in ids)


def _schema_diff(connection: Connection) -> list[Any]:
    ours = {N.name, U.name, M.name, C.name}

    def include(name: str | None, type_: str, _parent: Any) -> bool:
        return type_ != "table" or name in ours

    context = MigrationContext.configure(connection, opts={"include_name": include})
    return list(compare_metadata(context, SQLModel.metadata))


def _count_statements(store: Store) -> list[str] | None:
    """The SQL statements ``store`` runs from now on (None for a store without SQL)."""
    if not isinstance(store, SqliteStore):  # PostgresStore: plain asyncpg, no SQLAlchemy
        return None
    seen: list[str] = []

    @event.listens_for(store.engine.sync_engine, "before_cursor_execute")
    def _count(*args: Any) -> None:
        seen.append(args[2])

    return seen
