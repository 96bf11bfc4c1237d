"""Shutting down while a browser has stopped reading: quick, and quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bridge.client import rest
from tests.bridge.ws_raw import RawSocket
from tests.harness import ServerProcess

pytestmark = pytest.mark.timeout(120)


async def test_shutdown_with_a_stalled_browser_logs_no_traceback(tmp_path: Path) -> None:
    server = await ServerProcess(
        "--insecure", database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db"
    ).start()
    try:
        # the handshake done, then nothing more is read from the socket
        stalled = await RawSocket.open(server, user_id="stalled")
        async with rest(server) as http:
            for _ in range(100):  # ~20 MB: more than the socket buffers hold
                response = await http.post(
                    "/api/v1/notifications",
                    json={"user_id": "stalled", "type": "t", "title": "x",
                          "data": {"blob": "x" * 200_000}},
                )  # fmt: skip
                assert response.status_code == 201
        assert await server.stop(timeout=15) == 0
        stalled.abort()
    finally:
        await server.kill()
    for noise in ("Traceback", "Exception in callback", "CancelledError", " ERROR "):
        assert noise not in server.output, server.output
