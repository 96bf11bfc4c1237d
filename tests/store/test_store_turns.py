"""A create on a ``Turn`` after another (the slices of a broadcast, under way together):
it draws its ids after the one before holds its place, and commits only if that one
committed, on every store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from server.engine.models import Content, InboxQuery, NewNotification
from server.engine.store import CreateResult, Turn
from server.store import Store

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def slice_of(users: Sequence[str], title: str) -> list[NewNotification]:
    content = Content(type="news", title=title, message="m")
    return [NewNotification(u, content, user_id_checked=True) for u in users]


async def create(store: Store, items: Sequence[NewNotification], turn: Turn) -> CreateResult:
    return await store.create(items, now=NOW, queue_cap=100, offline=lambda _u: True, turn=turn)


async def titles(store: Store, user: str) -> list[str]:
    page = await store.inbox(user, InboxQuery(limit=10), now=NOW)
    return [n.title for n in page.notifications]


async def test_a_create_on_a_turn_after_another_gets_the_larger_ids_and_commits_after_it(
    store: Store,
) -> None:
    first = Turn()
    second = Turn(first)
    # The second is under way first: it waits for the first to hold its place.
    later = asyncio.create_task(create(store, slice_of(["a", "b"], "two"), second))
    await asyncio.sleep(0.05)
    assert not later.done(), "it commits only once the one before is over"
    earlier = await create(store, slice_of(["c", "d"], "one"), first)
    first.ended()
    async with asyncio.timeout(10):
        result = await later
    ids = [o.notification.id for o in [*earlier.outcomes, *result.outcomes]]
    assert ids == sorted(ids) and len(set(ids)) == 4, "ids follow the turns"
    assert await titles(store, "a") == ["two"]


# A broadcast's last slice may hold a single recipient (PostgreSQL creates one of those
# in one statement otherwise, which would not wait for the slice before).
@pytest.mark.parametrize("users", [["a", "b"], ["a"]], ids=["slice", "one recipient"])
async def test_a_create_on_a_turn_after_one_that_failed_commits_nothing(
    store: Store, users: list[str]
) -> None:
    first = Turn()
    first.began.set()  # it held its place, wrote, then failed
    later = asyncio.create_task(create(store, slice_of(users, "two"), Turn(first)))
    first.ended(RuntimeError("the slice before failed"))
    with pytest.raises(RuntimeError, match="the slice before failed"):
        async with asyncio.timeout(10):
            await later
    assert await titles(store, "a") == []
    assert await titles(store, "b") == []
    # The store is usable after (its transaction was rolled back, its lock released).
    await create(store, slice_of(["a"], "three"), Turn())
    assert await titles(store, "a") == ["three"]
