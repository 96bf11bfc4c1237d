"""The queue cap on a broadcast's slices (one content shared by every recipient, as
``Engine.broadcast`` writes them): offline recipients keep their newest ``cap`` queued
rows, online ones are never trimmed, and so on every slice, however many a connection
runs (PostgreSQL plans a prepared statement anew from its sixth run on)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from server.engine.filters import TypeFilter
from server.engine.models import Content, NewNotification
from server.store import CreateResult, Store

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CAP = 3


def recipients(users: Sequence[str], content: Content) -> list[NewNotification]:
    """The items ``Engine.broadcast`` makes: one content object for every recipient."""
    return [NewNotification(u, content, user_id_checked=True) for u in users]


async def broadcast(
    store: Store, users: Sequence[str], title: str, online: frozenset[str] = frozenset()
) -> CreateResult:
    content = Content(type="news", title=title, message="m")
    return await store.create(
        recipients(users, content), now=NOW, queue_cap=CAP, offline=lambda u: u not in online
    )


async def queue(store: Store, user: str) -> list[str]:
    """The titles of the user's queue, oldest first (without emptying it)."""
    replay = await store.replay(
        user, since=None, cap=1000, type_filter=TypeFilter.everything(), now=NOW
    )
    return [n.title for n in replay.notifications]


async def test_a_broadcast_trims_only_its_offline_recipients_over_the_cap(store: Store) -> None:
    users = [f"u{i:02d}" for i in range(20)]
    online = frozenset(users[::4])
    for n in range(CAP):  # everyone's queue is full
        await broadcast(store, users, f"b{n}", online)
    result = await broadcast(store, users, "last", online)
    assert all(o.created for o in result.outcomes)
    assert result.dropped == {u: 1 for u in users if u not in online}
    assert result.queued == {o.notification.id for o in result.outcomes}
    for user in users:
        expected = ["b0", "b1", "b2", "last"] if user in online else ["b1", "b2", "last"]
        assert await queue(store, user) == expected, user


async def test_a_recipient_twice_in_one_slice_counts_twice(store: Store) -> None:
    await broadcast(store, ["a", "b"], "old")
    result = await broadcast(store, ["a", "b", "a", "a", "c", "c"], "new")
    ids = [o.notification.id for o in result.outcomes]
    assert ids == sorted(set(ids))
    assert result.dropped == {"a": 1}
    assert await queue(store, "a") == ["new"] * 3
    assert await queue(store, "b") == ["old", "new"]
    assert await queue(store, "c") == ["new", "new"]


async def test_every_slice_of_a_long_broadcast_keeps_the_cap(store: Store) -> None:
    users = [f"u{i:02d}" for i in range(6)]
    online = frozenset({"u00"})
    for n in range(12):  # more runs of one statement than PostgreSQL plans afresh
        result = await broadcast(store, users, f"b{n:02d}", online)
        over = n + 1 - CAP
        assert result.dropped == ({u: 1 for u in users[1:]} if over > 0 else {}), n
    for user in users[1:]:
        assert await queue(store, user) == ["b09", "b10", "b11"]
    assert await queue(store, "u00") == [f"b{n:02d}" for n in range(12)]
    assert await store.queued_count() == 12 + 5 * CAP


async def test_a_repeated_key_is_no_new_row_for_the_cap(store: Store) -> None:
    def keyed(key: str) -> NewNotification:
        return NewNotification("a", Content(type="t", title=key, message="m"), key)

    async def create(items: list[NewNotification]) -> CreateResult:
        return await store.create(items, now=NOW, queue_cap=2, offline=lambda _: True)

    await create([keyed("k1"), keyed("k2")])
    retried = await create([keyed("k2")])
    assert [o.created for o in retried.outcomes] == [False]
    assert retried.dropped == {}
    assert await queue(store, "a") == ["k1", "k2"]
    mixed = await create([keyed("k2"), keyed("k3")])
    assert [o.created for o in mixed.outcomes] == [False, True]
    assert mixed.dropped == {"a": 1}
    assert await queue(store, "a") == ["k2", "k3"]
