"""A browser that stops reading is closed as slow (1013), and loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.bridge.client import flood, open_socket, rest
from tests.harness import ServerProcess
from tests.waiting import until

pytestmark = pytest.mark.timeout(120)


async def drained(ws: ClientConnection) -> ConnectionClosed:
    """Read until the server's close; how it closed."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as closed:
        return closed


@pytest_asyncio.fixture(loop_scope="function")
async def small_buffer_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    args = ("--insecure", "--max-session-buffer", "20")
    async with ServerProcess(*args, database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db") as server:
        yield server


async def test_a_browser_that_stops_reading_is_closed_and_its_notifications_requeued(
    small_buffer_server: ServerProcess,
) -> None:
    server = small_buffer_server
    # max_queue=1: the client stops reading its socket as soon as one frame waits.
    ws = await connect(f"{server.ws_url}?user_id=slow", max_queue=1, max_size=None)
    await ws.recv()  # connection_established
    async with rest(server) as http:

        async def connected() -> bool:
            status = await http.get("/api/v1/ws/notifications/status", params={"user_id": "slow"})
            return bool(status.json()["connected"])

        blob = {"blob": "x" * 200_000}  # big frames fill the socket buffers sooner
        created = 0
        while await connected():
            assert created < 1000, "the slow browser was never cut off"
            for _ in range(10):
                response = await http.post(
                    "/api/v1/notifications",
                    json={"user_id": "slow", "type": "t", "title": "x", "data": blob},
                )
                assert response.status_code == 201
                created += 1

        async def requeued() -> bool:
            stats = await http.get("/api/v1/ws/notifications/stats")
            return int(stats.json()["queued"]) > 0

        await until(requeued, within=10)
    closed = await drained(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1013

    # what the slow socket never got is replayed to the next one
    socket, hello = await open_socket(server, user_id="slow")
    assert hello["queued"] > 0
    await socket.close()


async def test_shutdown_is_not_held_up_by_a_browser_that_stopped_reading(tmp_path: Path) -> None:
    server = await ServerProcess(
        "--insecure", database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db"
    ).start()
    try:
        ws = await connect(f"{server.ws_url}?user_id=stuck", max_queue=1, max_size=None)
        await ws.recv()
        await flood(server, "stuck", 150)  # ~30 MB: more than the socket buffers hold
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await server.stop(timeout=15) == 0
        assert loop.time() - started < 8
        ws.transport.abort()
    finally:
        await server.kill()
