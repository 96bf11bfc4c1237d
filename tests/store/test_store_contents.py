"""A broadcast's content is stored once (a ``contents`` row per slice) and
every recipient still reads the whole notification; migration 0003 keeps every row."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command as commands
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from server.engine import Engine, EngineConfig
from server.engine.filters import TypeFilter
from server.engine.models import Content, InboxQuery, NewNotification, Notification, Priority
from server.store import Store
from server.store.engines import make_engine
from server.store.migrate import alembic_config, current_revision, head_revision, upgrade
from server.store.rows import ORPHANS
from server.store.tables import UtcDateTime
from server.store.tables import contents as C
from server.store.tables import notifications as N
from tests.engine.fakes import FakeClock
from tests.store.conftest import Database, SqlStore, migrated_store

NOW = datetime(2026, 11, 25, 22, 52, 7, 123000, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
EVERYTHING = TypeFilter.everything()
CONTENT = Content(
    type="news",
    title="Tïtle ✓",
    message="line\nbreak 🎉",
    data_json=json.dumps({"n": 12345678901234567890, "deep": {"list": [1, "ü", None]}}),
    priority=Priority.HIGH,
)


def recipients(users: Sequence[str], content: Content = CONTENT) -> list[NewNotification]:
    """The items ``Engine.broadcast`` makes: one content object for every recipient."""
    return [NewNotification(u, content, user_id_checked=True) for u in users]


async def create(store: Store, items: Sequence[NewNotification]) -> list[Notification]:
    result = await store.create(items, now=NOW, queue_cap=100, offline=lambda _: True)
    assert all(o.created for o in result.outcomes)
    return [o.notification for o in result.outcomes]


async def count(database: Database, query: sa.Select[Any]) -> int:
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(query) or 0)
    finally:
        await engine.dispose()


def expected(n: Notification, user: str, content: Content = CONTENT) -> Notification:
    return Notification(
        n.id,
        user,
        content.type,
        content.title,
        content.message,
        content.data_json,
        content.priority,
        NOW,
        expires_at=content.expires_at,
        ignore_mutes=content.ignore_mutes,
    )


# --- every store ------------------------------------------------------------------------


async def test_each_recipient_of_a_broadcast_reads_the_whole_content(store: Store) -> None:
    (single,) = await create(store, [NewNotification("a", Content(type="t", title="alone"))])
    made = await create(store, recipients(["a", "b", "c"]))
    assert made == [expected(n, u) for n, u in zip(made, "abc", strict=True)]

    assert await store.fetch([single.id, *(n.id for n in made)]) == [single, *made]
    assert await store.fetch_range(0, made[-1].id, 10) == [(n, True) for n in [single, *made]]
    for n in made:
        page = await store.inbox(n.user_id, InboxQuery(), now=NOW)
        assert page.notifications[0] == n
    assert (await store.inbox("a", InboxQuery(), now=NOW)).notifications == [made[0], single]
    replay = await store.replay("b", since=None, cap=10, type_filter=EVERYTHING, now=NOW)
    assert replay.notifications == [made[1]]
    resume = await store.replay("c", since=0, cap=10, type_filter=EVERYTHING, now=NOW)
    assert resume.notifications == [made[2]]

    read = await store.mark_read("a", made[0].id, LATER)
    assert read == made[0]._replace(read_at=LATER)
    assert await store.mark_read("a", made[0].id, LATER + timedelta(1)) == read  # already read
    archived = await store.set_archived("b", made[1].id, True, LATER)
    assert archived == made[1]._replace(archived_at=LATER)
    assert await store.set_archived("b", made[1].id, False, LATER) == made[1]


async def test_every_recipient_gets_a_row_of_their_own_whatever_the_user_id(
    store: Store,
) -> None:
    """User ids travel to the store as they are (quotes, backslashes, brackets, control
    characters, any script), and the rows' ids follow the recipients' order."""
    users = ['q"uote', "back\\slash", "[1, 2]", "tab\tnew\nline", "\u2028sep", "ü-ser ☃", "🎉",
             "x" * 128, "{}", "null", "a"]  # fmt: skip
    made = await create(store, recipients(users))
    assert [n.user_id for n in made] == users
    assert [n.id for n in made] == list(range(made[0].id, made[0].id + len(users)))
    assert made == [expected(n, u) for n, u in zip(made, users, strict=True)]
    for n in made:
        replay = await store.replay(n.user_id, since=None, cap=10, type_filter=EVERYTHING, now=NOW)
        assert replay.notifications == [n]


OTHER = Content(type="other", title="second", message="another broadcast", data_json='{"k": [1]}')


def grouped_broadcasts() -> list[NewNotification]:
    """What the writer commits when creates come together: two broadcasts' slices, a
    single create between them and one after."""
    return [
        *recipients(["a", "b", "c"]),
        NewNotification("a", Content(type="t", title="alone")),
        *recipients(["b", "c"], OTHER),
        NewNotification("c", Content(type="t", title="last")),
    ]


async def test_broadcasts_committed_together_each_read_their_own_content(store: Store) -> None:
    items = grouped_broadcasts()
    made = await create(store, items)
    assert [n.id for n in made] == list(range(made[0].id, made[0].id + len(items)))
    assert [n.user_id for n in made] == [i.user_id for i in items]
    assert [(n.title, n.message, n.data_json, n.type) for n in made] == [
        (i.content.title, i.content.message, i.content.data_json, i.content.type) for i in items
    ]
    assert await store.fetch([n.id for n in made]) == made
    replay = await store.replay("c", since=None, cap=10, type_filter=EVERYTHING, now=NOW)
    assert replay.notifications == [made[2], made[5], made[6]]


async def test_broadcasts_committed_together_keep_the_queue_cap(store: Store) -> None:
    """c gets three rows (a run, the last create, the other run): one over a cap of 2,
    counted across the runs; b gets two, a two."""
    result = await store.create(grouped_broadcasts(), now=NOW, queue_cap=2, offline=lambda _: True)
    assert result.dropped == {"c": 1}
    replay = await store.replay("c", since=None, cap=10, type_filter=EVERYTHING, now=NOW)
    assert [n.title for n in replay.notifications] == ["second", "last"]


async def test_deleting_one_recipients_row_leaves_the_others_whole(store: Store) -> None:
    made = await create(store, recipients(["a", "b", "c"]))
    await store.delete("b", made[1].id)
    assert await store.fetch([n.id for n in made]) == [made[0], made[2]]
    assert (await store.inbox("c", InboxQuery(), now=NOW)).notifications == [made[2]]
    await store.delete("a", made[0].id)
    assert await store.mark_read("c", made[2].id, LATER) == made[2]._replace(read_at=LATER)


async def test_expired_recipients_go_and_the_others_stay_whole(store: Store) -> None:
    soon = Content(type="t", title="soon", message="m", expires_at=LATER)
    going = await create(store, recipients(["a", "b"], soon))
    staying = await create(store, recipients(["a", "b"]))
    assert await store.delete_expired(LATER, 10) == 2
    assert await store.fetch([n.id for n in going + staying]) == staying


# --- the SQL stores ---------------------------------------------------------------------


async def test_a_broadcast_stores_its_content_once_per_slice(database: Database) -> None:
    """3 000 users in slices of 1 000: three contents rows, and no recipient row holds
    the title, message or data itself; a single create keeps its content inline."""
    await database.upgrade()
    sql_store = database.store()
    engine = Engine(sql_store, EngineConfig(node_id="n1", broadcast_slice=1000), FakeClock())
    await engine.start()  # opens the store; stopping closes it
    try:
        users = [f"user-{i:04d}" for i in range(3000)]
        assert await engine.broadcast(CONTENT, users) == 3000
        await engine.create(NewNotification("user-0000", Content(type="t", title="inline")))
        (last,) = await sql_store.fetch([await sql_store.last_id() - 1])
        assert last == expected(last, "user-2999")._replace(created_at=last.created_at)
    finally:
        await engine.stop()
    assert await count(database, sa.select(sa.func.count()).select_from(C)) == 3
    inline = sa.select(sa.func.count()).where(N.c.title.is_not(None))
    assert await count(database, inline) == 1
    shared = sa.select(sa.func.count()).where(N.c.content_id.is_not(None))
    assert await count(database, shared) == 3000


async def test_broadcasts_committed_together_store_each_content_once(
    database: Database, sql_store: SqlStore
) -> None:
    """Several broadcasts in one transaction (the writer's group commit): one contents
    row for each, their recipients' rows narrow; single creates keep theirs inline."""
    await create(sql_store, grouped_broadcasts())
    assert await count(database, sa.select(sa.func.count()).select_from(C)) == 2
    inline = sa.select(sa.func.count()).where(N.c.title.is_not(None))
    assert await count(database, inline) == 2
    shared = sa.select(sa.func.count()).where(N.c.content_id.is_not(None))
    assert await count(database, shared) == 5


async def test_a_content_goes_with_its_last_recipient(
    database: Database, sql_store: SqlStore
) -> None:
    contents = sa.select(sa.func.count()).select_from(C)
    made = await create(sql_store, recipients(["a", "b", "c"]))
    soon = Content(type="t", title="soon", expires_at=LATER)
    await create(sql_store, recipients(["a", "b"], soon))
    assert await count(database, contents) == 2
    await sql_store.delete("a", made[0].id)
    await sql_store.delete("b", made[1].id)
    assert await count(database, contents) == 2, "c still reads it"
    await sql_store.delete("c", made[2].id)
    assert await count(database, contents) == 1
    assert await sql_store.delete_expired(LATER, 1) == 1
    assert await count(database, contents) == 1, "b's row still reads it"
    assert await sql_store.delete_expired(LATER, 10) == 1
    assert await count(database, contents) == 0


async def test_a_row_without_content_is_refused(database: Database) -> None:
    await database.upgrade()
    engine = make_engine(database.url, schema=database.schema)
    row = {"user_id": "a", "type": "t", "priority": "normal", "created_at": NOW, "queued": True}
    try:
        with pytest.raises(sa.exc.IntegrityError, match="ck_notifications_content"):
            async with engine.begin() as conn:
                await conn.execute(sa.insert(N).values(**row))
    finally:
        await engine.dispose()


# --- migration 0003 ---------------------------------------------------------------------

#: ``notifications`` as revision 0002 made it.
OLD = sa.table(
    "notifications",
    *(sa.column(c) for c in ("id", "user_id", "type", "title", "message", "data_json")),
    *(sa.column(c) for c in ("priority", "queued", "idempotency_key", "ignore_mutes")),
    *(sa.column(c, UtcDateTime) for c in ("created_at", "read_at", "seen_at", "archived_at")),
    sa.column("expires_at", UtcDateTime),
)


def old_row(i: int, user: str, **changes: Any) -> dict[str, Any]:
    row = {
        "id": i,
        "user_id": user,
        "type": "t",
        "title": f"title {i}",
        "message": f"message {i}",
        "data_json": json.dumps({"i": i}),
        "priority": "normal",
        "queued": True,
        "idempotency_key": None,
        "ignore_mutes": False,
        "created_at": NOW + timedelta(seconds=i),
        "read_at": None,
        "seen_at": None,
        "archived_at": None,
        "expires_at": None,
    }
    return row | changes


def as_notification(row: dict[str, Any]) -> Notification:
    return Notification(
        row["id"],
        row["user_id"],
        row["type"],
        row["title"],
        row["message"],
        row["data_json"],
        Priority(row["priority"]),
        row["created_at"],
        row["read_at"],
        row["seen_at"],
        row["archived_at"],
        row["expires_at"],
        row["ignore_mutes"],
    )


async def test_upgrading_a_0002_database_keeps_every_row(database: Database) -> None:
    await upgrade(database.url, schema=database.schema, revision="0002")
    rows = [
        old_row(1, "a", idempotency_key="k1", priority="urgent", data_json='{"n": 1.5}'),
        old_row(2, "a", read_at=NOW, seen_at=NOW, archived_at=NOW, queued=False),
        # What a broadcast wrote before: the same content in every recipient's row.
        *(old_row(i, u, title="all", message="") for i, u in [(3, "a"), (4, "b"), (5, "c")]),
        old_row(6, "b", expires_at=LATER, ignore_mutes=True, type="security"),
        old_row(7, "c"),  # deleted below: its id must not be handed out again
    ]
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(OLD), rows)
            await conn.execute(sa.delete(OLD).where(OLD.c.id == 7))
            if engine.dialect.name == "postgresql":
                await conn.execute(sa.text("SELECT setval('notifications_id_seq', 7)"))
    finally:
        await engine.dispose()
    before = [as_notification(r) for r in rows[:-1]]

    async with migrated_store(database) as store:
        assert await current_revision(database.url, schema=database.schema) == head_revision()
        assert await store.fetch(range(1, 8)) == before
        assert await store.fetch_range(0, 10, 10) == [(n, n.id != 2) for n in before]
        for user in "abc":
            mine = [n for n in reversed(before) if n.user_id == user]
            page = await store.inbox(user, InboxQuery(archived=False), now=NOW)
            assert page.notifications == [n for n in mine if not n.archived]
        replay = await store.replay("a", since=None, cap=10, type_filter=EVERYTHING, now=NOW)
        assert replay.notifications == [before[0], before[2]]
        assert await store.mark_read("b", 4, LATER) == before[3]._replace(read_at=LATER)
        (again,) = (await store.create([rows_item("a", "k1")], **CREATE)).outcomes
        assert again.notification == before[0]
        assert not again.created, "the idempotency key still holds"
        (new,) = await create(store, [NewNotification("c", Content(type="t", title="n"))])
        assert new.id > 7, "an id is never handed out twice"


def rows_item(user: str, key: str) -> NewNotification:
    return NewNotification(user, Content(type="t", title="other"), key)


CREATE: dict[str, Any] = {"now": NOW, "queue_cap": 100, "offline": lambda _: True}


async def test_downgrading_puts_the_content_back_in_each_row(database: Database) -> None:
    async with migrated_store(database) as store:
        made = await create(store, recipients(["a", "b"]))
        (single,) = await create(store, [NewNotification("a", Content(type="t", title="one"))])
    await _alembic(database, "downgrade", "0002")
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.connect() as conn:
            found = (await conn.execute(sa.select(OLD).order_by(OLD.c.id))).mappings().all()
    finally:
        await engine.dispose()
    assert [as_notification(dict(r)) for r in found] == [*made, single]
    async with migrated_store(database) as store:  # and up again
        assert await store.fetch([n.id for n in [*made, single]]) == [*made, single]


async def _alembic(database: Database, command: str, revision: str) -> None:
    """Run an Alembic command on ``database`` (as ``server.store.migrate.upgrade`` does)."""

    def run(connection: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        getattr(commands, command)(config, revision)

    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def test_sqlite_plans_after_upgrading_from_0002(tmp_path: Path) -> None:
    """The queue still reads its partial index once 0003 copied the table, and a content's
    orphan check is one probe in ``ix_notifications_content_id``."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    await upgrade(url, revision="0002")
    await upgrade(url)
    queries = {
        "ix_notifications_queued": str(
            sa.select(sa.func.max(N.c.id))
            .where(N.c.user_id == "a", N.c.queued)
            .compile(dialect=sqlite_dialect(), compile_kwargs={"literal_binds": True})
        ),
        "ix_notifications_content_id": f"DELETE FROM contents WHERE {ORPHANS.format(ids='1')}",
    }
    with contextlib.closing(sqlite3.connect(tmp_path / "plans.db")) as conn:
        for index, query in queries.items():
            plan = conn.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
            assert index in str(plan), plan


async def test_sqlite_broadcasts_committed_together_each_store_their_content_once(
    tmp_path: Path,
) -> None:
    """The writer groups broadcasts queued together into one transaction: each keeps its
    own ``contents`` row, the creates between them stay inline, the ids follow the items."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'grouped.db'}")
    other = Content(type="other", title="second ☃", message="m", priority=Priority.LOW)
    single = [NewNotification("s", Content(type="t", title=f"one {i}")) for i in range(2)]
    keyed = NewNotification("k", CONTENT, idempotency_key="key-1")
    items = [
        *recipients(["a", "b", "c"]),
        *single,
        keyed,
        *recipients(["a", "d"], other),
        *recipients(["e"], Content(type="x", title="lone")),
    ]
    async with migrated_store(database) as sql_store:
        made = await create(sql_store, items)
        assert [n.id for n in made] == list(range(made[0].id, made[0].id + len(items)))
        assert [n.user_id for n in made] == [i.user_id for i in items]
        fetched = await sql_store.fetch([n.id for n in made])
        assert sorted(fetched) == sorted(made)
        for n, item in zip(made, items, strict=True):
            assert (n.type, n.title, n.message, n.data_json, n.priority) == (
                item.content.type, item.content.title, item.content.message,
                item.content.data_json, item.content.priority,
            )  # fmt: skip
    assert await count(database, sa.select(sa.func.count()).select_from(C)) == 2
    shared = sa.select(sa.func.count()).where(N.c.content_id.is_not(None))
    assert await count(database, shared) == 5
