"""The store on PostgreSQL: several nodes may share the database; asyncpg, no ORM.

Every call is plain SQL on a connection of an asyncpg pool (prepared once per
connection, then cached by asyncpg); SQLAlchemy only runs the migrations. Lists go in
as arrays (``= ANY($1)``, ``unnest``), so a statement's text does not depend on how
many rows it touches.

Ids follow commit order across nodes. Sequence values are taken at INSERT, not at
COMMIT: two concurrent creates could commit out of id order, and a reader of
"everything after N" would skip the lower ids that commit last. So ``create`` holds an
exclusive transaction-level advisory lock (one create at a time, cluster-wide), and
the other queue writers (``replay``, ``dequeue``, ``requeue``) hold it shared: without
that a replay's clear and a create's trim could lock the same rows in opposite orders.
A transaction begins together with its lock, in one round trip.

A create usually needs no transaction of several statements: ``CREATE_AT_ONCE`` takes
the lock and writes in one statement, committed on its own, so one round trip and the
WAL flush. A statement's snapshot is taken before the lock is granted, so it checks,
once it holds the lock, that no transaction it cannot see has committed since (another
node's create, a requeue), and writes nothing otherwise; nor when the cap must trim a
queue. The group is then created in the transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from server.engine.errors import NotFound
from server.engine.filters import TypeFilter
from server.engine.models import (
    Counts,
    InboxQuery,
    NewNotification,
    Notification,
    Page,
    Preferences,
    Replay,
)
from server.engine.store import CreateResult, Turn
from server.engine.store_health import StoreHealth
from server.store import POSTGRES_SCHEMES, queue_cap, rows
from server.store.engines import QuickCloseConnection
from server.store.errors import guard_store
from server.store.rows import (
    COLUMNS,
    INSERT_COLUMNS,
    LIVE,
    MAX_ID,
    NCOLUMNS,
    ORPHANS,
    SHARED_COLUMNS,
    SOURCE,
    Plan,
    paged,
    plan_creates,
    same_content,
    valid_ids,
)
from server.store.tables import KEYED, QUEUED_POSTGRESQL

#: A connection lent by the pool.
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# Fixed 64-bit key of the advisory lock that orders creates ("tidings" + 1).
CREATE_LOCK = 0x74696469_6E677301

#: Seconds ``close`` waits for calls still running before it drops their connections.
CLOSE_WAIT = 1.0


# A create's statements run on their generic plans from the first run: planned for its
# values (a prepared statement's first five runs on a connection), a broadcast slice's
# cap check plans a 5 000-element array and then scans the table; with slices written
# on two connections in turns that is ten such runs per broadcast.
BEGIN_CREATE = (
    f"BEGIN; SELECT pg_advisory_xact_lock({CREATE_LOCK}); "
    "SET LOCAL plan_cache_mode = force_generic_plan"
)
BEGIN_QUEUE_WRITE = f"BEGIN; SELECT pg_advisory_xact_lock_shared({CREATE_LOCK})"

_ROWS = (
    "SELECT u, t, ti, m, d, p, $7, true, k, x, g FROM unnest("
    "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $8::text[], "
    "$9::timestamptz[], $10::boolean[]"
    ") WITH ORDINALITY AS i(u, t, ti, m, d, p, k, x, g, n) ORDER BY n"
)


def _over_cap(first: int) -> str:
    """The offline users (``$first``) whose queues a create's new rows may put over the
    cap (``$first+1``); its new rows are counted from the input (``$1``, each flagged
    offline or not by ``$first+2``).

    The rows a statement inserts are not visible to it, hence the input; read from it,
    not from the inserted rows filtered by ``user_id = ANY(...)``: on an array parameter
    that is a linear search per row in a generic plan (which PostgreSQL adopts from a
    prepared statement's sixth run on), 200 ms for a broadcast slice of 5 000 recipients.
    """
    over_cap, _ = queue_cap.statements(
        queued=QUEUED_POSTGRESQL,
        users=f"user_id = ANY(${first}::text[])",
        cap=f"${first + 1}",
        uncommitted=f"SELECT u FROM unnest($1::text[], ${first + 2}::boolean[]) AS a(u, away) "
        "WHERE away",
    )
    return over_cap


#: Insert (skipping rows whose idempotency key exists) and, in the same round trip, name
#: the offline users (``$11``, ``$13``) the new rows may put over the cap (``$12``). Rows
#: ``(id, user_id, idempotency_key, over)``: a new row, or (``over``) a user whose queue
#: the cap must trim. An item skipped for its key still counts there: ``TRIM`` ranks
#: the queue as it is, so a user named in excess loses nothing.
INSERT = (
    f"WITH new AS (INSERT INTO notifications ({INSERT_COLUMNS}) {_ROWS} "
    f"ON CONFLICT (user_id, idempotency_key) WHERE {KEYED} DO NOTHING "
    "RETURNING id, user_id, idempotency_key) "
    "SELECT id, user_id, idempotency_key, false FROM new UNION ALL "
    f"SELECT NULL, user_id, NULL, true FROM ({_over_cap(11)}) AS over_cap "
    "WHERE user_id IN (SELECT user_id FROM new)"
)
#: A broadcast: the content ($3, $4, $5) once, in ``contents``; then one narrow row per
#: recipient ($1) pointing at it. No idempotency keys, so nothing can conflict: a plain
#: insert (``ON CONFLICT`` would make each row a speculative insertion). One row: the
#: new ids, and the offline users (``$10``, ``$12``) whose queues the cap (``$11``) must
#: trim (NULL for none), as arrays (cheaper to read than a row each).
INSERT_SHARED = (
    "WITH content AS (INSERT INTO contents (title, message, data_json) VALUES ($3, $4, $5) "
    "RETURNING content_id), "
    f"new AS (INSERT INTO notifications ({SHARED_COLUMNS}) "
    "SELECT u, $2, $6, $7, true, NULL, $8::timestamptz, $9::boolean, "
    "(SELECT content_id FROM content) "
    "FROM unnest($1::text[]) WITH ORDINALITY AS i(u, n) ORDER BY n RETURNING id) "
    "SELECT (SELECT array_agg(id) FROM new), "
    f"(SELECT array_agg(user_id) FROM ({_over_cap(10)}) AS o)"
)
#: Whether a transaction this statement's snapshot cannot see has committed since (or
#: too many began to tell): read once the create lock is held, it says whether the
#: snapshot, taken before the lock, still sees all the lock's previous holders wrote.
_LATE = (
    "SELECT pg_current_xact_id()::text::bigint - pg_snapshot_xmax(s)::text::bigint > 64 "
    "OR EXISTS (SELECT FROM (SELECT pg_snapshot_xip(s) UNION ALL "
    "SELECT generate_series(pg_snapshot_xmax(s)::text::bigint, "
    "pg_current_xact_id()::text::bigint - 1)::text::xid8) AS since(x) "
    "WHERE pg_xact_status(x) = 'committed') FROM (SELECT pg_current_snapshot()) AS now(s)"
)
#: Whether an offline user of the input ($1, flagged by $12) would have more than the
#: cap ($11) queued with its new rows. Counted user by user (``user_id = u``), not with
#: ``= ANY``: a generic plan made while the table is small reads the whole table for
#: that (a sequential scan, every group, ever slower as the table grows), and an
#: equality keeps the index.
_CROWDED = (
    "SELECT FROM (SELECT u, count(*) AS n FROM unnest($1::text[], $12::boolean[]) "
    "AS a(u, away) WHERE away GROUP BY u) AS mine WHERE mine.n + (SELECT count(*) "
    f"FROM notifications WHERE user_id = mine.u AND {QUEUED_POSTGRESQL}) > $11"
)
#: A create in one statement, so in one round trip, committed on its own (autocommit):
#: the rows as ``INSERT`` takes them ($1 to $10), the cap ($11) and which of the rows are
#: for offline users ($12), the delivered ids to dequeue ($13) and the users to register
#: ($14). It takes the create lock, then writes only if its snapshot (taken
#: before the lock) is as good as one taken after it, and no offline user of the input
#: would go over the cap (counted before the dequeue: it may name a user in excess).
#: Rows ``(ok, id, user_id, idempotency_key)``: one ``(ok, NULL, ...)``, then the new rows
#: (none when not ``ok``; the caller then creates in a transaction of several statements).
#: Every write waits on the ``gate`` (a one-time filter), so on the lock.
CREATE_AT_ONCE = (
    f"WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock({CREATE_LOCK})), "
    f"gate AS MATERIALIZED (SELECT NOT ({_LATE}) AND NOT EXISTS ({_CROWDED}) AS ok "
    "FROM lock), "
    "dequeued AS (UPDATE notifications SET queued = false WHERE id = ANY($13::bigint[]) "
    "AND queued AND (SELECT ok FROM gate)), "
    "registered AS (INSERT INTO users (user_id, first_seen, dropped_since_connect) "
    "SELECT u, $7, 0 FROM unnest($14::text[]) AS u WHERE (SELECT ok FROM gate) "
    "ON CONFLICT (user_id) DO NOTHING), "
    f"new AS (INSERT INTO notifications ({INSERT_COLUMNS}) "
    f"{_ROWS.replace(' ORDER BY n', ' WHERE (SELECT ok FROM gate) ORDER BY n')} "
    f"ON CONFLICT (user_id, idempotency_key) WHERE {KEYED} DO NOTHING "
    "RETURNING id, user_id, idempotency_key) "
    "SELECT ok, NULL::bigint, NULL::text, NULL::text FROM gate "
    "UNION ALL SELECT true, id, user_id, idempotency_key FROM new"
)
REGISTER = (
    "INSERT INTO users (user_id, first_seen, dropped_since_connect) "
    "SELECT u, $2, 0 FROM unnest($1::text[]) AS u ON CONFLICT (user_id) DO NOTHING"
)
BY_KEY = (
    f"SELECT {COLUMNS}, idempotency_key FROM {SOURCE} WHERE idempotency_key IS NOT NULL "
    "AND (user_id, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
)
DEQUEUE = "UPDATE notifications SET queued = false WHERE id = ANY($1::bigint[]) AND queued"
REQUEUE = "UPDATE notifications SET queued = true WHERE id = ANY($1::bigint[]) AND NOT queued"
_, TRIM = queue_cap.statements(
    queued=QUEUED_POSTGRESQL, users="user_id = ANY($1::text[])", cap="$2"
)
COUNT_DROPS = queue_cap.COUNT_DROPS.format(dropped="$1", user="$2")
REPLAY_STATE = (
    "SELECT (SELECT dropped_since_connect FROM users WHERE user_id = $1), "
    "(SELECT max(id) FROM notifications WHERE user_id = $1 AND queued), "
    "ARRAY(SELECT type FROM muted_types WHERE user_id = $1 ORDER BY type)"
)
FETCH_RANGE = paged(
    "SELECT * FROM notifications WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
    "id",
    ", queued",
)


def _changed(update: str) -> str:
    """``update`` (a statement ending in ``RETURNING *``), answered with the changed row as a
    notification: RETURNING alone cannot read the content it shares."""
    return (
        f"WITH changed AS ({update}) "
        f"SELECT {rows.columns('changed')} FROM changed LEFT JOIN contents USING (content_id)"
    )


MARK_READ = _changed(
    "UPDATE notifications SET read_at = $3 WHERE id = $1 AND user_id = $2 "
    "AND read_at IS NULL RETURNING *"
)
MINE = f"SELECT {COLUMNS} FROM {SOURCE} WHERE id = $1 AND user_id = $2"
ARCHIVE = _changed(
    "UPDATE notifications SET archived_at = $3 WHERE id = $1 AND user_id = $2 "
    "AND archived_at IS NULL RETURNING *"
)
UNARCHIVE = _changed(
    "UPDATE notifications SET archived_at = NULL WHERE id = $1 AND user_id = $2 "
    "AND archived_at IS NOT NULL RETURNING *"
)
#: Rows ``(how many deleted, the contents they pointed at)`` (one row, always).
_GONE = (
    "WITH gone AS ({delete} RETURNING content_id) SELECT count(*), "
    "coalesce(array_agg(DISTINCT content_id) FILTER (WHERE content_id IS NOT NULL), "
    "'{{}}'::bigint[]) FROM gone"
)
DELETE = _GONE.format(delete="DELETE FROM notifications WHERE id = $1 AND user_id = $2")
#: The expiry sweep's step: the soonest expired rows no other node is deleting.
DELETE_EXPIRED = _GONE.format(
    delete="DELETE FROM notifications WHERE id IN (SELECT id FROM notifications "
    "WHERE expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2 "
    "FOR UPDATE SKIP LOCKED)"
)
DROP_ORPHANS = f"DELETE FROM contents WHERE {ORPHANS.format(ids='SELECT unnest($1::bigint[])')}"
NEWEST = "SELECT coalesce(max(id), 0) FROM notifications WHERE user_id = $1"
MUTED = "SELECT type FROM muted_types WHERE user_id = $1"
COUNTS = rows.COUNTS.format(user="$1", now="$2")
SET_MUTED = (
    "WITH gone AS (DELETE FROM muted_types WHERE user_id = $1) "
    "INSERT INTO muted_types (user_id, type) SELECT $1, t FROM unnest($2::text[]) AS t"
)


def dsn(url: str) -> str:
    """``url`` as asyncpg takes it (``postgresql://``, without a SQLAlchemy driver name)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in POSTGRES_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql://{rest}"


@guard_store
class PostgresStore:
    """The ``Store`` on a PostgreSQL database whose schema ``server.store.migrate`` brought
    up to date; ``schema`` (a search path) picks another schema than ``public``."""

    def __init__(self, url: str, *, schema: str | None = None, max_size: int = 20) -> None:
        self.health = StoreHealth()
        self._dsn = dsn(url)
        self._settings = {"search_path": schema} if schema is not None else {}
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        # Users known to be registered (rows are never deleted): a broadcast to everyone
        # need not register every recipient again.
        self._known: set[str] = set()
        # Offline users whose last create here trimmed their queue: a create for them is
        # likely to trim again, which ``CREATE_AT_ONCE`` cannot.
        self._crowded: set[str] = set()

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn,
            # No floor: asyncpg would keep reconnecting through an outage, and log
            # a traceback each time, instead of letting calls find out (and report).
            min_size=0,
            max_size=self._max_size,
            connection_class=QuickCloseConnection,
            server_settings=self._settings,
            reset=_reset,
        )
        try:
            await self.ping()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_WAIT)
        except TimeoutError:  # a call hangs on a database that does not answer
            pool.terminate()

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    async def create(
        self,
        items: Sequence[NewNotification],
        *,
        now: datetime,
        queue_cap: int,
        offline: Callable[[str], bool],
        delivered: Collection[int] = (),
        turn: Turn | None = None,
    ) -> CreateResult:
        if turn is not None and not items:
            await turn.commit()
        if not items:
            await self.dequeue(delivered)
            return CreateResult([])
        users = {item.user_id for item in items}
        away = [u for u in sorted(users) if offline(u)]
        taken = valid_ids(delivered)
        # One round trip where it can; never on a turn (a broadcast's slice: it must not
        # commit unless the slice before did, which only the transaction waits for).
        if turn is None and not self._crowded.intersection(away):
            at_once = await self._create_at_once(items, users, away, taken, now, queue_cap)
            if at_once is not None:
                self._known |= users
                return at_once
        insert = _Insert(items, now, away, queue_cap)  # built while the create before runs
        begin = BEGIN_CREATE
        if taken:  # before the cap counts what is still queued
            begin += f"; {_literal_dequeue(taken)}"
        if turn is not None:
            await turn.place()
        async with self._transaction(begin) as conn:
            if turn is not None:
                turn.began.set()  # the lock is ours: the next create may queue for it
            await self._register(conn, users, now)
            plan, ids, fresh, over = await insert.run(conn)
            dropped = await _trim(conn, over, queue_cap)
            if turn is not None:
                await turn.commit()
        self._known |= users
        self._crowded -= users
        self._crowded |= dropped.keys()
        # The rows are built once the lock is released: the next create may write meanwhile.
        new = rows.new_rows(ids, fresh, now)
        return CreateResult(rows.outcomes(plan, new), dropped, frozenset(ids))

    async def replay(
        self,
        user_id: str,
        *,
        since: int | None,
        cap: int,
        type_filter: TypeFilter,
        now: datetime,
    ) -> Replay:
        cap = max(cap, 0)
        async with self._transaction(BEGIN_QUEUE_WRITE) as conn:
            await self._register(conn, [user_id], now)
            state = await conn.fetchrow(REPLAY_STATE, user_id)
            assert state is not None  # one row, always
            dropped, last_queued, mute = state  # the muted types: used and returned as read
            admitted, args = _admitted(type_filter, first=2, now=now, muted=mute)
            owed = "queued" if since is None else f"id > ${len(args) + 2}"
            if since is not None:
                args.append(since)
            newest = await conn.fetch(
                paged(
                    f"SELECT * FROM notifications WHERE user_id = $1 AND {owed} "
                    f"AND {admitted} ORDER BY id DESC LIMIT ${len(args) + 2}",
                    "id DESC",
                ),
                user_id,
                *args,
                cap + 1,
            )
            found = [_notification(row) for row in newest]
            kept = found[:cap][::-1]
            if last_queued is not None:
                # Queued rows not returned leave the queue. ``kept`` holds every admitted
                # owed row from its first id up, and a queued row that high is owed: "not
                # returned" is "not (admitted and id >= first)".
                stale, stale_args = "user_id = $1 AND queued AND id <= $2", [last_queued]
                if kept:
                    admitted, more = _admitted(type_filter, first=3, now=now, muted=mute)
                    stale += f" AND NOT ({admitted} AND id >= ${len(more) + 3})"
                    stale_args += [*more, kept[0].id]
                await conn.execute(
                    f"UPDATE notifications SET queued = false WHERE {stale}", user_id, *stale_args
                )
            if dropped:
                await conn.execute(
                    "UPDATE users SET dropped_since_connect = 0 WHERE user_id = $1", user_id
                )
        # A resume (``since``) is authoritative: queue drops do not make it incomplete.
        return Replay(
            kept,
            truncated=len(found) > cap or (since is None and bool(dropped)),
            muted_types=tuple(mute),
        )

    async def dequeue(self, ids: Collection[int]) -> None:
        if wanted := valid_ids(ids):
            async with self._transaction(BEGIN_QUEUE_WRITE) as conn:
                await conn.execute(DEQUEUE, wanted)

    async def requeue(self, ids: Collection[int]) -> None:
        if wanted := valid_ids(ids):
            async with self._transaction(BEGIN_QUEUE_WRITE) as conn:
                await conn.execute(REQUEUE, wanted)

    async def fetch(self, ids: Collection[int]) -> list[Notification]:
        wanted = valid_ids(ids)
        if not wanted:
            return []
        query = f"SELECT {COLUMNS} FROM {SOURCE} WHERE id = ANY($1::bigint[]) ORDER BY id"
        async with self._connection() as conn:
            return [_notification(row) for row in await conn.fetch(query, wanted)]

    async def fetch_range(
        self, after_id: int, upto_id: int, limit: int
    ) -> list[tuple[Notification, bool]]:
        if limit <= 0 or upto_id <= after_id:
            return []
        async with self._connection() as conn:
            found = await conn.fetch(FETCH_RANGE, after_id, upto_id, limit)
        return [(_notification(row), row[NCOLUMNS]) for row in found]

    async def last_id(self) -> int:
        async with self._connection() as conn:
            return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM notifications"))

    async def inbox(self, user_id: str, query: InboxQuery, *, now: datetime) -> Page:
        limit = max(query.limit, 0)
        args: list[Any] = [user_id, limit + 1]

        def param(value: object) -> str:
            args.append(value)
            return f"${len(args)}"

        where = rows.inbox_where(query, now, param)
        sql = paged(
            f"SELECT * FROM notifications WHERE user_id = $1 AND {where} ORDER BY id DESC LIMIT $2",
            "id DESC",
        )
        async with self._connection() as conn:
            found = [_notification(row) for row in await conn.fetch(sql, *args)]
        return Page(found[:limit], has_more=len(found) > limit)

    async def counts(self, user_id: str, *, now: datetime) -> Counts:
        async with self._connection() as conn, conn.transaction(readonly=True):
            muted = {row[0] for row in await conn.fetch(MUTED, user_id)}
            groups = await conn.fetch(COUNTS, user_id, now)
        return rows.counts(groups, muted)

    async def mark_seen(self, user_id: str, up_to_id: int | None, now: datetime) -> tuple[int, int]:
        return await self._mark_many(user_id, "seen_at", up_to_id, now, None)

    async def mark_all_read(
        self, user_id: str, notification_type: str | None, up_to_id: int | None, now: datetime
    ) -> tuple[int, int]:
        return await self._mark_many(user_id, "read_at", up_to_id, now, notification_type)

    async def set_archived(
        self, user_id: str, notification_id: int, archived: bool, now: datetime
    ) -> Notification:
        if not rows.valid_id(notification_id):
            raise NotFound(f"notification {notification_id} not found")
        async with self._connection() as conn:
            if archived:
                row = await conn.fetchrow(ARCHIVE, notification_id, user_id, now)
            else:
                row = await conn.fetchrow(UNARCHIVE, notification_id, user_id)
            if row is None:  # already so, or not this user's
                row = await conn.fetchrow(MINE, notification_id, user_id)
        if row is None:
            raise NotFound(f"notification {notification_id} not found")
        return _notification(row)

    async def delete(self, user_id: str, notification_id: int) -> None:
        if not rows.valid_id(notification_id):
            raise NotFound(f"notification {notification_id} not found")
        async with self._connection() as conn:
            gone = await _delete(conn, DELETE, notification_id, user_id)
        if not gone:
            raise NotFound(f"notification {notification_id} not found")

    async def delete_expired(self, now: datetime, limit: int) -> int:
        if limit <= 0:
            return 0
        async with self._connection() as conn:
            return await _delete(conn, DELETE_EXPIRED, now, limit)

    async def preferences(self, user_id: str) -> Preferences:
        async with self._connection() as conn:
            found = await conn.fetch(MUTED, user_id)
        return Preferences(tuple(row[0] for row in found))

    async def set_preferences(self, user_id: str, preferences: Preferences) -> None:
        async with self._connection() as conn:
            await conn.execute(SET_MUTED, user_id, list(preferences.muted_types))

    async def _mark_many(
        self,
        user_id: str,
        column: str,
        up_to_id: int | None,
        now: datetime,
        notification_type: str | None,
    ) -> tuple[int, int]:
        """Set ``column`` to ``now`` where it is not set yet, on the user's rows (of
        ``notification_type``) up to an id: ``(that id, rows changed)``."""
        where = f"user_id = $1 AND id <= $2 AND {column} IS NULL AND {LIVE.format(now='$3')}"
        args: list[Any] = [user_id]
        if notification_type is not None:
            where += " AND type = $4"
        # Shared, as the queue writers: a create's trim never waits on these rows while
        # this waits on the create (see the module docstring).
        async with self._transaction(BEGIN_QUEUE_WRITE) as conn:
            if up_to_id is None:
                up_to_id = int(await conn.fetchval(NEWEST, user_id))
            up_to_id = min(up_to_id, MAX_ID)
            args += [up_to_id, now]
            if notification_type is not None:
                args.append(notification_type)
            status = await conn.execute(
                f"UPDATE notifications SET {column} = $3 WHERE {where}", *args
            )
        return up_to_id, int(status.rsplit(" ", 1)[-1])

    async def mark_read(self, user_id: str, notification_id: int, now: datetime) -> Notification:
        if not rows.valid_id(notification_id):
            raise NotFound(f"notification {notification_id} not found")
        async with self._connection() as conn:
            row = await conn.fetchrow(MARK_READ, notification_id, user_id, now)
            if row is None:  # already read (it keeps its read_at), or not this user's
                row = await conn.fetchrow(MINE, notification_id, user_id)
        if row is None:
            raise NotFound(f"notification {notification_id} not found")
        return _notification(row)

    async def known_users(self) -> list[str]:
        async with self._connection() as conn:
            found = await conn.fetch("SELECT user_id FROM users")
        # Sorted here, not in SQL: code-point order whatever the collation.
        known = sorted(row[0] for row in found)
        self._known.update(known)  # registered: a broadcast to them need not register them
        return known

    async def queued_count(self) -> int:
        query = f"SELECT count(*) FROM notifications WHERE {QUEUED_POSTGRESQL}"
        async with self._connection() as conn:
            return int(await conn.fetchval(query))

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise RuntimeError("the PostgreSQL store is not open")
        async with self._pool.acquire() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _transaction(self, begin: str) -> AsyncIterator[Conn]:
        """A transaction that ``begin`` opens (and locks), committed unless the body raises."""
        async with self._connection() as conn:
            await conn.execute(begin)
            try:
                yield conn
            except BaseException:
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def _create_at_once(
        self,
        items: Sequence[NewNotification],
        users: Collection[str],
        away: list[str],
        delivered: list[int],
        now: datetime,
        cap: int,
    ) -> CreateResult | None:
        """``create`` in one round trip (``CREATE_AT_ONCE``), or None, having written
        nothing, where it needs the transaction: a broadcast slice, a trim, or a create
        lock that another node's transaction held until after this one's snapshot."""
        fresh, plan = plan_creates(items, {})  # repeats within the batch
        if not fresh or (len(fresh) > 1 and same_content(fresh)) or _shared_runs(fresh):
            return None
        offline = set(away)
        async with self._connection() as conn:
            found = await conn.fetch(
                CREATE_AT_ONCE,
                *_row_arrays(fresh, now),
                cap,
                [i.user_id in offline for i in fresh],
                delivered,
                sorted(set(users) - self._known),
            )
            if not all(row[0] for row in found):  # the gate's row says no
                return None
            made = [row for row in found if row[1] is not None]
            ids = sorted(row[1] for row in made)
            if len(ids) < len(fresh):  # some keys exist already: those items yield their rows
                inserted = {(row[2], row[3]) for row in made if row[3] is not None}
                fresh, plan = await _replan(conn, items, fresh, inserted)
        # Ids are drawn in the SELECT's order: ascending ids are the items' order.
        new = rows.new_rows(ids, fresh, now)
        return CreateResult(rows.outcomes(plan, new), {}, frozenset(n.id for n in new))

    async def _register(self, conn: Conn, users: Collection[str], now: datetime) -> None:
        """Make these users known (first sighting wins)."""
        if unknown := sorted(set(users) - self._known):
            await conn.execute(REGISTER, unknown, now)


async def _delete(conn: Conn, statement: str, *args: Any) -> int:
    """Run a ``_GONE`` statement, then drop the contents it left without rows: how many
    rows it deleted.

    Each runs on its own (autocommit), in that order, and that is what finds every
    orphan: of two nodes deleting the last two rows of one content, the one checking
    last does so after both deletes committed and sees no row left. (Were the check in
    the delete's transaction, each could still see the other's uncommitted row and keep
    the content.) No create points a row at an existing content — each writes its own —
    so a content without rows stays so. A crash between the two leaves one content row
    behind, never a row without its content.
    """
    row = await conn.fetchrow(statement, *args)
    assert row is not None  # an aggregate: one row, always
    gone, unlinked = row
    if unlinked:
        await conn.execute(DROP_ORPHANS, unlinked)
    return int(gone)


def _literal_dequeue(ids: Sequence[int]) -> str:
    """``DEQUEUE`` with its ids written in, to travel with ``BEGIN`` in one round trip
    (a statement with parameters cannot); they are integers: nothing to escape."""
    array = ",".join(str(int(i)) for i in ids)
    return DEQUEUE.replace("$1::bigint[]", f"'{{{array}}}'::bigint[]")


async def _reset(conn: asyncpg.Connection) -> None:
    """Before a connection goes back to the pool: end a transaction a failure left open.

    Nothing else needs resetting (no session locks, LISTENs, cursors or settings), so
    this replaces asyncpg's reset query, a round trip on every release.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class _Insert:
    """The insert of a create's items that repeat no idempotency key, its arguments
    built before the transaction begins.

    Usually one round trip: the insert skips a key that exists already, and only then
    are the rows it repeats read.
    """

    def __init__(
        self, items: Sequence[NewNotification], now: datetime, away: list[str], cap: int
    ) -> None:
        self.items = items
        self.fresh, self.plan = plan_creates(items, {})  # repeats within the batch
        self.shared = len(self.fresh) > 1 and same_content(self.fresh)
        self.args: tuple[Any, ...] = ()
        #: Several broadcasts' slices (and creates between them): a statement per run.
        self.runs: list[tuple[bool, tuple[Any, ...]]] = []
        if not self.fresh:
            return
        fresh = self.fresh
        offline = set(away)
        if not self.shared and (runs := _shared_runs(fresh)):
            self.runs = [
                (shared, _args(fresh[start:end], shared, now, offline, away, cap))
                for start, end, shared in runs
            ]
        else:
            self.args = _args(fresh, self.shared, now, offline, away, cap)

    async def run(self, conn: Conn) -> tuple[Plan, list[int], Sequence[NewNotification], list[str]]:
        """The plan, the new ids, the items they were drawn for (in that order), and
        the ``away`` users now over the cap."""
        fresh, plan = self.fresh, self.plan
        if not fresh:
            return plan, [], [], []
        if self.runs:
            ids, over_runs = await self._run_each(conn)
            return plan, ids, fresh, over_runs
        if self.shared:
            shared = await conn.fetchrow(INSERT_SHARED, *self.args)
            assert shared is not None  # one row, always
            new_ids, over_cap = shared
            return plan, sorted(new_ids), fresh, sorted(over_cap or ())
        found = await conn.fetch(INSERT, *self.args)
        ids = sorted(row[0] for row in found if not row[3])
        over = sorted(row[1] for row in found if row[3])
        if len(ids) < len(fresh):  # some keys exist already: those items yield their rows
            inserted = {(row[1], row[2]) for row in found if not row[3] and row[2] is not None}
            fresh, plan = await _replan(conn, self.items, fresh, inserted)
        # Ids are drawn in the SELECT's order: ascending ids are the items' order.
        return plan, ids, fresh, over

    async def _run_each(self, conn: Conn) -> tuple[list[int], list[str]]:
        """``runs``, one statement each, in order (no keys: every item is a new row): the
        new ids and the ``away`` users over the cap. A run's cap check counts the rows
        of the runs before it (this transaction's): a user over the cap is named by the
        last run that holds it."""
        ids: list[int] = []
        over: set[str] = set()
        for shared, args in self.runs:
            if shared:
                row = await conn.fetchrow(INSERT_SHARED, *args)
                assert row is not None  # one row, always
                ids += row[0]
                over.update(row[1] or ())
                continue
            for found in await conn.fetch(INSERT, *args):
                if found[3]:
                    over.add(found[1])
                else:
                    ids.append(found[0])
        return sorted(ids), sorted(over)


def _shared_runs(fresh: Sequence[NewNotification]) -> list[tuple[int, int, bool]]:
    """``rows.content_runs`` of ``fresh`` when it holds a shared run and more (several
    broadcasts committed together) and no idempotency key (nothing can conflict); else
    an empty list."""
    if len(fresh) < 3 or any(i.idempotency_key is not None for i in fresh):
        return []
    runs = rows.content_runs(fresh)
    return runs if len(runs) > 1 and any(shared for _, _, shared in runs) else []


def _args(
    items: Sequence[NewNotification],
    shared: bool,
    now: datetime,
    offline: Collection[str],
    away: list[str],
    cap: int,
) -> tuple[Any, ...]:
    """The arguments of ``INSERT_SHARED`` (``shared``: the items differ by recipient
    only) or ``INSERT`` for ``items``."""
    recipients = [i.user_id for i in items]
    flags = [u in offline for u in recipients]
    if not shared:
        return (*_row_arrays(items, now), away, cap, flags)
    first = items[0]
    c = first.content
    return (
        recipients,
        *(c.type, c.title, c.message, c.data_json, c.priority.value),
        now,
        first.expires_at,
        first.ignore_mutes,
        away,
        cap,
        flags,
    )


def _row_arrays(fresh: Sequence[NewNotification], now: datetime) -> tuple[Any, ...]:
    """The rows of ``fresh`` as the insert's arrays, ``$1`` to ``$10`` (see ``_ROWS``)."""
    return (
        [i.user_id for i in fresh],
        [i.content.type for i in fresh],
        [i.content.title for i in fresh],
        [i.content.message for i in fresh],
        [i.content.data_json for i in fresh],
        [i.content.priority.value for i in fresh],
        now,
        [i.idempotency_key for i in fresh],
        [i.expires_at for i in fresh],
        [i.ignore_mutes for i in fresh],
    )


async def _replan(
    conn: Conn,
    items: Sequence[NewNotification],
    fresh: Sequence[NewNotification],
    inserted: Collection[tuple[str, str]],
) -> tuple[list[NewNotification], Plan]:
    """``plan_creates`` of ``items`` once the rows of the keys ``fresh`` repeats (those
    not ``inserted`` by it) are read: those items yield them."""
    keys = [
        key for i in fresh if (key := rows.idempotency_key(i)) is not None and key not in inserted
    ]
    existing = {
        (row[1], row[NCOLUMNS]): _notification(row)
        for row in await conn.fetch(BY_KEY, [u for u, _ in keys], [k for _, k in keys])
    }
    return plan_creates(items, existing)


async def _trim(conn: Conn, over: Sequence[str], cap: int) -> dict[str, int]:
    """Trim the queues of these users, over the cap (``server.store.queue_cap``)."""
    if not over:
        return {}
    dropped: dict[str, int] = {}
    for row in await conn.fetch(TRIM, over, cap):
        dropped[row[0]] = dropped.get(row[0], 0) + 1
    await conn.executemany(COUNT_DROPS, [(n, u) for u, n in sorted(dropped.items())])
    return dropped


def _admitted(
    type_filter: TypeFilter, *, first: int, now: datetime, muted: list[str]
) -> tuple[str, list[Any]]:
    """What a replay owes of the rows (``type_filter``, not expired at ``now``, not of a
    ``muted`` type unless it ignores mutes) as a condition whose parameters number from
    ``first``."""
    where, args = LIVE.format(now=f"${first}"), list[Any]([now])
    if muted:
        where += f" AND (ignore_mutes OR NOT (type = ANY(${first + 1}::text[])))"
        args.append(muted)
    n = first + len(args)
    if type_filter.only is not None:
        if not type_filter.only:
            return "false", []
        return f"{where} AND type = ANY(${n}::text[])", [*args, sorted(type_filter.only)]
    if type_filter.excluded:
        return f"{where} AND NOT (type = ANY(${n}::text[]))", [
            *args,
            sorted(type_filter.excluded),
        ]
    return where, args


def _notification(row: rows.Record) -> Notification:
    """A ``COLUMNS`` record (asyncpg reads ``timestamptz`` as aware UTC datetimes)."""
    return rows.notification(row, lambda moment: moment)
