"""HTTP/1.1 keep-alive: an idle connection is closed after the keep-alive timeout, or at
once when the server shuts down; one that keeps making requests stays open."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.harness import ServerProcess

pytestmark = pytest.mark.timeout(60)

#: hypercorn's default ``keep_alive_timeout`` (the bridge keeps it).
KEEP_ALIVE_S = 5.0


@pytest_asyncio.fixture(loop_scope="function")
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    async with ServerProcess("--insecure", database_url=url) as s:
        yield s


class Connection:
    """One raw keep-alive connection to the bridge."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: ServerProcess) -> Connection:
        host, port = server.http_addr.rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def create(self, title: str) -> tuple[int, dict[str, object]]:
        """POST one notification on this connection; its status and JSON body."""
        body = json.dumps({"user_id": "keepalive", "type": "t", "title": title}).encode()
        self.writer.write(
            b"POST /api/v1/notifications HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        match = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        assert match is not None
        return status, json.loads(await self.reader.readexactly(int(match.group(1))))

    async def closed_within(self, seconds: float) -> float:
        """Seconds until the server closes the connection (fails after ``seconds``)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(seconds):
            assert await self.reader.read() == b""
        return loop.time() - started

    def close(self) -> None:
        self.writer.close()


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(
    server: ServerProcess,
) -> None:
    conn = await Connection.open(server)
    try:
        status, _ = await conn.create("one")
        assert status == 201
        waited = await conn.closed_within(KEEP_ALIVE_S + 5)
        assert waited > KEEP_ALIVE_S - 1
    finally:
        conn.close()


async def test_a_connection_in_use_stays_open_past_the_keep_alive_timeout(
    server: ServerProcess,
) -> None:
    conn = await Connection.open(server)
    try:
        titles = [f"n{i}" for i in range(4)]
        for title in titles:  # 4 requests, 2 s apart: 6 s on one connection
            status, body = await conn.create(title)
            assert (status, body["title"]) == (201, title)
            if title != titles[-1]:
                await asyncio.sleep(2)
    finally:
        conn.close()


async def test_shutdown_closes_idle_connections_at_once(server: ServerProcess) -> None:
    conn = await Connection.open(server)
    try:
        status, _ = await conn.create("one")
        assert status == 201
        assert server.proc is not None
        server.proc.terminate()
        # Not after the keep-alive timeout, nor the graceful timeout (3 s): now.
        assert await conn.closed_within(2.5) < 2.5
        assert await server.stop() == 0
    finally:
        conn.close()
