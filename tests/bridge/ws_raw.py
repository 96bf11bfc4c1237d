"""A WebSocket client on a bare TCP stream, for frames no polite client sends.

It does the opening handshake (no extensions), writes any frame it is given (bad
opcodes, bad UTF-8, fragmented control frames…), reads the server's frames, and never
answers a close frame on its own: tests decide what a hostile client does.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any
from urllib.parse import urlencode

import orjson

from tests.harness import ServerProcess

WAIT = 5.0

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """One masked client frame."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload) ^ int.from_bytes(key)).to_bytes(n) if n else b""
    return head + mask + masked


def text(message: str | dict[str, Any]) -> bytes:
    """A text frame holding ``message`` (a dict is sent as JSON)."""
    data = message.encode() if isinstance(message, str) else orjson.dumps(message)
    return frame(TEXT, data)


class RawSocket:
    """One hand-driven WebSocket connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: ServerProcess, **query: str) -> RawSocket:
        host, port = server.http_addr.rsplit(":", 1)
        async with asyncio.timeout(WAIT):
            reader, writer = await asyncio.open_connection(host, int(port))
            key = base64.b64encode(os.urandom(16)).decode()
            path = "/api/v1/ws/notifications" + ("?" + urlencode(query) if query else "")
            writer.write(
                (
                    f"GET {path} HTTP/1.1\r\nHost: {server.http_addr}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_frame(self, timeout: float = WAIT) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload). ``IncompleteReadError`` at EOF."""
        async with asyncio.timeout(timeout):
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return b0 & 0x0F, await self.reader.readexactly(n)

    async def message(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next text message (skipping heartbeats), as JSON."""
        while True:
            opcode, payload = await self.read_frame(timeout)
            assert opcode == TEXT, (opcode, payload)
            message = orjson.loads(payload)
            assert isinstance(message, dict)
            if message["type"] != "heartbeat":
                return message

    async def close_code(self, timeout: float = WAIT) -> int | None:
        """Read until the server's close frame: its code; None if the connection just ended."""
        try:
            while True:
                opcode, payload = await self.read_frame(timeout)
                if opcode == CLOSE:
                    return int(struct.unpack("!H", payload[:2])[0]) if payload else 1005
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def ended(self, timeout: float = WAIT) -> None:
        """Return once the server dropped the TCP connection (``TimeoutError`` otherwise)."""
        async with asyncio.timeout(timeout):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionError:
                pass

    def abort(self) -> None:
        self.writer.transport.abort()
