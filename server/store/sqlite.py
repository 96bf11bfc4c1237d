"""The store on SQLite (the default): one node, one database file.

The writes every delivery depends on — create, replay, queue marks, mark-read — and
the catch-up range read run as one plain function each, whole transactions, on the
dedicated connection thread of ``SqliteConnection`` (see there, also for the bounded
write-ahead log). SQLAlchemy (aiosqlite) serves the other reads; the schema stays
SQLModel's and Alembic's. Partial-index predicates are spelled ``queued = 1``, the way
the index is declared, so that SQLite uses it.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

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
from server.store import queue_cap, rows
from server.store.engines import make_engine
from server.store.errors import guard_store
from server.store.rows import (
    COLUMNS,
    INSERT_COLUMNS,
    LIVE,
    NCOLUMNS,
    ORPHANS,
    SHARED_COLUMNS,
    SOURCE,
    Plan,
    chunks,
    paged,
    plan_creates,
    same_content,
    valid_ids,
)
from server.store.sqlite_connection import CHECKPOINT_EVERY, WAL_LIMIT, SqliteConnection
from server.store.tables import QUEUED_SQLITE
from server.store.tables import contents as C
from server.store.tables import notifications as N
from server.store.tables import users as U

CHUNK = 500  # parameters per IN list, well under SQLITE_MAX_VARIABLE_NUMBER

MUTED = "SELECT type FROM muted_types WHERE user_id = ? ORDER BY type"
#: The expiry sweep's step: the soonest expired rows, through the partial index.
DELETE_EXPIRED = (
    "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications "
    "WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?) "
    "RETURNING content_id"
)

INSERT = f"INSERT INTO notifications ({INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_CONTENT = (
    "INSERT INTO contents (title, message, data_json) VALUES (?, ?, ?) RETURNING content_id"
)
#: A broadcast's rows, one per recipient of a JSON array (the last parameter), in its
#: order: one statement, no parameters bound per row.
INSERT_SHARED = (
    f"INSERT INTO notifications ({SHARED_COLUMNS}) "
    "SELECT value, ?, ?, ?, 1, NULL, ?, ?, ? FROM json_each(?) ORDER BY key"
)
#: A broadcast slice's rows come from ``json_each`` (built into SQLite since 3.38).
JSON_CHECK = "SELECT count(*) FROM json_each('[]')"
MINE = f"SELECT {COLUMNS} FROM {SOURCE} WHERE id = ? AND user_id = ?"
REGISTER = (
    "INSERT OR IGNORE INTO users (user_id, first_seen, dropped_since_connect) VALUES (?, ?, 0)"
)
_FIELDS = (
    N.c.id,
    N.c.user_id,
    N.c.type,
    func.coalesce(N.c.title, C.c.title),
    func.coalesce(N.c.message, C.c.message),
    func.coalesce(N.c.data_json, C.c.data_json),
    N.c.priority,
    N.c.created_at,
    N.c.read_at,
    N.c.seen_at,
    N.c.archived_at,
    N.c.expires_at,
    N.c.ignore_mutes,
)


@guard_store
class SqliteStore:
    """The ``Store`` on a SQLite file whose schema ``server.store.migrate`` brought up to date."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        wal_limit: int = WAL_LIMIT,
        checkpoint_every: float = CHECKPOINT_EVERY,
    ) -> None:
        self.health = StoreHealth()
        self._engine = make_engine(url, echo=echo)
        database = self._engine.url.database
        if not database or database == ":memory:":
            raise ValueError("SQLite needs a database file (not :memory:)")
        #: The hot paths run whole transactions on this connection's thread.
        self._lite = SqliteConnection(
            database, wal_limit=wal_limit, checkpoint_every=checkpoint_every
        )
        # Every registered user: SQLite serves one node, all registrations pass here.
        self._known: set[str] = set()

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine of the cold paths (for tooling and tests)."""
        return self._engine

    async def open(self) -> None:
        await self.ping()
        await self._check_json()
        await self._lite.open()
        async with self._engine.connect() as conn:
            self._known = set(await conn.scalars(select(U.c.user_id)))

    async def close(self) -> None:
        await self._lite.close()
        await self._engine.dispose()
        self._lite.release()  # the last: see there

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(select(1))

    async def _check_json(self) -> None:
        """Refuse to start on a SQLite without its JSON functions, with a clear error."""
        async with self._engine.connect() as conn:
            try:
                await conn.exec_driver_sql(JSON_CHECK)
            except OperationalError as exc:
                raise RuntimeError(
                    f"SQLite {sqlite3.sqlite_version} has no JSON functions (json_each); "
                    "Tidings needs SQLite 3.38 or later, or one built with JSON1"
                ) from exc

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
        if turn is not None:  # one create at a time: its turn is once the one before is over
            await turn.commit()
        if not items:
            await self.dequeue(delivered)
            return CreateResult([])
        users = {item.user_id for item in items}
        plan, new, dropped = await self._lite.transaction(
            functools.partial(
                create,
                items=items,
                now=now,
                unknown_users=users - self._known,
                away={u for u in sorted(users) if offline(u)},
                queue_cap=queue_cap,
                delivered=valid_ids(delivered),
            )
        )
        self._known |= users
        return CreateResult(rows.outcomes(plan, new), dropped, frozenset(n.id for n in new))

    async def replay(
        self,
        user_id: str,
        *,
        since: int | None,
        cap: int,
        type_filter: TypeFilter,
        now: datetime,
    ) -> Replay:
        result = await self._lite.transaction(
            functools.partial(
                replay, user_id=user_id, since=since, cap=cap, type_filter=type_filter, now=now
            )
        )
        self._known.add(user_id)
        return result

    async def dequeue(self, ids: Collection[int]) -> None:
        if wanted := valid_ids(ids):
            await self._lite.transaction(functools.partial(set_queued, ids=wanted, queued=False))

    async def requeue(self, ids: Collection[int]) -> None:
        if wanted := valid_ids(ids):
            await self._lite.transaction(functools.partial(set_queued, ids=wanted, queued=True))

    async def fetch(self, ids: Collection[int]) -> list[Notification]:
        found: list[Notification] = []
        async with self._engine.connect() as conn:
            for chunk in chunks(valid_ids(ids), CHUNK):
                query = (
                    select(*_FIELDS)
                    .select_from(N.outerjoin(C, C.c.content_id == N.c.content_id))
                    .where(N.c.id.in_(chunk))
                    .order_by(N.c.id)
                )
                found.extend(_notification(row) for row in await conn.execute(query))
        return found

    async def fetch_range(
        self, after_id: int, upto_id: int, limit: int
    ) -> list[tuple[Notification, bool]]:
        if limit <= 0 or upto_id <= after_id:
            return []
        return await self._lite.transaction(
            functools.partial(fetch_range, after_id=after_id, upto_id=upto_id, limit=limit)
        )

    async def last_id(self) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.coalesce(func.max(N.c.id), 0))) or 0)

    async def inbox(self, user_id: str, query: InboxQuery, *, now: datetime) -> Page:
        return await self._lite.transaction(
            functools.partial(inbox, user_id=user_id, query=query, now=now)
        )

    async def counts(self, user_id: str, *, now: datetime) -> Counts:
        return await self._lite.transaction(functools.partial(counts, user_id=user_id, now=now))

    async def mark_read(self, user_id: str, notification_id: int, now: datetime) -> Notification:
        if not rows.valid_id(notification_id):
            raise NotFound(f"notification {notification_id} not found")
        return await self._lite.transaction(
            functools.partial(mark_read, user_id=user_id, notification_id=notification_id, now=now)
        )

    async def mark_seen(self, user_id: str, up_to_id: int | None, now: datetime) -> tuple[int, int]:
        return await self._lite.transaction(
            functools.partial(
                mark_many, user_id=user_id, column="seen_at", up_to_id=up_to_id, now=now
            )
        )

    async def mark_all_read(
        self, user_id: str, notification_type: str | None, up_to_id: int | None, now: datetime
    ) -> tuple[int, int]:
        return await self._lite.transaction(
            functools.partial(
                mark_many,
                user_id=user_id,
                column="read_at",
                up_to_id=up_to_id,
                now=now,
                notification_type=notification_type,
            )
        )

    async def set_archived(
        self, user_id: str, notification_id: int, archived: bool, now: datetime
    ) -> Notification:
        if not rows.valid_id(notification_id):
            raise NotFound(f"notification {notification_id} not found")
        return await self._lite.transaction(
            functools.partial(
                set_archived,
                user_id=user_id,
                notification_id=notification_id,
                archived=archived,
                now=now,
            )
        )

    async def delete(self, user_id: str, notification_id: int) -> None:
        if not rows.valid_id(notification_id):
            raise NotFound(f"notification {notification_id} not found")
        await self._lite.transaction(
            functools.partial(delete, user_id=user_id, notification_id=notification_id)
        )

    async def delete_expired(self, now: datetime, limit: int) -> int:
        if limit <= 0:
            return 0
        return await self._lite.transaction(functools.partial(delete_expired, now=now, limit=limit))

    async def preferences(self, user_id: str) -> Preferences:
        return await self._lite.transaction(functools.partial(preferences, user_id=user_id))

    async def set_preferences(self, user_id: str, preferences: Preferences) -> None:
        await self._lite.transaction(
            functools.partial(set_preferences, user_id=user_id, preferences=preferences)
        )

    async def known_users(self) -> list[str]:
        return sorted(self._known)  # every registration goes through this process

    async def queued_count(self) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).where(N.c.queued)) or 0)


def _notification(row: Row[Any, *tuple[Any, ...]]) -> Notification:
    """A row of ``_FIELDS`` (SQLAlchemy already made its timestamps aware)."""
    return rows.notification(row, lambda moment: moment)


# --- the transactions (each runs whole on the connection's thread) -----------------------


def stamp(moment: datetime) -> str:
    """A datetime as the ``created_at``/``read_at`` columns store it (naive UTC text)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def parse_stamp(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def notification(row: Sequence[Any]) -> Notification:
    """A ``COLUMNS`` row as the domain value."""
    return rows.notification(row, parse_stamp)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


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


def keyed(pairs: int) -> str:
    """The rows of ``pairs`` (user, idempotency key) pairs, with their key.

    The pairs come through a subquery: ``IN (VALUES (?, ?), (?, ?))`` itself makes SQLite
    scan the whole index for more than one pair (one probe per pair instead)."""
    values = ", ".join("(?, ?)" for _ in range(pairs))
    return (
        f"SELECT {COLUMNS}, idempotency_key FROM {SOURCE} WHERE idempotency_key IS NOT NULL "
        f"AND (user_id, idempotency_key) IN (SELECT column1, column2 FROM (VALUES {values}))"
    )


def create(
    conn: sqlite3.Connection,
    items: Sequence[NewNotification],
    *,
    now: datetime,
    unknown_users: Collection[str],
    away: Collection[str],
    queue_cap: int,
    delivered: Sequence[int] = (),
) -> tuple[Plan, list[Notification], dict[str, int]]:
    """Dequeue ``delivered``, insert ``items`` (queued), cap the ``away`` users' queues:
    the plan (see ``plan_creates``), the new rows, drops per user."""
    set_queued(conn, delivered, queued=False)  # before the cap counts what is still queued
    created_at = stamp(now)
    if unknown_users:
        conn.executemany(REGISTER, [(u, created_at) for u in sorted(unknown_users)])
    keys = sorted({(i.user_id, i.idempotency_key) for i in items if i.idempotency_key})
    existing: dict[tuple[str, str], Notification] = {}
    for chunk in chunks(keys, CHUNK):
        for row in conn.execute(keyed(len(chunk)), [v for pair in chunk for v in pair]):
            existing[(row[1], row[NCOLUMNS])] = notification(row)
    fresh, plan = plan_creates(items, existing)
    new = _insert(conn, fresh, now, created_at)
    users = sorted({n.user_id for n in new if n.user_id in away})
    return plan, new, _trim(conn, users, queue_cap)


def _insert(
    conn: sqlite3.Connection,
    items: Sequence[NewNotification],
    now: datetime,
    created_at: str,
) -> list[Notification]:
    if not items:
        return []
    first = items[0]
    c = first.content
    if len(items) > 1 and same_content(items):
        # A broadcast: the content once, then a narrow row per recipient pointing at it.
        (content_id,) = conn.execute(INSERT_CONTENT, (c.title, c.message, c.data_json)).fetchone()
        conn.execute(
            INSERT_SHARED,
            (
                c.type,
                c.priority.value,
                created_at,
                None if first.expires_at is None else stamp(first.expires_at),
                first.ignore_mutes,
                content_id,
                json.dumps([i.user_id for i in items], ensure_ascii=False),
            ),
        )
        return rows.new_rows(_inserted(conn, len(items)), items, now, shared=True)
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
            None if i.expires_at is None else stamp(i.expires_at),
            i.ignore_mutes,
        )
        for i in items
    ]
    if len(items) == 1:
        ids: Sequence[int] = [conn.execute(INSERT + " RETURNING id", values[0]).fetchone()[0]]
    else:
        conn.executemany(INSERT, values)
        ids = _inserted(conn, len(items))
    return rows.new_rows(ids, items, now)


def _inserted(conn: sqlite3.Connection, count: int) -> range:
    """The ids of the ``count`` rows just inserted: one writer, AUTOINCREMENT, so they are
    consecutive and end at the last rowid."""
    last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    return range(last - count + 1, last + 1)


def _trim(conn: sqlite3.Connection, users: Sequence[str], cap: int) -> dict[str, int]:
    """The queue cap (``server.store.queue_cap``) for these users; drops per user."""
    over: list[str] = []
    for chunk in chunks(users, CHUNK):
        over_cap, _ = _cap_statements(len(chunk))
        over += (user for (user,) in conn.execute(over_cap, [*chunk, cap]))
    dropped: dict[str, int] = {}
    for chunk in chunks(over, CHUNK):
        _, trim = _cap_statements(len(chunk))
        for (user,) in conn.execute(trim, [*chunk, cap]):
            dropped[user] = dropped.get(user, 0) + 1
    if dropped:
        conn.executemany(
            queue_cap.COUNT_DROPS.format(dropped="?", user="?"),
            [(n, u) for u, n in sorted(dropped.items())],
        )
    return dropped


@functools.lru_cache(maxsize=64)
def _cap_statements(users: int) -> tuple[str, str]:
    """The queue cap's statements for ``users`` users (built once per count: every create
    of an offline user runs them, on the connection's thread)."""
    return queue_cap.statements(
        queued=QUEUED_SQLITE, users=f"user_id IN ({_marks(users)})", cap="?"
    )


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
    muted = preferences(conn, user_id).muted_types
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
    # Expired rows and muted ones are not owed either (queued ones leave the queue).
    admitted = f"{admitted} AND {LIVE.format(now='?')}"
    admitted_args = [*admitted_args, stamp(now)]
    if muted:
        admitted += f" AND (ignore_mutes OR type NOT IN ({_marks(len(muted))}))"
        admitted_args += muted
    owed, owed_args = ("queued = 1", []) if since is None else ("id > ?", [since])
    if since is None and last_queued is None:
        found: list[Notification] = []
    else:
        found = [
            notification(row)
            for row in conn.execute(
                paged(
                    f"SELECT * FROM notifications WHERE user_id = ? AND {owed} "
                    f"AND {admitted} ORDER BY id DESC LIMIT ?",
                    "id DESC",
                ),
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
    return Replay(
        kept, truncated=len(found) > cap or (since is None and bool(dropped)), muted_types=muted
    )


def set_queued(conn: sqlite3.Connection, ids: Sequence[int], queued: bool) -> None:
    """Take rows out of their queues (``queued=False``) or put them in."""
    flag, other = (1, 0) if queued else (0, 1)
    ranges, single = rows.runs(ids)
    if ranges:
        conn.executemany(
            f"UPDATE notifications SET queued = {flag} "
            f"WHERE queued = {other} AND id BETWEEN ? AND ?",
            ranges,
        )
    for chunk in chunks(single, CHUNK):
        conn.execute(
            f"UPDATE notifications SET queued = {flag} "
            f"WHERE queued = {other} AND id IN ({_marks(len(chunk))})",
            chunk,
        )


def mark_read(
    conn: sqlite3.Connection, user_id: str, notification_id: int, now: datetime
) -> Notification:
    """See ``Store.mark_read``."""
    conn.execute(
        "UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? AND read_at IS NULL",
        (stamp(now), notification_id, user_id),
    )
    row = conn.execute(MINE, (notification_id, user_id)).fetchone()
    if row is None:
        raise NotFound(f"notification {notification_id} not found")
    return notification(row)


def fetch_range(
    conn: sqlite3.Connection, after_id: int, upto_id: int, limit: int
) -> list[tuple[Notification, bool]]:
    """See ``Store.fetch_range``."""
    rows = conn.execute(
        paged(
            "SELECT * FROM notifications WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            "id",
            ", queued",
        ),
        (after_id, upto_id, limit),
    )
    return [(notification(row), bool(row[NCOLUMNS])) for row in rows]


def inbox(conn: sqlite3.Connection, user_id: str, query: InboxQuery, now: datetime) -> Page:
    """See ``Store.inbox``."""
    args: list[Any] = [user_id]

    def param(value: object) -> str:
        args.append(stamp(value) if isinstance(value, datetime) else value)
        return "?"

    where = rows.inbox_where(query, now, param)
    limit = max(query.limit, 0)
    found = [
        notification(row)
        for row in conn.execute(
            paged(
                f"SELECT * FROM notifications WHERE user_id = ? AND {where} "
                "ORDER BY id DESC LIMIT ?",
                "id DESC",
            ),
            [*args, limit + 1],
        )
    ]
    return Page(found[:limit], has_more=len(found) > limit)


def counts(conn: sqlite3.Connection, user_id: str, now: datetime) -> Counts:
    """See ``Store.counts``."""
    muted = {t for (t,) in conn.execute(MUTED, (user_id,))}
    groups = conn.execute(rows.COUNTS.format(user="?", now="?"), (user_id, stamp(now)))
    return rows.counts(groups, muted)


def mark_many(
    conn: sqlite3.Connection,
    user_id: str,
    column: str,
    up_to_id: int | None,
    now: datetime,
    notification_type: str | None = None,
) -> tuple[int, int]:
    """Set ``column`` (``seen_at``, ``read_at``) to ``now`` where it is not set yet, on the
    user's rows (of ``notification_type``) up to an id: ``(that id, rows changed)``."""
    if up_to_id is None:
        (newest,) = conn.execute(
            "SELECT max(id) FROM notifications WHERE user_id = ?", (user_id,)
        ).fetchone()
        up_to_id = newest or 0
    up_to_id = min(up_to_id, rows.MAX_ID)
    where, args = (
        f"user_id = ? AND id <= ? AND {column} IS NULL AND {LIVE.format(now='?')}",
        [
            user_id,
            up_to_id,
            stamp(now),
        ],
    )
    if notification_type is not None:
        where += " AND type = ?"
        args.append(notification_type)
    changed = conn.execute(
        f"UPDATE notifications SET {column} = ? WHERE {where}", [stamp(now), *args]
    ).rowcount
    return up_to_id, changed


def set_archived(
    conn: sqlite3.Connection, user_id: str, notification_id: int, archived: bool, now: datetime
) -> Notification:
    """See ``Store.set_archived``."""
    value, unchanged = (
        (stamp(now), "archived_at IS NULL") if archived else (None, "archived_at IS NOT NULL")
    )
    conn.execute(
        f"UPDATE notifications SET archived_at = ? WHERE id = ? AND user_id = ? AND {unchanged}",
        (value, notification_id, user_id),
    )
    row = conn.execute(MINE, (notification_id, user_id)).fetchone()
    if row is None:
        raise NotFound(f"notification {notification_id} not found")
    return notification(row)


def delete(conn: sqlite3.Connection, user_id: str, notification_id: int) -> None:
    """See ``Store.delete``."""
    gone = conn.execute(
        "DELETE FROM notifications WHERE id = ? AND user_id = ? RETURNING content_id",
        (notification_id, user_id),
    ).fetchall()
    if not gone:
        raise NotFound(f"notification {notification_id} not found")
    drop_orphans(conn, gone)


def delete_expired(conn: sqlite3.Connection, now: datetime, limit: int) -> int:
    """See ``Store.delete_expired``."""
    gone = conn.execute(DELETE_EXPIRED, (stamp(now), limit)).fetchall()
    drop_orphans(conn, gone)
    return len(gone)


def drop_orphans(conn: sqlite3.Connection, unlinked: Iterable[Sequence[Any]]) -> None:
    """Delete the contents that rows just deleted (``(content_id,)`` each) pointed at,
    unless another row still does: a content lives as long as one of its recipients."""
    ids = sorted({content_id for (content_id,) in unlinked if content_id is not None})
    for chunk in chunks(ids, CHUNK):
        conn.execute(f"DELETE FROM contents WHERE {ORPHANS.format(ids=_marks(len(chunk)))}", chunk)


def preferences(conn: sqlite3.Connection, user_id: str) -> Preferences:
    """See ``Store.preferences``."""
    return Preferences(tuple(t for (t,) in conn.execute(MUTED, (user_id,))))


def set_preferences(conn: sqlite3.Connection, user_id: str, preferences: Preferences) -> None:
    """See ``Store.set_preferences``."""
    conn.execute("DELETE FROM muted_types WHERE user_id = ?", (user_id,))
    conn.executemany(
        "INSERT INTO muted_types (user_id, type) VALUES (?, ?)",
        [(user_id, t) for t in preferences.muted_types],
    )
