"""cancel_and_wait: a background task ends; the caller's own cancellation is kept."""

from __future__ import annotations

import asyncio

import pytest

from server.tasks import cancel_and_wait

pytestmark = pytest.mark.timeout(10)


async def test_the_task_is_cancelled_and_awaited() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await started.wait()
    await cancel_and_wait(task)
    assert task.cancelled()
    await cancel_and_wait(None)  # nothing to do


async def test_a_cancellation_of_the_caller_while_it_waits_is_raised() -> None:
    release = asyncio.Event()
    waiting = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            waiting.set()
            await release.wait()  # takes its time to end
            raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)

    async def closer() -> None:
        await cancel_and_wait(task)

    outer = asyncio.create_task(closer())
    await waiting.wait()
    outer.cancel()  # the caller is cancelled while it waits for the task
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert outer.cancelled()


async def test_a_caller_already_cancelled_goes_on_with_its_clean_up() -> None:
    cleaned = asyncio.Event()
    started = asyncio.Event()

    async def handler() -> None:
        reader = asyncio.create_task(asyncio.Event().wait())
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            await cancel_and_wait(reader)
            cleaned.set()  # e.g. the session is closed after its reader ended

    outer = asyncio.create_task(handler())
    await started.wait()
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert cleaned.is_set()
