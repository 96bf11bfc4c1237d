"""Engine.create_many: validated up front, committed all or none, never taking others down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import datetime

import pytest

from server.engine import Engine, EngineConfig
from server.engine.errors import InvalidArgument
from server.engine.models import Content, NewNotification, batch_item, check_batch_size
from server.engine.store import CreateResult, Turn
from server.store import MemoryStore
from tests.engine.fakes import FakeClock


class FailingStore(MemoryStore):
    """A store whose transaction fails whenever it holds an item for ``poison``."""

    calls: list[int]

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
        self.calls.append(len(items))
        if any(item.user_id == "poison" for item in items):
            raise RuntimeError("the transaction failed")
        return await super().create(
            items, now=now, queue_cap=queue_cap, offline=offline, delivered=delivered, turn=turn
        )


@pytest.fixture
def store() -> FailingStore:
    store = FailingStore()
    store.calls = []
    return store


@pytest.fixture
async def engine(store: FailingStore) -> AsyncIterator[Engine]:
    engine = Engine(store, EngineConfig(node_id="n1"), FakeClock())
    await engine.start()
    yield engine
    await engine.stop()


def items(*users: str) -> list[NewNotification]:
    return [NewNotification(u, Content(type="t", title=f"{u}-{i}")) for i, u in enumerate(users)]


async def test_a_failed_batch_writes_nothing_and_a_batch_committed_with_it_survives(
    engine: Engine, store: FailingStore
) -> None:
    good, bad = items("a", "b", "a"), items("c", "poison", "c")
    # Submitted together, the two share the writer's first group, whose commit fails.
    outcomes = await asyncio.gather(
        engine.create_many(good), engine.create_many(bad), return_exceptions=True
    )
    made, failed = outcomes
    assert store.calls == [6, 3, 3]  # one group, then each batch in a transaction of its own
    assert isinstance(failed, RuntimeError)
    assert isinstance(made, list)
    assert [o.notification.title for o in made] == ["a-0", "b-1", "a-2"]
    assert (await engine.list_notifications("c")).notifications == []
    assert len((await engine.list_notifications("a")).notifications) == 2


@pytest.mark.parametrize("count", [0, 1001])
async def test_a_batch_holds_1_to_1000(engine: Engine, count: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await engine.create_many(items(*["a"] * count))
    assert caught.value.field == "notifications"
    assert check_batch_size(1000) == 1000


def test_errors_inside_an_item_name_it() -> None:
    with pytest.raises(InvalidArgument) as caught, batch_item(7):
        Content(type="t", title="")
    assert caught.value.field == "notifications[7].title"
    assert caught.value.message == "notifications[7].title: is required"
