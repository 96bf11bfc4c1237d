"""Shutting down while a browser has stopped reading: quick, and quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bridge.client import flood
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
        await flood(server, "stalled", 100)  # ~20 MB: more than the socket buffers hold
        assert await server.stop(timeout=15) == 0
        stalled.abort()
    finally:
        await server.kill()
    for noise in ("Traceback", "Exception in callback", "CancelledError", " ERROR "):
        assert noise not in server.output, server.output
