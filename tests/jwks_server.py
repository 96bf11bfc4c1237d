"""A tiny identity provider's JWKS endpoint for tests: HTTP on 127.0.0.1:0, in the test's loop.

The test changes what it serves (``keys``, ``available``, ``padding`` bytes more, with
or without a ``Content-Length``: ``declare_length``), counts the fetches (``hits``),
and can hold an answer back (``gate``) to show that a server waiting for its keys
keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson


class JwksServer:
    """``GET /jwks.json`` → ``{"keys": [...]}``, or 503 while not ``available``."""

    def __init__(self, keys: list[dict[str, Any]] | None = None) -> None:
        self.keys: list[dict[str, Any]] = list(keys or [])
        self.available = True
        self.padding = 0
        self.declare_length = True
        self.hits = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.requested = asyncio.Event()  # set at each request; the test clears it
        self._server: asyncio.Server | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/jwks.json"

    async def start(self) -> JwksServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(30):
                await reader.readuntil(b"\r\n\r\n")
                self.hits += 1
                self.requested.set()
                await self.gate.wait()
                if self.available:
                    document: dict[str, Any] = {"keys": self.keys}
                    if self.padding:
                        document["padding"] = "x" * self.padding
                    status, body = "200 OK", orjson.dumps(document)
                else:
                    status, body = "503 Service Unavailable", b'{"error": "down"}'
                length = f"Content-Length: {len(body)}\r\n" if self.declare_length else ""
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"{length}Connection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def __aenter__(self) -> JwksServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
