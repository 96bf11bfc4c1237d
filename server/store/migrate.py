"""Bring a database schema up to date with the Alembic migrations in ``server/migrations``.

Alembic is configured in code, so nothing but the package is needed at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import ColumnElement, Connection, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.engine.errors import StoreUnavailable
from server.store.engines import WRITE_OPTION, make_engine
from server.store.errors import unreachable

# Fixed 64-bit key of the PostgreSQL advisory lock migrations hold ("tidings" + 2).
MIGRATE_LOCK = 0x74696469_6E677302
#: How long a SQLite node waits for another node's migration (busy timeout, ms).
MIGRATE_WAIT_MS = 120_000

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration for the migrations shipped with the package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest revision the shipped migrations know."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(url: str, *, schema: str | None = None) -> str | None:
    """The revision the database at ``url`` is at (None before the first migration)."""
    engine = make_engine(url, schema=schema)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()


async def upgrade(url: str, *, schema: str | None = None, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` in one transaction; a no-op when current.

    On PostgreSQL an advisory lock makes nodes that start together take turns: the
    first migrates, the others then find nothing to do. SQLite serialises the writers.
    A ``memory://`` store has no schema: nothing to do.
    """
    if url.startswith("memory://"):
        return
    # SQLite serialises the nodes that migrate together: each waits for the one migrating,
    # however long that takes on a busy machine (connecting switches to WAL: a lock too).
    engine = make_engine(url, schema=schema, busy_timeout_ms=MIGRATE_WAIT_MS)
    try:
        await _migrate(engine, revision)
    except Exception as exc:
        if (reason := unreachable(exc)) is None:
            raise
        raise StoreUnavailable(reason) from exc
    finally:
        await engine.dispose()


async def _migrate(engine: AsyncEngine, revision: str) -> None:
    """Run the migrations on one connection (holding the lock on PostgreSQL)."""
    async with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        await conn.execution_options(**{WRITE_OPTION: True})
        if postgres:
            await _advisory(conn, func.pg_advisory_lock(MIGRATE_LOCK))
        try:
            async with conn.begin():
                await conn.run_sync(_upgrade, revision)
        finally:
            if postgres:
                await _advisory(conn, func.pg_advisory_unlock(MIGRATE_LOCK))


async def _advisory(conn: AsyncConnection, call: ColumnElement[Any]) -> None:
    await conn.execute(select(call))
    await conn.commit()


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
