"""The inbox rules of the ``Store`` contract (seen, mark all read, archive, delete, counts,
mutes, expiry), on memory, SQLite and PostgreSQL; and the migration that adds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from server.engine.errors import NotFound
from server.engine.filters import TypeFilter
from server.engine.models import (
    Content,
    Counts,
    InboxQuery,
    NewNotification,
    Preferences,
    Priority,
    TypeCounts,
)
from server.store import Store
from server.store.engines import make_engine
from server.store.migrate import current_revision, head_revision, upgrade
from tests.store.conftest import Database

NOW = datetime(2026, 11, 25, 22, 52, 7, 123000, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
EVERYTHING = TypeFilter.everything()


def item(
    user: str = "u1",
    type_: str = "t",
    *,
    expires_at: datetime | None = None,
    ignore_mutes: bool = False,
    priority: Priority = Priority.NORMAL,
) -> NewNotification:
    return NewNotification(
        user,
        Content(type=type_, title="title", priority=priority),
        expires_at=expires_at,
        ignore_mutes=ignore_mutes,
    )


async def ids_of(store: Store, *items: NewNotification, now: datetime = NOW) -> list[int]:
    result = await store.create(items, now=now, queue_cap=100, offline=lambda _u: True)
    return [o.notification.id for o in result.outcomes]


async def listed(store: Store, user: str = "u1", now: datetime = NOW, **query: Any) -> list[int]:
    page = await store.inbox(user, InboxQuery(**query), now=now)
    return [n.id for n in page.notifications]


async def replayed(store: Store, user: str = "u1", *, since: int | None = None) -> list[int]:
    replay = await store.replay(user, since=since, cap=100, type_filter=EVERYTHING, now=NOW)
    return [n.id for n in replay.notifications]


# --- create round trip --------------------------------------------------------------------


async def test_expiry_and_ignore_mutes_round_trip(store: Store) -> None:
    expires = NOW + timedelta(hours=1)
    (made,) = await ids_of(store, item(expires_at=expires, ignore_mutes=True))
    (row,) = await store.fetch([made])
    assert row.expires_at == expires
    assert row.ignore_mutes
    assert (row.seen_at, row.archived_at, row.seen, row.archived) == (None, None, False, False)
    (broadcast,) = await ids_of(store, item("u2", expires_at=expires, ignore_mutes=True))
    (again,) = await store.fetch([broadcast])
    assert (again.expires_at, again.ignore_mutes) == (expires, True)


# --- seen and mark all read -----------------------------------------------------------------


async def test_mark_seen_up_to_an_id_keeps_earlier_seen_at(store: Store) -> None:
    ids = await ids_of(store, item(), item(), item(), item("other"))
    assert await store.mark_seen("u1", ids[0], NOW) == (ids[0], 1)
    assert await store.mark_seen("u1", None, LATER) == (ids[2], 2)  # the newest of u1
    rows = await store.fetch(ids)
    assert [r.seen_at for r in rows] == [NOW, LATER, LATER, None]
    assert await store.mark_seen("u1", None, LATER) == (ids[2], 0)
    assert await store.mark_seen("nobody", None, NOW) == (0, 0)


async def test_mark_all_read_of_one_type_up_to_an_id_archived_included(store: Store) -> None:
    ids = await ids_of(store, item(type_="a"), item(type_="b"), item(type_="a"), item(type_="a"))
    await store.set_archived("u1", ids[0], True, NOW)
    assert await store.mark_all_read("u1", "a", ids[2], NOW) == (ids[2], 2)
    rows = await store.fetch(ids)
    assert [r.read for r in rows] == [True, False, True, False]
    assert await store.mark_all_read("u1", None, None, LATER) == (ids[3], 2)
    assert [r.read_at for r in await store.fetch(ids)] == [NOW, LATER, NOW, LATER]
    assert await store.mark_all_read("other", None, None, NOW) == (0, 0)


# --- archive and delete --------------------------------------------------------------------


async def test_archive_is_idempotent_and_leaves_the_default_list(store: Store) -> None:
    ids = await ids_of(store, item(), item())
    archived = await store.set_archived("u1", ids[0], True, NOW)
    assert archived.archived_at == NOW
    again = await store.set_archived("u1", ids[0], True, LATER)
    assert again.archived_at == NOW  # keeps the first
    assert await listed(store) == [ids[1]]
    assert await listed(store, archived=True) == [ids[0]]
    back = await store.set_archived("u1", ids[0], False, LATER)
    assert back.archived_at is None
    assert (await store.set_archived("u1", ids[0], False, LATER)).archived_at is None
    assert await listed(store) == [ids[1], ids[0]]


async def test_archive_and_delete_of_another_users_or_a_missing_id_is_not_found(
    store: Store,
) -> None:
    (made,) = await ids_of(store, item("a"))
    for call in (
        store.set_archived("b", made, True, NOW),
        store.set_archived("a", made + 100, True, NOW),
        store.set_archived("a", 2**70, False, NOW),
        store.delete("b", made),
        store.delete("a", made + 100),
        store.delete("a", 2**70),
    ):
        with pytest.raises(NotFound):
            await call
    (row,) = await store.fetch([made])
    assert row.archived_at is None


async def test_a_deleted_row_is_gone_from_every_read(store: Store) -> None:
    ids = await ids_of(store, item(), item(), item())
    await store.delete("u1", ids[1])
    assert await store.fetch(ids) == [r for r in await store.fetch([ids[0], ids[2]])]
    assert await listed(store) == [ids[2], ids[0]]
    assert await replayed(store, since=0) == [ids[0], ids[2]]
    assert await replayed(store) == [ids[0], ids[2]]  # nor from the queue
    assert [n.id for n, _ in await store.fetch_range(0, ids[2], 10)] == [ids[0], ids[2]]
    assert (await store.counts("u1", now=NOW)).unread == 2
    with pytest.raises(NotFound):
        await store.delete("u1", ids[1])


# --- list filters ---------------------------------------------------------------------------


async def test_list_filters(store: Store) -> None:
    t0 = NOW
    ids = [
        *await ids_of(store, item(type_="a", priority=Priority.LOW), now=t0),
        *await ids_of(store, item(type_="b", priority=Priority.URGENT), now=t0 + timedelta(1)),
        *await ids_of(store, item(type_="c", priority=Priority.HIGH), now=t0 + timedelta(2)),
    ]
    await store.mark_read("u1", ids[0], NOW)
    await store.mark_seen("u1", ids[1], NOW)
    assert await listed(store, types=("a", "c")) == [ids[2], ids[0]]
    assert await listed(store, priorities=(Priority.URGENT, Priority.LOW)) == [ids[1], ids[0]]
    assert await listed(store, read=True) == [ids[0]]
    assert await listed(store, read=False) == [ids[2], ids[1]]
    assert await listed(store, seen=False) == [ids[2]]
    assert await listed(store, seen=True) == [ids[1], ids[0]]
    assert await listed(store, created_after=t0) == [ids[2], ids[1]]  # strict
    assert await listed(store, created_before=t0 + timedelta(2)) == [ids[1], ids[0]]
    assert await listed(store, before_id=ids[2], limit=1) == [ids[1]]
    assert await listed(store, types=("zzz",)) == []


async def test_the_cursor_is_stable_while_new_ones_arrive(store: Store) -> None:
    ids = await ids_of(store, item(), item(), item())
    first = await store.inbox("u1", InboxQuery(limit=2), now=NOW)
    assert first.has_more
    await ids_of(store, item(), item())
    rest = await listed(store, limit=2, before_id=first.notifications[-1].id)
    assert rest == [ids[0]]


# --- counts and mutes ---------------------------------------------------------------------


async def test_counts_per_type_without_archived_expired_or_muted(store: Store) -> None:
    soon = NOW + timedelta(seconds=30)
    ids = await ids_of(
        store,
        item(type_="a"),
        item(type_="a"),
        item(type_="b"),
        item(type_="m"),
        item(type_="m", ignore_mutes=True),
        item(type_="x", expires_at=soon),
        item(type_="a"),
        item("other", "a"),
    )
    await store.mark_read("u1", ids[0], NOW)  # seen stays unset: unseen still
    await store.mark_seen("u1", ids[1], NOW)  # ids[0] and ids[1] seen
    await store.set_archived("u1", ids[6], True, NOW)
    await store.set_preferences("u1", Preferences(("m",)))
    counts = await store.counts("u1", now=NOW)
    assert counts.by_type == {
        "a": TypeCounts(unread=1, unseen=0),
        "b": TypeCounts(unread=1, unseen=1),
        "m": TypeCounts(unread=2, unseen=2),
        "x": TypeCounts(unread=1, unseen=1),
    }
    assert (counts.unread, counts.unseen) == (4, 3)  # a1, b, m(ignores), x; b, m(ignores), x
    later = await store.counts("u1", now=soon)
    assert "x" not in later.by_type
    assert (later.unread, later.unseen) == (3, 2)
    assert await store.counts("nobody", now=NOW) == Counts(0, 0, {})


async def test_preferences_are_replaced_and_per_user(store: Store) -> None:
    assert await store.preferences("u1") == Preferences(())
    await store.set_preferences("u1", Preferences(("b", "a", "b")))
    assert await store.preferences("u1") == Preferences(("a", "b"))
    await store.set_preferences("u1", Preferences(("c",)))
    assert (await store.preferences("u1")).muted_types == ("c",)
    assert (await store.preferences("u2")).muted_types == ()
    await store.set_preferences("u1", Preferences(()))
    assert (await store.preferences("u1")).muted_types == ()


async def test_replay_skips_muted_types_unless_ignored_and_they_leave_the_queue(
    store: Store,
) -> None:
    ids = await ids_of(store, item(type_="m"), item(type_="a"), item(type_="m", ignore_mutes=True))
    await store.set_preferences("u1", Preferences(("m",)))
    replay = await store.replay("u1", since=None, cap=100, type_filter=EVERYTHING, now=NOW)
    assert [n.id for n in replay.notifications] == [ids[1], ids[2]]
    assert replay.muted_types == ("m",)  # read with the rows, for the session
    await store.set_preferences("u1", Preferences(()))
    assert await replayed(store) == [ids[1], ids[2]]  # the muted one left the queue
    assert await replayed(store, since=0) == [ids[0], ids[1], ids[2]]
    await store.set_preferences("u1", Preferences(("m", "x")))
    assert await replayed(store, since=0) == [ids[1], ids[2]]
    other = await store.replay("u2", since=0, cap=100, type_filter=EVERYTHING, now=NOW)
    assert other.muted_types == ()  # per user
    assert await listed(store) == [ids[2], ids[1], ids[0]]  # still in the inbox


# --- expiry ------------------------------------------------------------------------------------


async def test_expired_rows_are_not_listed_replayed_or_marked(store: Store) -> None:
    ids = await ids_of(store, item(expires_at=NOW + timedelta(seconds=1)), item())
    after = NOW + timedelta(seconds=1)  # expires_at <= now: expired
    assert await listed(store, now=after) == [ids[1]]
    replay = await store.replay("u1", since=0, cap=10, type_filter=EVERYTHING, now=after)
    assert [n.id for n in replay.notifications] == [ids[1]]
    assert await store.mark_all_read("u1", None, None, after) == (ids[1], 1)
    assert await listed(store, now=NOW) == [ids[1], ids[0]]  # not yet expired before


async def test_delete_expired_is_bounded_and_keeps_the_rest(store: Store) -> None:
    ids = await ids_of(
        store,
        *(item(expires_at=NOW + timedelta(seconds=i + 1)) for i in range(5)),
        item(),
        item(expires_at=NOW + timedelta(days=1)),
    )
    at = NOW + timedelta(seconds=5)
    assert await store.delete_expired(at, 3) == 3
    assert await store.delete_expired(at, 3) == 2
    assert await store.delete_expired(at, 3) == 0
    assert [n.id for n in await store.fetch(ids)] == ids[5:]
    assert await store.delete_expired(at, 0) == 0


# --- the migration ----------------------------------------------------------------------------


async def test_upgrading_a_0001_database_keeps_every_row(database: Database) -> None:
    await upgrade(database.url, schema=database.schema, revision="0001")
    store = database.store()
    sql = make_engine(database.url, schema=database.schema)
    try:
        async with sql.begin() as conn:
            for i in range(3):
                await conn.execute(
                    text(
                        "INSERT INTO notifications (user_id, type, title, message, data_json, "
                        "priority, created_at, read_at, queued, idempotency_key) VALUES "
                        "(:u, 't', :title, '', '{}', 'high', :at, :read, :queued, :key)"
                    ),
                    {
                        "u": "old",
                        "title": f"n{i}",
                        "at": NOW.replace(tzinfo=None) if database.schema is None else NOW,
                        "read": None,
                        "queued": i != 1,
                        "key": f"k{i}" if i else None,
                    },
                )
            await conn.execute(
                text("INSERT INTO users (user_id, first_seen) VALUES ('old', :at)"),
                {"at": NOW.replace(tzinfo=None) if database.schema is None else NOW},
            )
    finally:
        await sql.dispose()
    await upgrade(database.url, schema=database.schema)
    assert await current_revision(database.url, schema=database.schema) == head_revision()
    await store.open()
    try:
        rows = [n for n, _ in await store.fetch_range(0, 2**62, 10)]
        assert [n.title for n in rows] == ["n0", "n1", "n2"]
        assert all(
            (n.seen_at, n.archived_at, n.expires_at, n.ignore_mutes, n.priority)
            == (None, None, None, False, Priority.HIGH)
            for n in rows
        )
        assert [q for _, q in await store.fetch_range(0, 2**62, 10)] == [True, False, True]
        assert await store.known_users() == ["old"]
        assert await listed(store, "old") == [n.id for n in reversed(rows)]
        replay = await store.replay("old", since=None, cap=10, type_filter=EVERYTHING, now=NOW)
        assert [n.title for n in replay.notifications] == ["n0", "n2"]
        assert (await store.counts("old", now=NOW)).unread == 3
    finally:
        await store.close()
