"""Fixtures for the client tests: real ``tidings serve --role grpc`` processes on SQLite files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from tidings.client import StateEvent

from tests.harness import ServerProcess

E = TypeVar("E", bound=StateEvent)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh SQLite file: durable across server restarts within the test."""
    return sqlite_url(tmp_path / "tidings.db")


def grpc_server(database_url: str, *args: str) -> ServerProcess:
    """An insecure gRPC-only server (not yet started)."""
    return ServerProcess("--insecure", *args, role="grpc", database_url=database_url)


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[ServerProcess]:
    """A started insecure gRPC server, killed after the test."""
    process = await grpc_server(database_url).start()
    try:
        yield process
    finally:
        await process.kill()


class StateLog:
    """A Subscriber ``on_state`` callback that records events and lets a test wait for them."""

    def __init__(self) -> None:
        self.events: list[StateEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: StateEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def mark(self) -> int:
        """A position in the log, for ``wait_for(after=...)``."""
        return len(self.events)

    async def wait_for(
        self,
        predicate: Callable[[StateEvent], bool],
        *,
        count: int = 1,
        after: int = 0,
        timeout: float = 15.0,
    ) -> StateEvent:
        """The ``count``-th event after position ``after`` matching ``predicate``, waiting
        for it if need be."""
        async with asyncio.timeout(timeout):
            while True:
                matching = [e for e in self.events[after:] if predicate(e)]
                if len(matching) >= count:
                    return matching[count - 1]
                self._changed.clear()
                await self._changed.wait()
