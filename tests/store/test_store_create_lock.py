"""PostgreSQL creates under the create lock: a create that waited for another node's
transaction to release the lock sees what that transaction committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from server.engine.models import Content, NewNotification
from server.store.postgres import CREATE_LOCK, PostgresStore, dsn
from tests.store.conftest import empty_database
from tests.waiting import until

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CAP = 3


@pytest.fixture
async def node_and_direct(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[PostgresStore, asyncpg.Connection]]:
    """A node's store, and a connection of its own that plays another node."""
    async with empty_database("postgres", request, tmp_path) as db:
        await db.upgrade()
        store = PostgresStore(db.url, schema=db.schema)
        await store.open()
        conn = await asyncpg.connect(
            dsn(db.url), server_settings={"search_path": db.schema or "public"}
        )
        try:
            yield store, conn
        finally:
            await conn.close()
            await store.close()


def item(user: str) -> NewNotification:
    return NewNotification(user, Content(type="t", title="title"))


async def queued(conn: asyncpg.Connection, user: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND queued", user
        )
    )


async def test_a_create_waiting_for_the_lock_counts_the_rows_requeued_meanwhile(
    node_and_direct: tuple[PostgresStore, asyncpg.Connection],
) -> None:
    """The other node requeues a row while it holds the lock; the create that waited
    for the lock keeps the queue at the cap, counting that row."""
    store, direct = node_and_direct
    first = await store.create([item("x")] * CAP, now=NOW, queue_cap=CAP, offline=lambda _: True)
    taken = first.outcomes[0].notification.id
    await store.dequeue([taken])
    assert await queued(direct, "x") == CAP - 1
    held = direct.transaction()
    await held.start()
    await direct.execute("SELECT pg_advisory_xact_lock($1)", CREATE_LOCK)
    await direct.execute("UPDATE notifications SET queued = true WHERE id = $1", taken)
    late = asyncio.create_task(
        store.create([item("x")], now=NOW, queue_cap=CAP, offline=lambda _: True)
    )

    async def waiting() -> bool:  # the create has begun, and waits for the lock
        return bool(
            await direct.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            )
        )

    await until(waiting, within=10)
    await held.commit()
    result = await late
    assert result.dropped == {"x": 1}
    assert await queued(direct, "x") == CAP
