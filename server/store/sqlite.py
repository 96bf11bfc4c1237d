"""SQLite's hot paths: whole transactions on one connection, in one thread hop each.

Through SQLAlchemy's async layer every statement is a greenlet switch plus a hop to
aiosqlite's thread (measured here: ~1.1 ms for a one-row create). The writes that
every delivery depends on — create, replay, queue marks, mark-read — and the
catch-up range read instead run as one plain function each on a dedicated
connection thread (~0.15 ms for the same create). All of a node's SQLite writes go
through this one connection, so writers never contend; SQLAlchemy keeps the other
reads, and the schema stays SQLModel's and Alembic's.

The SQL here mirrors the Core statements of ``server.store.sql`` for PostgreSQL; the
store contract tests run both. Partial-index predicates are spelled ``queued = 1``,
the way the index is declared, so that SQLite uses it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, TypeVar

from server.engine.errors import NotFound
from server.engine.filters import TypeFilter
from server.engine.models import NewNotification, Notification, Priority, Replay
from server.store.rows import plan_creates

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
PRAGMAS = (
    f"busy_timeout={BUSY_TIMEOUT_MS}",
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
)
CHUNK = 500  # parameters per IN list, well under SQLITE_MAX_VARIABLE_NUMBER
CHECKPOINT_EVERY = 1.0  # seconds between passive WAL checkpoints
WAL_LIMIT = 16 * 2**20  # bytes: a larger WAL is reset between two commits
RESET_WAIT_MS = 200  # how long a reset or an idle truncation waits for readers
RESET_RETRY = 0.5  # seconds before a reset that readers held up is tried again

log = logging.getLogger(__name__)

COLUMNS = "id, user_id, type, title, message, data_json, priority, created_at, read_at"
INSERT = (
    "INSERT INTO notifications (user_id, type, title, message, data_json, priority, "
    "created_at, queued, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
REGISTER = (
    "INSERT OR IGNORE INTO users (user_id, first_seen, dropped_since_connect) VALUES (?, ?, 0)"
)
OVER_CAP = (
    "SELECT user_id FROM notifications WHERE queued = 1 AND user_id IN ({users}) "
    "GROUP BY user_id HAVING count(*) > ?"
)
TRIM = (
    "UPDATE notifications SET queued = 0 WHERE id IN ("
    " SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY id DESC)"
    " AS rank FROM notifications WHERE queued = 1 AND user_id IN ({users})) WHERE rank > ?"
    ") RETURNING user_id"
)


def stamp(moment: datetime) -> str:
    """A datetime as the ``created_at``/``read_at`` columns store it (naive UTC text)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def parse_stamp(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def notification(row: Sequence[Any]) -> Notification:
    """A ``COLUMNS`` row as the domain value."""
    created = parse_stamp(row[7])
    assert created is not None
    return Notification(
        id=row[0],
        user_id=row[1],
        type=row[2],
        title=row[3],
        message=row[4],
        data_json=row[5],
        priority=Priority(row[6]),
        created_at=created,
        read_at=parse_stamp(row[8]),
    )


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _admitted(type_filter: TypeFilter) -> tuple[str, list[str]]:
    """``type_filter`` as a SQL condition and its parameters."""
    if type_filter.only is not None:
        if not type_filter.only:
            return "0", []
        only = sorted(type_filter.only)
        return f"type IN ({_marks(len(only))})", only
    if type_filter.excluded:
        excluded = sorted(type_filter.excluded)
        return f"type NOT IN ({_marks(len(excluded))})", excluded
    return "1", []


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
      before the next transaction begins, waiting at most
      ``RESET_WAIT_MS`` for readers; if they hold it up, it tries again
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
                        if await loop.run_in_executor(self._checkpointer, _truncate, conn):
                            self.idle_truncations += 1
                    elif not idle:
                        await loop.run_in_executor(self._checkpointer, _checkpoint, conn)
                except sqlite3.Error as exc:  # the next round retries
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            await asyncio.shield(loop.run_in_executor(self._checkpointer, conn.close))

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


# --- the transactions (each runs whole on the connection's thread) -----------------------


def create(
    conn: sqlite3.Connection,
    items: Sequence[NewNotification],
    *,
    now: datetime,
    unknown_users: Collection[str],
    away: Collection[str],
    queue_cap: int,
    delivered: Sequence[int] = (),
) -> tuple[list[tuple[Notification | int, bool]], list[Notification], dict[str, int]]:
    """Dequeue ``delivered``, insert ``items`` (queued), cap the ``away`` users' queues:
    the plan (see ``plan_creates``), the new rows, drops per user."""
    set_queued(conn, delivered, queued=False)  # before the cap counts what is still queued
    created_at = stamp(now)
    if unknown_users:
        conn.executemany(REGISTER, [(u, created_at) for u in sorted(unknown_users)])
    keys = sorted({(i.user_id, i.idempotency_key) for i in items if i.idempotency_key})
    existing: dict[tuple[str, str], Notification] = {}
    for chunk in _chunks(keys):
        pairs = ", ".join("(?, ?)" for _ in chunk)
        query = (
            f"SELECT {COLUMNS}, idempotency_key FROM notifications WHERE idempotency_key "
            f"IS NOT NULL AND (user_id, idempotency_key) IN (VALUES {pairs})"
        )
        for row in conn.execute(query, [v for pair in chunk for v in pair]):
            existing[(row[1], row[9])] = notification(row)
    fresh, plan = plan_creates(items, existing)
    rows = _insert(conn, fresh, now, created_at)
    users = sorted({n.user_id for n in rows if n.user_id in away})
    return plan, rows, _trim(conn, users, queue_cap)


def _insert(
    conn: sqlite3.Connection,
    items: Sequence[NewNotification],
    now: datetime,
    created_at: str,
) -> list[Notification]:
    if not items:
        return []
    users = [i.user_id for i in items]
    c = items[0].content
    if all(i.content is c and i.idempotency_key is None for i in items):
        # A broadcast: one content for every row; only the recipient changes.
        values: Iterable[tuple[Any, ...]] = zip(
            users,
            repeat(c.type),
            repeat(c.title),
            repeat(c.message),
            repeat(c.data_json),
            repeat(c.priority.value),
            repeat(created_at),
            repeat(True),
            repeat(None),
        )
    else:
        values = [
            (
                i.user_id,
                i.content.type,
                i.content.title,
                i.content.message,
                i.content.data_json,
                i.content.priority.value,
                created_at,
                True,
                i.idempotency_key,
            )
            for i in items
        ]
    if len(items) == 1:
        row = next(iter(values))
        ids: Iterable[int] = [conn.execute(INSERT + " RETURNING id", row).fetchone()[0]]
    else:
        # One writer, AUTOINCREMENT: the new ids are consecutive, ending at the last rowid.
        conn.executemany(INSERT, values)
        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        ids = range(last - len(items) + 1, last + 1)
    return [
        Notification(
            new_id,
            i.user_id,
            i.content.type,
            i.content.title,
            i.content.message,
            i.content.data_json,
            i.content.priority,
            now,
        )
        for new_id, i in zip(ids, items, strict=True)
    ]


def _trim(conn: sqlite3.Connection, users: Sequence[str], cap: int) -> dict[str, int]:
    # Counting is much cheaper than ranking, and few users are ever over the cap.
    over: list[str] = []
    for chunk in _chunks(users):
        over += (
            user
            for (user,) in conn.execute(OVER_CAP.format(users=_marks(len(chunk))), [*chunk, cap])
        )
    dropped: dict[str, int] = {}
    for chunk in _chunks(over):
        for (user,) in conn.execute(TRIM.format(users=_marks(len(chunk))), [*chunk, cap]):
            dropped[user] = dropped.get(user, 0) + 1
    if dropped:
        conn.executemany(
            "UPDATE users SET dropped_since_connect = dropped_since_connect + ? WHERE user_id = ?",
            [(n, u) for u, n in sorted(dropped.items())],
        )
    return dropped


def replay(
    conn: sqlite3.Connection,
    user_id: str,
    *,
    since: int | None,
    cap: int,
    type_filter: TypeFilter,
    now: datetime,
) -> Replay:
    """See ``Store.replay``."""
    cap = max(cap, 0)
    found_user = conn.execute(
        "SELECT dropped_since_connect FROM users WHERE user_id = ?", (user_id,)
    ).fetchone()
    if found_user is None:
        conn.execute(REGISTER, (user_id, stamp(now)))
    dropped = found_user[0] if found_user else 0
    (last_queued,) = conn.execute(
        "SELECT max(id) FROM notifications WHERE user_id = ? AND queued = 1", (user_id,)
    ).fetchone()
    admitted, admitted_args = _admitted(type_filter)
    owed, owed_args = ("queued = 1", []) if since is None else ("id > ?", [since])
    if since is None and last_queued is None:
        found: list[Notification] = []
    else:
        found = [
            notification(row)
            for row in conn.execute(
                f"SELECT {COLUMNS} FROM notifications WHERE user_id = ? AND {owed} "
                f"AND {admitted} ORDER BY id DESC LIMIT ?",
                [user_id, *owed_args, *admitted_args, cap + 1],
            )
        ]
    kept = found[:cap][::-1]
    if last_queued is not None:
        # Queued rows not returned leave the queue. ``kept`` holds every admitted owed row
        # from its first id up, so "not returned" is "not (admitted and id >= first)".
        stale = "user_id = ? AND queued = 1 AND id <= ?"
        args: list[Any] = [user_id, last_queued]
        if kept:
            stale += f" AND NOT ({admitted} AND id >= ?)"
            args += [*admitted_args, kept[0].id]
        conn.execute(f"UPDATE notifications SET queued = 0 WHERE {stale}", args)
    if dropped:
        conn.execute("UPDATE users SET dropped_since_connect = 0 WHERE user_id = ?", (user_id,))
    # A resume (``since``) is authoritative: queue drops do not make it incomplete.
    return Replay(kept, truncated=len(found) > cap or (since is None and bool(dropped)))


def set_queued(conn: sqlite3.Connection, ids: Sequence[int], queued: bool) -> None:
    """Take rows out of their queues (``queued=False``) or put them in."""
    flag, other = (1, 0) if queued else (0, 1)
    for chunk in _chunks(ids):
        conn.execute(
            f"UPDATE notifications SET queued = {flag} "
            f"WHERE queued = {other} AND id IN ({_marks(len(chunk))})",
            chunk,
        )


def mark_read(
    conn: sqlite3.Connection, user_id: str, notification_id: int, now: datetime
) -> Notification:
    """See ``Store.mark_read``."""
    row = (
        conn.execute(
            f"UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? "
            f"AND read_at IS NULL RETURNING {COLUMNS}",
            (stamp(now), notification_id, user_id),
        ).fetchone()
        or conn.execute(
            f"SELECT {COLUMNS} FROM notifications WHERE id = ? AND user_id = ?",
            (notification_id, user_id),
        ).fetchone()
    )
    if row is None:
        raise NotFound(f"notification {notification_id} not found")
    return notification(row)


def fetch_range(
    conn: sqlite3.Connection, after_id: int, upto_id: int, limit: int
) -> list[tuple[Notification, bool]]:
    """See ``Store.fetch_range``."""
    rows = conn.execute(
        f"SELECT {COLUMNS}, queued FROM notifications WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
        (after_id, upto_id, limit),
    )
    return [(notification(row), bool(row[9])) for row in rows]
