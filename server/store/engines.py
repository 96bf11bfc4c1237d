"""SQLAlchemy engines by URL, for the migrations and the stores' cold paths.

``postgres(ql)://`` gets asyncpg and ``sqlite://`` aiosqlite. A SQLite engine sets the
connection pragmas and begins a writer's transaction (``WRITE_OPTION``) with ``BEGIN
IMMEDIATE``, so that it waits for the lock instead of failing when it upgrades from a
read snapshot that another writer has since changed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.engine.errors import StoreUnavailable

# Execution option marking a transaction as a writer (SQLite: ``BEGIN IMMEDIATE``).
WRITE_OPTION = "tidings_write"

# Seconds a PostgreSQL connection waits for the server to acknowledge its close.
CLOSE_TIMEOUT = 0.25

#: How long a SQLite statement waits for another connection's lock (ms).
SQLITE_BUSY_TIMEOUT_MS = 5000
#: Seconds between two tries of a pragma that SQLite refused as locked (``_pragma``).
PRAGMA_RETRY = 0.005
# ``synchronous=FULL``: a commit returns once the WAL is on disk (fsync), so what a
# producer was acknowledged survives a power loss, as on PostgreSQL with
# ``synchronous_commit = on``; group commit pays one fsync per group.
SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON")

_DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def normalise_url(url: str) -> URL:
    """``url`` with its async driver: ``postgres(ql)://`` → asyncpg, ``sqlite://`` → aiosqlite."""
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def make_engine(
    url: str,
    *,
    echo: bool = False,
    schema: str | None = None,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> AsyncEngine:
    """An async engine for ``url``; ``schema`` (PostgreSQL only) becomes the search path;
    ``busy_timeout_ms`` (SQLite only) is how long a statement waits for a lock."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        if schema is not None:
            raise ValueError("a schema can only be chosen on PostgreSQL")
        check_folder(parsed.database)
        engine = create_async_engine(parsed, echo=echo)
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    connect_args: dict[str, Any] = {"connection_class": QuickCloseConnection}
    if schema is not None:
        connect_args["server_settings"] = {"search_path": schema}
    return create_async_engine(
        parsed,
        echo=echo,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


class QuickCloseConnection(asyncpg.Connection):
    """An asyncpg connection whose close gives up on a server that does not answer.

    A graceful close waits for the server to hang up; through a dead network path that
    is forever, and closing the pool at shutdown would hang. After ``CLOSE_TIMEOUT``
    the connection is dropped instead (the server already has our goodbye).
    """

    async def close(self, *, timeout: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):  # then asyncpg aborted the connection
            await super().close(timeout=CLOSE_TIMEOUT if timeout is None else timeout)


def check_folder(database: str | None) -> None:
    """SQLite creates a missing file, not a missing folder: say so before the driver
    fails (its connection thread can outlive the event loop and print a traceback)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).absolute().parent
    if not folder.is_dir():
        raise StoreUnavailable(f"unable to open database file: no directory {folder}")


def _pragma(cursor: Any, pragma: str, wait_ms: int) -> None:
    """Run ``PRAGMA pragma``, waiting up to ``wait_ms`` for the file's lock.

    Switching a new file to WAL takes its exclusive lock. Where two connections would
    deadlock waiting for it (each holding the shared lock the other must lose: nodes
    starting together on a new file), SQLite answers "database is locked" at once,
    without the busy timeout; so try again until that timeout has passed.
    """
    deadline = time.monotonic() + wait_ms / 1000
    while True:
        try:
            cursor.execute(f"PRAGMA {pragma}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(PRAGMA_RETRY)


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN skips SELECTs and DDL; ``_begin`` emits it instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # First, so that switching to WAL waits for a connection that holds a lock too.
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        for pragma in SQLITE_PRAGMAS:
            _pragma(cursor, pragma, busy_timeout_ms)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
