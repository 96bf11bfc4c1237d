"""Ending a background task without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended.

    The task's ``CancelledError`` is absorbed; one aimed at the caller (a cancellation
    that arrives while it waits here) is raised again, as asyncio requires. A caller
    already being cancelled (cleaning up in a ``finally``) goes on with its clean-up.
    """
    if task is None:
        return
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > before:
            raise
