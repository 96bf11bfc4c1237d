"""The bridge app with a stand-in engine: its calls answered in-process by test doubles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from quart import Quart

from bridge.app import create_app
from server.rpc.inprocess import InProcessStubs


class Health:
    """A health servicer no test asks."""

    async def Check(self, request: object, context: object) -> None:
        raise NotImplementedError


@asynccontextmanager
async def bridge_app(admin: object) -> AsyncIterator[Quart]:
    """The bridge app, started, whose admin calls go to ``admin``."""
    app = create_app("127.0.0.1:1", local=InProcessStubs.of(object(), admin, object(), Health()))
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()
