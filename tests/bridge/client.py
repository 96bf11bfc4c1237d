"""Small clients for the bridge tests: a JSON WebSocket with bounded waits, REST helpers,
and tokens."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge.wsschemas import ServerMessage
from tests.harness import TEST_SECRET, ServerProcess

#: Every wait in these tests is bounded by this.
WAIT = 5.0
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def token(
    sub: str,
    *,
    roles: list[str] | None = None,
    secret: str = TEST_SECRET,
    expires_in: float = 600,
) -> str:
    """An HS256 token for ``sub``."""
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time() + expires_in)}
    if roles is not None:
        claims["roles"] = roles
    return jwt.encode(claims, secret, algorithm="HS256")


class Socket:
    """One browser-protocol WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def recv(self, timeout: float = WAIT, *, heartbeats: bool = False) -> dict[str, Any]:
        """The next message; heartbeats, which may come at any moment, are skipped
        unless ``heartbeats`` is true."""
        async with asyncio.timeout(timeout):
            while True:
                text = await self.ws.recv()
                # Every frame a test receives holds to the documented schema (§5.2).
                ServerMessage.validate_json(text, strict=True)
                message = orjson.loads(text)
                assert isinstance(message, dict)
                if heartbeats or message.get("type") != "heartbeat":
                    return message

    async def expect(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next message, which must be of type ``kind`` (heartbeats in between are
        skipped unless ``kind`` is ``"heartbeat"``)."""
        message = await self.recv(timeout, heartbeats=kind == "heartbeat")
        assert message["type"] == kind, message
        return message

    async def skip_to(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next message of type ``kind``, skipping heartbeats and others."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout, heartbeats=kind == "heartbeat")
                if message["type"] == kind:
                    return message

    async def send(self, message: Mapping[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else orjson.dumps(message).decode())

    async def ask(self, message: Mapping[str, Any] | str) -> dict[str, Any]:
        """Send and return the next message."""
        await self.send(message)
        return await self.recv()

    async def quiet(self) -> None:
        """Assert nothing but the pong is next: a ping round trip proves no frame was pending."""
        await self.send({"type": "ping"})
        message = await self.recv()
        assert message["type"] == "pong", message

    async def closed(self, timeout: float = WAIT) -> tuple[int | None, str]:
        """Wait for the server to close; (code, reason)."""
        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self.ws.recv()
            except ConnectionClosed as exc:
                frame = exc.rcvd
                return (frame.code, frame.reason) if frame is not None else (None, "")

    async def close(self) -> None:
        await self.ws.close()


async def open_socket(
    server: ServerProcess,
    *,
    headers: Mapping[str, str] | None = None,
    origin: str | None = None,
    greet: bool = True,
    **query: str | int,
) -> tuple[Socket, dict[str, Any]]:
    """Connect with ``query`` (user_id, token, since, types); the greeting, if ``greet``."""
    url = server.ws_url + ("?" + urlencode(query) if query else "")
    ws = await connect(
        url,
        additional_headers=dict(headers or {}),
        origin=origin,  # type: ignore[arg-type]
        open_timeout=WAIT,
        max_size=None,
    )
    socket = Socket(ws)
    greeting = await socket.expect("connection_established") if greet else {}
    return socket, greeting


def rest(
    server: ServerProcess, user: str | None = None, bearer: str | None = None
) -> httpx.AsyncClient:
    """An HTTP client for the bridge as ``user`` (insecure mode) or with a ``bearer`` token."""
    headers: dict[str, str] = {}
    if user is not None:
        headers["X-Tidings-User"] = user
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=WAIT)


async def create(
    server: ServerProcess, user_id: str, type_: str = "note", title: str = "hello", **fields: Any
) -> dict[str, Any]:
    """Create one notification through REST (insecure mode: everyone is admin)."""
    async with rest(server) as http:
        response = await http.post(
            "/api/v1/notifications",
            json={"user_id": user_id, "type": type_, "title": title, **fields},
        )
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


async def flood(server: ServerProcess, user_id: str, count: int) -> None:
    """Create ``count`` notifications of 200 kB each for ``user_id``: more, at 100 or
    so, than a socket's buffers hold, so that a browser that stopped reading is left
    with frames waiting."""
    async with rest(server) as http:
        for _ in range(count):
            response = await http.post(
                "/api/v1/notifications",
                json={"user_id": user_id, "type": "t", "title": "x",
                      "data": {"blob": "x" * 200_000}},
            )  # fmt: skip
            assert response.status_code == 201, response.text
