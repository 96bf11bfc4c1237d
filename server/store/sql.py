"""The SQL store: SQLite (aiosqlite, the default) or PostgreSQL (asyncpg) via SQLAlchemy async.

Writers never interleave where it matters:

* SQLite serialises writers itself; a writing transaction starts with ``BEGIN IMMEDIATE``
  so it waits for the lock (``busy_timeout``) instead of failing when it upgrades from
  a read snapshot that another writer has since changed.
* PostgreSQL: ``create`` holds an exclusive transaction-level advisory lock, and the
  other queue writers (``replay``, ``dequeue``) hold it shared. See ``create`` for why.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Update,
    and_,
    bindparam,
    event,
    false,
    func,
    not_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from server.engine.errors import NotFound, StoreUnavailable
from server.engine.filters import TypeFilter
from server.engine.models import (
    NewNotification,
    Notification,
    Page,
    Priority,
    Replay,
)
from server.store import sqlite
from server.store.base import CreateResult
from server.store.errors import guard_store
from server.store.health import StoreHealth
from server.store.rows import Plan, idempotency_key, outcomes, plan_creates
from server.store.tables import notifications as N
from server.store.tables import users as U

# Fixed 64-bit keys of the PostgreSQL advisory locks ("tidings" + a number).
CREATE_LOCK = 0x74696469_6E677301
MIGRATE_LOCK = 0x74696469_6E677302

# Execution option marking a transaction as a writer (SQLite: ``BEGIN IMMEDIATE``).
WRITE_OPTION = "tidings_write"

# Seconds a PostgreSQL connection waits for the server to acknowledge its close.
CLOSE_TIMEOUT = 0.25

# Ids and users per statement in IN lists: well under every driver's parameter limit.
CHUNK = 500

_T = TypeVar("_T")
_MAX_ID = 2**63 - 1
_DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}
_SQLITE_PRAGMAS = ("busy_timeout=5000", "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
_FIELDS = (
    N.c.id,
    N.c.user_id,
    N.c.type,
    N.c.title,
    N.c.message,
    N.c.data_json,
    N.c.priority,
    N.c.created_at,
    N.c.read_at,
)


def normalise_url(url: str) -> URL:
    """``url`` with its async driver: ``postgres(ql)://`` → asyncpg, ``sqlite://`` → aiosqlite."""
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def make_engine(url: str, *, echo: bool = False, schema: str | None = None) -> AsyncEngine:
    """An async engine for ``url``; ``schema`` (PostgreSQL only) becomes the search path."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        if schema is not None:
            raise ValueError("a schema can only be chosen on PostgreSQL")
        _check_folder(parsed.database)
        engine = create_async_engine(parsed, echo=echo)
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {"connection_class": _Connection}
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


class _Connection(asyncpg.Connection):
    """An asyncpg connection whose close gives up on a server that does not answer.

    A graceful close waits for the server to hang up; through a dead network path that
    is forever, and closing the pool at shutdown would hang. After ``CLOSE_TIMEOUT``
    the connection is dropped instead (the server already has our goodbye).
    """

    async def close(self, *, timeout: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):  # then asyncpg aborted the connection
            await super().close(timeout=CLOSE_TIMEOUT if timeout is None else timeout)


def _check_folder(database: str | None) -> None:
    """SQLite creates a missing file, not a missing folder: say so before the driver
    fails (its connection thread can outlive the event loop and print a traceback)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).absolute().parent
    if not folder.is_dir():
        raise StoreUnavailable(f"unable to open database file: no directory {folder}")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN skips SELECTs and DDL; ``_begin`` emits it instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@guard_store
class SqlStore:
    """The ``Store`` on a SQL database whose schema ``server.store.migrate`` brought up to date."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        schema: str | None = None,
        sqlite_wal_limit: int = sqlite.WAL_LIMIT,
        sqlite_checkpoint_every: float = sqlite.CHECKPOINT_EVERY,
    ) -> None:
        self.health = StoreHealth()
        self._engine = make_engine(url, echo=echo, schema=schema)
        self._writer = self._engine.execution_options(**{WRITE_OPTION: True})
        self._pg = self._engine.dialect.name == "postgresql"
        #: SQLite: the hot paths run whole transactions on this connection's thread.
        self._lite: sqlite.SqliteConnection | None = None
        if not self._pg:
            database = self._engine.url.database
            if not database or database == ":memory:":
                raise ValueError("SQLite needs a database file (not :memory:)")
            self._lite = sqlite.SqliteConnection(
                database, wal_limit=sqlite_wal_limit, checkpoint_every=sqlite_checkpoint_every
            )
        # Users known to be registered (rows are never deleted): a broadcast to everyone
        # need not upsert every recipient again. On SQLite it holds every user.
        self._known: set[str] = set()

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (for tooling and tests)."""
        return self._engine

    async def open(self) -> None:
        await self.ping()
        if self._lite is not None:
            await self._lite.open()
            # SQLite serves one node: the set of registered users stays complete here.
            async with self._engine.connect() as conn:
                self._known = set(await conn.scalars(select(U.c.user_id)))

    async def close(self) -> None:
        if self._lite is not None:
            await self._lite.close()
        await self._engine.dispose()

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(select(1))

    async def create(
        self,
        items: Sequence[NewNotification],
        *,
        now: datetime,
        queue_cap: int,
        offline: Callable[[str], bool],
        delivered: Collection[int] = (),
    ) -> CreateResult:
        if not items:
            await self.dequeue(delivered)
            return CreateResult([])
        users = {item.user_id for item in items}
        away = {u for u in sorted(users) if offline(u)}
        taken = _valid_ids(delivered)
        if self._lite is not None:
            plan, rows, dropped = await self._lite.transaction(
                functools.partial(
                    sqlite.create,
                    items=items,
                    now=now,
                    unknown_users=users - self._known,
                    away=away,
                    queue_cap=queue_cap,
                    delivered=taken,
                )
            )
        else:
            plan, rows, dropped = await self._create(items, now, users, away, queue_cap, taken)
        self._known |= users
        return CreateResult(outcomes(plan, rows), dropped, frozenset(row.id for row in rows))

    async def _create(
        self,
        items: Sequence[NewNotification],
        now: datetime,
        users: set[str],
        away: set[str],
        queue_cap: int,
        delivered: Sequence[int],
    ) -> tuple[Plan, list[Notification], dict[str, int]]:
        async with self._writer.begin() as conn:
            if self._pg:
                # Sequence values are taken at INSERT, not at COMMIT: two concurrent creates
                # could commit out of id order, and a reader of "everything after N" would
                # skip the lower ids that commit last. One create at a time, cluster-wide,
                # makes id order commit order.
                await conn.execute(select(func.pg_advisory_xact_lock(CREATE_LOCK)))
            await _dequeue(conn, delivered)  # before the cap counts what is still queued
            await self._register(conn, users, now)
            existing = await _by_key(conn, {k for item in items if (k := idempotency_key(item))})
            fresh, plan = plan_creates(items, existing)
            rows = await self._insert(conn, fresh, now)
            dropped = await _trim(conn, sorted(away & {row.user_id for row in rows}), queue_cap)
        return plan, rows, dropped

    async def replay(
        self, user_id: str, *, since: int | None, cap: int, type_filter: TypeFilter, now: datetime
    ) -> Replay:
        if self._lite is not None:
            replay = await self._lite.transaction(
                functools.partial(
                    sqlite.replay,
                    user_id=user_id,
                    since=since,
                    cap=cap,
                    type_filter=type_filter,
                    now=now,
                )
            )
            self._known.add(user_id)
            return replay
        cap = max(cap, 0)
        admitted = _admitted(type_filter)
        mine = N.c.user_id == user_id
        async with self._writer.begin() as conn:
            await self._share_create_lock(conn)
            await self._register(conn, [user_id], now)
            dropped = await conn.scalar(
                select(U.c.dropped_since_connect).where(U.c.user_id == user_id)
            )
            last_queued = await conn.scalar(select(func.max(N.c.id)).where(mine, N.c.queued))
            owed = N.c.queued if since is None else N.c.id > since
            newest = await conn.execute(
                select(*_FIELDS).where(mine, owed, admitted).order_by(N.c.id.desc()).limit(cap + 1)
            )
            found = [_notification(row) for row in newest]
            kept = found[:cap][::-1]
            if last_queued is not None:
                stale = and_(mine, N.c.queued, N.c.id <= last_queued)
                if kept:
                    # ``kept`` holds every admitted owed row from its first id up, and a
                    # queued row that high is owed: "not returned" is "not (admitted and
                    # id >= first)".
                    stale = and_(stale, not_(and_(admitted, N.c.id >= kept[0].id)))
                await conn.execute(update(N).where(stale).values(queued=False))
            if dropped:
                await conn.execute(
                    update(U).where(U.c.user_id == user_id).values(dropped_since_connect=0)
                )
        # A resume (``since``) is authoritative: queue drops do not make it incomplete.
        return Replay(kept, truncated=len(found) > cap or (since is None and bool(dropped)))

    async def dequeue(self, ids: Collection[int]) -> None:
        wanted = _valid_ids(ids)
        if not wanted:
            return
        if self._lite is not None:
            await self._lite.transaction(
                functools.partial(sqlite.set_queued, ids=wanted, queued=False)
            )
            return
        async with self._writer.begin() as conn:
            await self._share_create_lock(conn)
            await _dequeue(conn, wanted)

    async def requeue(self, ids: Collection[int]) -> None:
        wanted = _valid_ids(ids)
        if not wanted:
            return
        if self._lite is not None:
            await self._lite.transaction(
                functools.partial(sqlite.set_queued, ids=wanted, queued=True)
            )
            return
        async with self._writer.begin() as conn:
            await self._share_create_lock(conn)
            for chunk in _chunks(wanted):
                await conn.execute(
                    update(N).where(N.c.id.in_(chunk), not_(N.c.queued)).values(queued=True)
                )

    async def fetch(self, ids: Collection[int]) -> list[Notification]:
        found: list[Notification] = []
        async with self._engine.connect() as conn:
            for chunk in _chunks(_valid_ids(ids)):
                query = select(*_FIELDS).where(N.c.id.in_(chunk)).order_by(N.c.id)
                found.extend(_notification(row) for row in await conn.execute(query))
        return found

    async def fetch_range(
        self, after_id: int, upto_id: int, limit: int
    ) -> list[tuple[Notification, bool]]:
        if limit <= 0 or upto_id <= after_id:
            return []
        if self._lite is not None:
            return await self._lite.transaction(
                functools.partial(
                    sqlite.fetch_range, after_id=after_id, upto_id=upto_id, limit=limit
                )
            )
        query = (
            select(*_FIELDS, N.c.queued)
            .where(N.c.id > after_id, N.c.id <= upto_id)
            .order_by(N.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [(_notification(row), bool(row.queued)) for row in await conn.execute(query)]

    async def last_id(self) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.coalesce(func.max(N.c.id), 0))) or 0)

    async def inbox(
        self, user_id: str, *, unread_only: bool, limit: int, before_id: int | None
    ) -> Page:
        limit = max(limit, 0)
        query = select(*_FIELDS).where(N.c.user_id == user_id)
        if unread_only:
            query = query.where(N.c.read_at.is_(None))
        if before_id is not None:
            query = query.where(N.c.id < before_id)
        async with self._engine.connect() as conn:
            result = await conn.execute(query.order_by(N.c.id.desc()).limit(limit + 1))
            rows = [_notification(row) for row in result]
        return Page(rows[:limit], has_more=len(rows) > limit)

    async def unread_count(self, user_id: str) -> int:
        query = select(func.count()).where(N.c.user_id == user_id, N.c.read_at.is_(None))
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    async def mark_read(self, user_id: str, notification_id: int, now: datetime) -> Notification:
        if not _valid_id(notification_id):
            raise NotFound(f"notification {notification_id} not found")
        if self._lite is not None:
            return await self._lite.transaction(
                functools.partial(
                    sqlite.mark_read, user_id=user_id, notification_id=notification_id, now=now
                )
            )
        mine = and_(N.c.id == notification_id, N.c.user_id == user_id)
        async with self._writer.begin() as conn:
            marked = await conn.execute(
                update(N).where(mine, N.c.read_at.is_(None)).values(read_at=now).returning(*_FIELDS)
            )
            row = marked.first() or (await conn.execute(select(*_FIELDS).where(mine))).first()
        if row is None:
            raise NotFound(f"notification {notification_id} not found")
        return _notification(row)

    async def known_users(self) -> list[str]:
        if self._lite is not None:  # every registration goes through this process
            return sorted(self._known)
        async with self._engine.connect() as conn:
            # Sorted here, not in SQL: code-point order on every backend and collation.
            return sorted(await conn.scalars(select(U.c.user_id)))

    async def queued_count(self) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).where(N.c.queued)) or 0)

    async def _share_create_lock(self, conn: AsyncConnection) -> None:
        # Queue writers wait for a running create (and it for them): without this a
        # replay's clear and a create's trim lock the same rows in opposite orders.
        if self._pg:
            await conn.execute(select(func.pg_advisory_xact_lock_shared(CREATE_LOCK)))

    async def _register(
        self, conn: AsyncConnection, user_ids: Iterable[str], now: datetime
    ) -> None:
        """Make these users known (first sighting wins)."""
        unknown = sorted(set(user_ids) - self._known)
        if not unknown:
            return
        new: Insert = (pg_insert if self._pg else sqlite_insert)(U).on_conflict_do_nothing(
            index_elements=[U.c.user_id]
        )
        await conn.execute(new, [{"user_id": u, "first_seen": now} for u in unknown])

    async def _insert(
        self,
        conn: AsyncConnection,
        items: Sequence[NewNotification],
        now: datetime,
    ) -> list[Notification]:
        """Batched multi-row INSERT … RETURNING, ordered by parameter position; the rows
        in item order, all queued."""
        if not items:
            return []
        values = [
            {
                "user_id": item.user_id,
                "type": item.content.type,
                "title": item.content.title,
                "message": item.content.message,
                "data_json": item.content.data_json,
                "priority": item.content.priority.value,
                "created_at": now,
                "queued": True,
                "idempotency_key": item.idempotency_key,
            }
            for item in items
        ]
        returning = N.insert().returning(N.c.id, sort_by_parameter_order=True)
        ids = list(await conn.scalars(returning, values))
        return [
            Notification(
                id=new_id,
                user_id=item.user_id,
                type=item.content.type,
                title=item.content.title,
                message=item.content.message,
                data_json=item.content.data_json,
                priority=item.content.priority,
                created_at=now,
            )
            for new_id, item in zip(ids, items, strict=True)
        ]


async def _by_key(
    conn: AsyncConnection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Notification]:
    """The existing rows with these ``(user_id, idempotency_key)`` pairs."""
    found: dict[tuple[str, str], Notification] = {}
    for chunk in _chunks(sorted(keys)):
        query = select(*_FIELDS, N.c.idempotency_key).where(
            N.c.idempotency_key.is_not(None),
            tuple_(N.c.user_id, N.c.idempotency_key).in_(chunk),
        )
        for row in await conn.execute(query):
            found[(row.user_id, row.idempotency_key)] = _notification(row)
    return found


async def _dequeue(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Take these rows out of their queues."""
    for chunk in _chunks(ids):
        await conn.execute(update(N).where(N.c.id.in_(chunk), N.c.queued).values(queued=False))


async def _trim(conn: AsyncConnection, user_ids: Sequence[str], cap: int) -> dict[str, int]:
    """Take each user's oldest queued rows beyond ``cap`` out of the queue; drops per user."""
    dropped: Counter[str] = Counter()
    for chunk in _chunks(user_ids):
        dropped.update(await conn.scalars(_trim_statement(chunk, cap)))
    if dropped:
        await conn.execute(
            update(U)
            .where(U.c.user_id == bindparam("b_user_id"))
            .values(dropped_since_connect=U.c.dropped_since_connect + bindparam("b_dropped")),
            [{"b_user_id": u, "b_dropped": n} for u, n in sorted(dropped.items())],
        )
    return dict(dropped)


def _trim_statement(user_ids: Sequence[str], cap: int) -> Update:
    newest_first = func.row_number().over(partition_by=N.c.user_id, order_by=N.c.id.desc())
    ranked = (
        select(N.c.id, newest_first.label("rank"))
        .where(N.c.queued, N.c.user_id.in_(user_ids))
        .subquery()
    )
    beyond_cap = select(ranked.c.id).where(ranked.c.rank > cap)
    return update(N).where(N.c.id.in_(beyond_cap)).values(queued=False).returning(N.c.user_id)


def _admitted(type_filter: TypeFilter) -> ColumnElement[bool]:
    """``type_filter`` as a condition on the ``type`` column."""
    if type_filter.only is not None:
        return N.c.type.in_(sorted(type_filter.only)) if type_filter.only else false()
    return N.c.type.not_in(sorted(type_filter.excluded)) if type_filter.excluded else true()


def _notification(row: Row[Any, *tuple[Any, ...]]) -> Notification:
    return Notification(
        id=row.id,
        user_id=row.user_id,
        type=row.type,
        title=row.title,
        message=row.message,
        data_json=row.data_json,
        priority=Priority(row.priority),
        created_at=row.created_at,
        read_at=row.read_at,
    )


def _valid_id(notification_id: int) -> bool:
    # An id no column can hold would make the driver raise; it simply does not exist.
    return 0 < notification_id <= _MAX_ID


def _valid_ids(ids: Collection[int]) -> list[int]:
    return sorted({i for i in ids if _valid_id(i)})


def _chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
