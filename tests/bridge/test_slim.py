"""``SlimQueue`` and ``SlimEvent``: what hypercorn and Quart rely on of ``asyncio.Queue``
and ``asyncio.Event``, with nothing allocated while idle (``bridge.slim``)."""

from __future__ import annotations

import asyncio

import pytest

from bridge.slim import SlimEvent, SlimEventWrapper, SlimQueue, first_of

pytestmark = pytest.mark.timeout(5)


async def test_items_come_out_in_order_and_a_getter_waits_for_the_next() -> None:
    queue: SlimQueue[int] = SlimQueue()
    for i in range(3):
        queue.put_nowait(i)
    assert queue.qsize() == 3
    assert [await queue.get() for _ in range(3)] == [0, 1, 2]
    assert queue.empty()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    await queue.put(7)
    assert await getter == 7
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


async def test_a_bounded_queue_holds_a_putter_until_there_is_room() -> None:
    queue: SlimQueue[str] = SlimQueue(2)
    await queue.put("a")
    await queue.put("b")
    assert queue.full()
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait("x")
    putter = asyncio.create_task(queue.put("c"))
    await asyncio.sleep(0)
    assert not putter.done()
    assert await queue.get() == "a"
    await putter
    assert [queue.get_nowait(), queue.get_nowait()] == ["b", "c"]


async def test_several_getters_each_get_one_item_in_the_order_they_came() -> None:
    queue: SlimQueue[int] = SlimQueue()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    for i in range(3):
        queue.put_nowait(i)
    assert await asyncio.gather(*getters) == [0, 1, 2]


async def test_a_getter_cancelled_after_being_woken_loses_no_item() -> None:
    queue: SlimQueue[int] = SlimQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(1)  # wakes ``first``
    first.cancel()  # before it ran: the wake-up goes to ``second``
    assert await second == 1
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_cancelled_putter_puts_nothing() -> None:
    queue: SlimQueue[int] = SlimQueue(1)
    queue.put_nowait(1)
    putter = asyncio.create_task(queue.put(2))
    await asyncio.sleep(0)
    putter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await putter
    assert queue.get_nowait() == 1
    assert queue.empty()
    await queue.put(3)  # room again, nobody stuck
    assert queue.get_nowait() == 3


async def test_an_event_wakes_every_waiter_and_stays_set_until_cleared() -> None:
    event = SlimEvent()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    event.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert event.is_set()
    assert await event.wait()  # at once while set
    event.clear()
    late = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    assert not late.done()
    event.set()
    assert await late


async def test_a_cancelled_event_waiter_leaves_the_others_waiting() -> None:
    event = SlimEvent()
    gone = asyncio.create_task(event.wait())
    stays = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    event.set()
    assert await stays


async def test_the_hypercorn_wrapper_speaks_its_async_interface() -> None:
    event = SlimEventWrapper()
    waiter = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    await event.set()
    await waiter
    assert event.is_set()
    await event.clear()
    assert not event.is_set()


async def test_first_of_returns_with_the_first_done_and_leaves_the_others_running() -> None:
    loop = asyncio.get_running_loop()
    slow: asyncio.Future[None] = loop.create_future()
    fast: asyncio.Future[None] = loop.create_future()
    waiting = asyncio.create_task(first_of(slow, fast))
    await asyncio.sleep(0)
    assert not waiting.done()
    fast.set_result(None)
    await waiting
    assert not slow.done()  # neither cancelled nor waited for
    slow.set_result(None)


async def test_first_of_cancelled_leaves_the_futures_alone() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(first_of(future))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not future.cancelled()
    future.set_result(None)
