"""The store alone: what a broadcast costs it to write, to read back, and on disk.

On a fresh SQLite file (``--postgres``: a fresh PostgreSQL database), migrated to the
head of the code it runs with: ``--users`` users made known by one create each (distinct
contents, inline), then a broadcast to all of them as the engine writes it (creates of
``--slice`` items sharing one ``Content``, everyone offline, queue cap 1 000); then the
catch-up read of those rows (``fetch_range``, ``--slice`` at a time) and one inbox page
per ``--inbox`` users. Reports the milliseconds of each phase, the write's µs per
recipient (elapsed; the CPU of this process; the database's CPU: on PostgreSQL that of
its backends, on SQLite this process's again), and the bytes the broadcast added per
recipient (SQLite: pages in use, WAL included; PostgreSQL: the notification tables with
their indexes and TOAST).

    .venv/bin/python bench/broadcast_store.py [--users 100000] [--slice 5000] [--postgres]

Runs the ``server`` package of the checkout it sits in (so an older checkout's copy
measures that code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.broadcast_large import postgres_bytes, postgres_cpu_seconds, sqlite_bytes
from server.engine.models import Content, InboxQuery, NewNotification
from server.store import Store, open_store
from server.store.migrate import upgrade

PG = "postgresql://postgres@127.0.0.1:5432/test"


async def run(args: argparse.Namespace) -> dict[str, object]:
    database = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            database = f"tidings_bench_{uuid.uuid4().hex[:12]}"
            admin = await asyncpg.connect(PG)
            await admin.execute(f'CREATE DATABASE "{database}"')
            await admin.close()
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
        else:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'tidings.db'}"

        async def db_bytes() -> int:
            if database is not None:
                return await postgres_bytes(database)
            return await asyncio.to_thread(sqlite_bytes, Path(tmp) / "tidings.db")

        async def db_cpu() -> float:
            if database is not None:
                return await postgres_cpu_seconds(database)
            return time.process_time()  # SQLite works in this process

        try:
            await upgrade(url)
            store: Store = open_store(url)
            await store.open()
            try:
                return await measure(store, args, db_bytes, db_cpu)
            finally:
                await store.close()
        finally:
            if database is not None:
                admin = await asyncpg.connect(PG)
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                await admin.close()


async def measure(
    store: Store,
    args: argparse.Namespace,
    db_bytes: Callable[[], Awaitable[int]],
    db_cpu: Callable[[], Awaitable[float]],
) -> dict[str, object]:
    """Write the broadcast, read it back; the figures."""
    now = datetime.now(UTC)
    users = [f"u{i:06d}" for i in range(args.users)]

    async def create(items: list[NewNotification]) -> None:
        await store.create(items, now=now, queue_cap=1000, offline=lambda _: True)

    for start in range(0, len(users), 1000):  # known users, as producers made them
        await create(
            [
                NewNotification(u, Content(type="welcome", title="hello", message="m" * 50))
                for u in users[start : start + 1000]
            ]
        )
    first = await store.last_id()
    before = await db_bytes()
    content = Content(type="bench", title="the big one", message="m" * 200)
    cpu0, db_cpu0 = time.process_time(), await db_cpu()
    t = time.perf_counter()
    for start in range(0, len(users), args.slice):
        await create(
            [
                NewNotification(u, content, user_id_checked=True)
                for u in users[start : start + args.slice]
            ]
        )
    write_s = time.perf_counter() - t
    cpu, database_cpu = time.process_time() - cpu0, await db_cpu() - db_cpu0
    added = await db_bytes() - before

    t = time.perf_counter()
    after, read = first, 0
    while found := await store.fetch_range(after, 2**62, args.slice):
        after, read = found[-1][0].id, read + len(found)
    range_s = time.perf_counter() - t
    assert read == len(users)

    t = time.perf_counter()
    for user in users[:: max(1, len(users) // args.inbox)]:
        page = await store.inbox(user, InboxQuery(), now=now)
        assert page.notifications[0].title == "the big one"
    inbox_s = time.perf_counter() - t
    return {
        "store": "postgres" if args.postgres else "sqlite",
        "recipients": len(users),
        "slice": args.slice,
        "write_ms": round(write_s * 1e3),
        "write_us_per_recipient": round(write_s * 1e6 / len(users), 1),
        "write_cpu_us_per_recipient": round(cpu * 1e6 / len(users), 1),
        "write_db_cpu_us_per_recipient": round(database_cpu * 1e6 / len(users), 1),
        "fetch_range_ms": round(range_s * 1e3),
        f"inbox_ms_{args.inbox}_users": round(inbox_s * 1e3),
        "db_bytes_per_recipient": round(added / len(users), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--slice", type=int, default=5000, help="recipients per create")
    parser.add_argument("--inbox", type=int, default=1000, help="users whose inbox is read")
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
