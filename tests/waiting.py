"""Waiting on a condition another process or task makes true, with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(
    condition: Callable[[], Awaitable[bool]], *, within: float = 5.0, every: float = 0.01
) -> None:
    """Return once ``condition()`` is true; fail with ``TimeoutError`` after ``within`` s.

    For facts with no event to await (a server noticing a closed connection); every
    wait is bounded, so a broken promise fails the test instead of hanging it.
    """
    async with asyncio.timeout(within):
        while not await condition():  # noqa: ASYNC110 - no event exists for this fact
            await asyncio.sleep(every)
