"""SQLite's one writing connection, on a thread of its own, and its write-ahead log.

Through SQLAlchemy's async layer every statement is a greenlet switch plus a hop to
aiosqlite's thread (measured here: ~1.1 ms for a one-row create). ``SqliteStore``
instead runs each hot transaction as one plain function on this connection's thread
(~0.15 ms for the same create). All of a node's SQLite writes go through this one
connection, so writers never contend.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from server.store.engines import SQLITE_PRAGMAS

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
PRAGMAS = (f"busy_timeout={BUSY_TIMEOUT_MS}", *SQLITE_PRAGMAS)
CHECKPOINT_EVERY = 1.0  # seconds between passive WAL checkpoints
WAL_LIMIT = 16 * 2**20  # bytes: a larger WAL is reset between two commits
RESET_WAIT_MS = 200  # how long a reset or an idle truncation waits for readers
RESET_RETRY = 0.5  # seconds before a reset that readers held up is tried again

log = logging.getLogger(__name__)


class SqliteConnection:
    """One SQLite connection on a thread of its own; ``transaction`` runs a function there.

    The write-ahead log. A checkpoint copies the WAL's pages into the database file
    (with an fsync); the WAL file itself is only rewritten from its start once a
    checkpoint has copied *every* page and no reader still uses them, which passive
    checkpoints never see while writes keep coming: the file then grows without end
    (hundreds of MiB in a minute at full speed). So:

    * This connection never checkpoints inside a commit (that would stall every create
      queued behind it); a second connection, on a second thread, runs passive
      checkpoints every ``checkpoint_every`` seconds, which never block the writer and
      keep the pages still to copy few.
    * After a commit that leaves the WAL larger than ``wal_limit`` bytes, this
      connection resets it (``wal_checkpoint(TRUNCATE)``: copy the few pages left,
      fsync, truncate the file to zero) once that commit's caller has its answer and
      before the next transaction begins, waiting at most ``RESET_WAIT_MS`` for a
      passive round in progress (SQLite refuses a second checkpoint at once) and for
      readers; if they hold it up, it tries again
      ``RESET_RETRY`` seconds later. The WAL thus stays near ``wal_limit`` plus one
      group's pages, and the stall is one short checkpoint per ``wal_limit`` written.
    * A checkpoint round that finds no commit since the last one truncates the WAL:
      an idle node keeps no large file around.
    """

    def __init__(
        self,
        path: str,
        *,
        wal_limit: int = WAL_LIMIT,
        checkpoint_every: float = CHECKPOINT_EVERY,
    ) -> None:
        self._path = path
        self._wal_path = f"{path}-wal"
        self._wal_limit = wal_limit
        self._checkpoint_every = checkpoint_every
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite")
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="tidings-checkpoint")
        self._conn: sqlite3.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._commits = 0  # written on the connection's thread only
        self._next_reset = 0.0
        self._reset_due = False
        # SQLite runs one checkpoint at a time and refuses a second at once (no busy
        # wait): the reset waits for a passive round in progress instead of failing.
        self._checkpointing = threading.Lock()
        #: How many times the WAL was reset for size, and truncated while idle.
        self.wal_resets = 0
        self.idle_truncations = 0

    async def open(self) -> None:
        await self._run(self._connect)
        self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="tidings-wal")

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            await asyncio.gather(self._checkpoints, return_exceptions=True)
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
        self._checkpointer.shutdown(wait=True)

    async def _checkpoint_loop(self) -> None:
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(self._checkpointer, self._open_checkpointer)
        seen = self._commits
        try:
            while True:
                await asyncio.sleep(self._checkpoint_every)
                idle, seen = self._commits == seen, self._commits
                try:
                    if idle and _wal_size(self._wal_path):
                        if await loop.run_in_executor(
                            self._checkpointer, self._locked, _truncate, conn
                        ):
                            self.idle_truncations += 1
                    elif not idle:
                        await loop.run_in_executor(
                            self._checkpointer, self._locked, _checkpoint, conn
                        )
                except sqlite3.Error as exc:  # the next round retries
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            await asyncio.shield(loop.run_in_executor(self._checkpointer, conn.close))

    def _locked(self, checkpoint: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
        with self._checkpointing:
            return checkpoint(conn)

    def _open_checkpointer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        # Only an idle truncation waits (for a reader, or a create that just began): briefly.
        conn.execute(f"PRAGMA busy_timeout={RESET_WAIT_MS}")
        return conn

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` inside ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back if it raises)."""
        result: T = await self._run(self._transaction, fn)
        if self._reset_due:
            # Queued behind this transaction on the connection's thread, ahead of the
            # next one: the caller hears of its commit without waiting for the reset.
            self._reset_due = False
            self._executor.submit(self._reset_wal)
        return result

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        for pragma in PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see the class docstring
        # Whenever the WAL restarts from its beginning, cut the file back to this size.
        conn.execute(f"PRAGMA journal_size_limit={self._wal_limit}")
        self._conn = conn

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("the SQLite connection is not open")
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._commits += 1
        if _wal_size(self._wal_path) > self._wal_limit and time.monotonic() >= self._next_reset:
            self._reset_due = True
        return result

    def _reset_wal(self) -> None:
        """Copy what is left of the WAL into the database and truncate it (see above)."""
        conn = self._conn
        if conn is None:
            return
        if not self._checkpointing.acquire(timeout=RESET_WAIT_MS / 1000):
            self._next_reset = time.monotonic() + RESET_RETRY
            return
        conn.execute(f"PRAGMA busy_timeout={RESET_WAIT_MS}")
        try:
            if _truncate(conn):
                self.wal_resets += 1
            else:
                self._next_reset = time.monotonic() + RESET_RETRY
        except sqlite3.Error as exc:
            log.warning("WAL reset failed: %s", exc)
            self._next_reset = time.monotonic() + RESET_RETRY
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._checkpointing.release()


def _wal_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


def _truncate(conn: sqlite3.Connection) -> bool:
    """A TRUNCATE checkpoint: True when it completed (False: a reader or writer was busy)."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy
