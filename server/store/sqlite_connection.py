"""SQLite's one writing connection, on a thread of its own, and its write-ahead log.

Through SQLAlchemy's async layer every statement is a greenlet switch plus a hop to
aiosqlite's thread (measured here: ~1.1 ms for a one-row create). ``SqliteStore``
instead runs each hot transaction as one plain function on this connection's thread
(~0.15 ms for the same create). All of a node's SQLite writes go through this one
connection, so writers never contend.

The thread takes its work from a plain queue and hands each result straight to the
waiting future with ``call_soon_threadsafe``: a ``ThreadPoolExecutor`` (through
``run_in_executor``) adds a work item, a ``concurrent.futures.Future`` with its lock
and condition, and a second future chained to it, for every transaction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from server.store.engines import SQLITE_PRAGMAS

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
PRAGMAS = (f"busy_timeout={BUSY_TIMEOUT_MS}", *SQLITE_PRAGMAS)
CHECKPOINT_EVERY = 1.0  # seconds between passive WAL checkpoints
WAL_LIMIT = 16 * 2**20  # bytes: past this the WAL is brought back to its start
#: Rounds that leave the writer free before one holds it, to bring the WAL back.
FREE_ROUNDS = 4
RESET_WAIT_MS = 200  # how long an idle truncation waits for readers

log = logging.getLogger(__name__)


class SqliteConnection:
    """One SQLite connection on a thread of its own; ``transaction`` runs a function there.

    The write-ahead log. A checkpoint copies the WAL's pages into the database file
    (with an fsync); the WAL file itself is only rewritten from its start by the first
    write after a checkpoint that copied *every* frame (when no reader still uses
    them). Checkpoints that race with commits never see that, and the file then grows
    without end (hundreds of MiB in a minute at full speed). So:

    * This connection never checkpoints: a second connection, on a thread of its own,
      does, and a create never waits for an fsync of the database file.
    * That thread runs a passive checkpoint every ``checkpoint_every`` seconds, which
      keeps the pages still to copy few.
    * When a commit leaves the WAL larger than ``wal_limit`` bytes, it wakes that
      thread, which runs a passive checkpoint just after each commit until one copies
      the last frame before the next commit lands; that commit then starts the WAL over
      from its beginning (its header written and fsynced) and overwrites the file from
      there. Nothing stops the writer meanwhile. The file keeps its size (cutting its
      tail at each restart made that commit ~7 ms instead of ~0.4 ms):
      ``journal_size_limit`` cuts it back only past three times ``wal_limit``, and the
      log's own length is read from the WAL index (``wal_bytes``).
    * If commits landed during ``FREE_ROUNDS`` such rounds (each an fsync of the
      database file), or the WAL passes twice ``wal_limit``, the next rounds hold the
      writer between two transactions (one commit's frames, and an fsync): the restart
      costs a bounded number of fsyncs and no longer depends on the gaps between
      commits.
    * A checkpoint round that finds no commit since the last one truncates the WAL
      (``wal_checkpoint(TRUNCATE)``, holding the writer): an idle node keeps no large
      file around.
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
        self._shm: int | None = None  # the WAL index (``-shm``), read by ``wal_bytes``
        self._frame = 24 + 4096  # a WAL frame's bytes: its header and a page
        self._wal_limit = wal_limit
        self._wal_hold = 2 * wal_limit  # past this, a round holds the writer
        self._checkpoint_every = checkpoint_every
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None  # the connection's, started by ``_run``
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._wake = threading.Event()  # the WAL passed its limit, or closing
        self._stop = threading.Event()
        self._restarting = False  # the checkpointer waits for commits (``_committed``)
        self._committed = threading.Event()
        self._commits = 0  # written on the connection's thread only
        # Held by every transaction, and by the checkpointer when it must hold the writer
        # (a Python lock: the writer resumes at once, not after SQLite's busy sleeps).
        self._writer = threading.Lock()
        #: How many times the WAL started over from its beginning after passing its limit,
        #: how many checkpoint rounds held the writer for it, and idle truncations.
        self.wal_resets = 0
        self.held_rounds = 0
        self.idle_truncations = 0

    async def open(self) -> None:
        await self._run(self._connect)
        checkpointer = await self._run(self._open_checkpointer)
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(checkpointer,), name="tidings-wal", daemon=True
        )
        self._checkpointer.start()

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._stop.set()
            self._wake.set()
            self._committed.set()
            await asyncio.get_running_loop().run_in_executor(None, self._checkpointer.join)
            self._checkpointer = None
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def release(self) -> None:
        """Close the WAL index's file: only once every connection of this process to the
        database is closed (closing any descriptor of a file drops all the process's
        POSIX locks on it, SQLite's on the index included)."""
        if self._shm is not None:
            os.close(self._shm)
            self._shm = None

    def _checkpoint_loop(self, conn: sqlite3.Connection) -> None:
        seen = self._commits
        try:
            while not self._stop.is_set():
                woken = self._wake.wait(self._checkpoint_every)
                self._wake.clear()
                if self._stop.is_set():
                    break
                idle, seen = self._commits == seen, self._commits
                try:
                    if idle and not woken:
                        if _wal_size(self._wal_path) and self._held(_truncate, conn):
                            self.idle_truncations += 1
                    elif woken or self.wal_bytes() > self._wal_limit:
                        self._restart(conn)
                    else:
                        _checkpoint(conn)
                except sqlite3.Error as exc:  # the next round retries
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            conn.close()

    def _restart(self, conn: sqlite3.Connection) -> None:
        """Checkpoint until a commit starts the WAL over (it is then at most ``wal_limit``).

        Each round begins just after a commit, so that it is likeliest to copy the last
        frame before the next one lands."""
        self._committed.set()
        self._restarting = True
        rounds = 0
        try:
            while self._committed.wait(self._checkpoint_every) and not self._stop.is_set():
                self._committed.clear()
                size = self.wal_bytes()
                if size <= self._wal_limit:
                    self.wal_resets += 1
                    return
                rounds += 1
                if rounds > FREE_ROUNDS or size > self._wal_hold:
                    self.held_rounds += 1
                    self._held(_checkpoint, conn)
                else:
                    _checkpoint(conn)
        finally:
            self._restarting = False

    def wal_bytes(self) -> int:
        """The write-ahead log's length since it last started over (its file may be longer).

        The WAL index's header (``-shm``, see SQLite's "WAL-mode file format") holds
        ``mxFrame``, the frames in the log, at byte 16 in native order; the writer reads
        it after its own commit, the checkpointer between rounds."""
        if self._shm is None:
            return _wal_size(self._wal_path)
        try:
            frames = int.from_bytes(os.pread(self._shm, 4, 16), sys.byteorder)
        except OSError:
            return _wal_size(self._wal_path)
        return 32 + frames * self._frame if frames else 0

    def _held(self, checkpoint: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
        with self._writer:
            return checkpoint(conn)

    def _open_checkpointer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        # Only an idle truncation waits (for a reader): briefly. FULL: a checkpoint syncs
        # the database file before the WAL's frames may be overwritten.
        conn.execute(f"PRAGMA busy_timeout={RESET_WAIT_MS}")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` inside ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back if it raises)."""
        return await self._run(self._transaction, fn)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the connection's thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="tidings-sqlite", daemon=True)
            self._thread.start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fn, args, future))
        return await future

    def _serve(self) -> None:
        """The connection's thread: runs the jobs in order until ``None``. A job whose
        caller was cancelled before it started is skipped, as an executor skips it."""
        while (job := self._jobs.get()) is not None:
            fn, args, future = job
            if future.cancelled():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                _hand_back(future, _fail, exc)
            else:
                _hand_back(future, _settle, result)

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        for pragma in PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see the class docstring
        # A restart cuts a file longer than this back to it (see the class docstring).
        conn.execute(f"PRAGMA journal_size_limit={3 * self._wal_limit}")
        self._frame = 24 + conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # the index exists
        try:
            self._shm = os.open(f"{self._path}-shm", os.O_RDONLY)
        except OSError as exc:  # then ``wal_bytes`` is the file's size
            log.warning("the SQLite WAL index cannot be read: %s", exc)
        self._conn = conn

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("the SQLite connection is not open")
        with self._writer:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        self._commits += 1
        if self._restarting:
            self._committed.set()
        elif not self._wake.is_set() and self.wal_bytes() > self._wal_limit:
            self._wake.set()
        return result


#: A function for the connection's thread, its arguments, and the future for its result.
_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


def _hand_back(
    future: asyncio.Future[T], how: Callable[[asyncio.Future[T], Any], None], what: Any
) -> None:
    """Settle ``future`` on its loop; a loop closed meanwhile (its caller is gone) must
    not end the connection's thread, which later jobs still wait on."""
    try:
        future.get_loop().call_soon_threadsafe(how, future, what)
    except RuntimeError:
        log.debug("a SQLite result had no event loop left to go to")


def _settle(future: asyncio.Future[T], result: T) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exc)


def _wal_size(path: str) -> int:  # the file's, not the log's: see ``wal_bytes``
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """A passive checkpoint: (busy, frames in the WAL, frames copied so far)."""
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return busy, frames, copied


def _truncate(conn: sqlite3.Connection) -> bool:
    """A TRUNCATE checkpoint: True when it completed (False: a reader or writer was busy)."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy
