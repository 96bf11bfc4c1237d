"""Two PostgreSQL nodes deleting the last two rows of one broadcast content at once: the
content goes with the last of them, whoever deletes last, and neither fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from server.engine.models import Content, NewNotification
from server.store.postgres import PostgresStore, dsn
from tests.store.conftest import Database, empty_database
from tests.waiting import until

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CONTENT = Content(type="news", title="shared", message="one content, two rows")
ROUNDS = 20
ORPHANS = (
    "SELECT count(*) FROM contents c WHERE NOT EXISTS "
    "(SELECT 1 FROM notifications n WHERE n.content_id = c.content_id)"
)


@pytest.fixture
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with empty_database("postgres", request, tmp_path) as db:
        await db.upgrade()
        yield db


@pytest.fixture
async def nodes(database: Database) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, as two nodes have."""
    pair = (
        PostgresStore(database.url, schema=database.schema),
        PostgresStore(database.url, schema=database.schema),
    )
    for store in pair:
        await store.open()
    yield pair
    for store in pair:
        await store.close()


@pytest.fixture
async def direct(database: Database) -> AsyncIterator[asyncpg.Connection]:
    """A third connection to that schema: row locks, and the orphans' count."""
    conn = await asyncpg.connect(
        dsn(database.url), server_settings={"search_path": database.schema or "public"}
    )
    yield conn
    await conn.close()


async def broadcast(store: PostgresStore, users: tuple[str, str]) -> tuple[int, int]:
    """Two recipients' rows of one new content: their ids."""
    items = [NewNotification(u, CONTENT, user_id_checked=True) for u in users]
    result = await store.create(items, now=NOW, queue_cap=100, offline=lambda _: True)
    first, second = (o.notification.id for o in result.outcomes)
    return first, second


async def shared_contents(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM contents"))


async def test_a_delete_checking_while_the_other_is_uncommitted_leaves_no_orphan(
    nodes: tuple[PostgresStore, PostgresStore], direct: asyncpg.Connection
) -> None:
    """The order the argument in ``server.store.postgres._delete`` is about, forced: one
    node's delete waits on a row lock, uncommitted, while the other deletes and checks."""
    for node in nodes:  # the statements prepared (their types looked up) beforehand
        ids = await broadcast(node, ("w1", "w2"))
        for user, id_ in zip(("w1", "w2"), ids, strict=True):
            await node.delete(user, id_)
    for round_ in range(ROUNDS):
        first, second = nodes if round_ % 2 == 0 else nodes[::-1]
        ids = await broadcast(first, ("u1", "u2"))
        assert await shared_contents(direct) == 1
        held = direct.transaction()
        await held.start()
        await direct.execute("SELECT 1 FROM notifications WHERE id = $1 FOR UPDATE", ids[1])
        late = asyncio.create_task(second.delete("u2", ids[1]))

        async def waiting() -> bool:  # the late node's delete waits for that lock
            return bool(
                await direct.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                )
            )

        await until(waiting, within=10)
        await first.delete("u1", ids[0])  # its check sees the other row, not yet deleted
        assert await shared_contents(direct) == 1
        await held.commit()
        await late  # no error
        assert await shared_contents(direct) == 0, f"round {round_}: the content was left"


async def test_deletes_racing_freely_leave_no_orphan(
    nodes: tuple[PostgresStore, PostgresStore], direct: asyncpg.Connection
) -> None:
    a, b = nodes
    for _ in range(ROUNDS * 5):
        ids = await broadcast(a, ("u1", "u2"))
        await asyncio.gather(a.delete("u1", ids[0]), b.delete("u2", ids[1]))
        assert await direct.fetchval(ORPHANS) == 0
    assert await shared_contents(direct) == 0
