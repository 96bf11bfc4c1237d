"""Several messages, one write: ``GuardedWSStream`` taking ``SEND_MANY`` from the app.

The stream runs in memory (hypercorn injects ``send`` and the task group), and what it
writes is read back by a wsproto client connection: each text is a message of its own,
in order, whatever the extensions negotiated, and all of them leave in one write.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypercorn.config import Config
from hypercorn.protocol.events import Data, Event, Request
from hypercorn.typing import ConnectionState
from prometheus_client import CollectorRegistry
from tidings.v1 import stream_pb2
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason

from bridge import ws, wsguard
from bridge.jsonwire import FrameCache
from bridge.metrics import BridgeMetrics
from bridge.relayframes import DeliveryFrames
from bridge.runner import StatelessDeflate
from bridge.wswrite import SEND_MANY, BatchingWebsocket, BatchingWebsocketConnection

pytestmark = pytest.mark.timeout(10)

DEFLATE_OFFER = b"permessage-deflate; client_max_window_bits"
#: Sizes on each side of the frame header's length encodings (7, 16 and 64 bits).
TEXTS = ["", "a", "é" * 62, "x" * 125, "y" * 126, "z" * 65535, "w" * 65536, '{"type":"pong"}']


class Group:
    """hypercorn's task group, recording the scope the app would get."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {}
        self.to_app: list[dict[str, Any]] = []

    async def spawn_app(self, app: Any, config: Any, scope: Any, send: Any) -> Any:
        self.scope = scope

        async def put(message: dict[str, Any]) -> None:
            self.to_app.append(message)

        return put

    def spawn(self, func: Any, *args: Any) -> None:
        raise AssertionError("nothing is spawned here")


class Wire:
    """What the stream hands to the connection below it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def send(self, event: Event) -> None:
        if isinstance(event, Data):
            self.writes.append(bytes(event.data))


async def accepted(
    offer: bytes | None, max_message_size: int = 65536
) -> tuple[wsguard.GuardedWSStream, Group, Wire]:
    """A stream past the handshake, with ``offer`` as the client's extensions."""
    group, wire = Group(), Wire()
    config = Config()
    config.websocket_max_message_size = max_message_size
    # app, config, context, task group, ssl, client, server, send, stream id
    stream = wsguard.GuardedWSStream(None, config, None, group, False, None, None, wire.send, 1)
    headers = [
        (b"host", b"localhost"),
        (b"connection", b"upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
    ]
    if offer is not None:
        headers.append((b"sec-websocket-extensions", offer))
    await stream.handle(
        Request(
            stream_id=1,
            headers=headers,
            http_version="1.1",
            method="GET",
            raw_path=b"/api/v1/ws/notifications",
            state=ConnectionState({}),
        )
    )
    await stream.app_send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    return stream, group, wire


def send_many(texts: list[str]) -> Any:
    """The app's ``SEND_MANY`` message (no ASGI type of its own)."""
    return {"type": SEND_MANY, "texts": texts}


def received(data: bytes, *, deflate: bool) -> list[str]:
    """The text messages a client (with permessage-deflate, if ``deflate``) reads."""
    extensions: list[Extension] = []
    if deflate:
        client = PerMessageDeflate()
        client.finalize("permessage-deflate")
        extensions.append(client)
    connection = Connection(ConnectionType.CLIENT, extensions)
    connection.receive_data(data)
    messages: list[str] = []
    parts: list[str] = []
    for event in connection.events():
        assert isinstance(event, TextMessage), event
        parts.append(event.data)
        if event.message_finished:
            messages.append("".join(parts))
            parts = []
    assert not parts
    return messages


async def test_the_server_advertises_that_it_takes_batches() -> None:
    _, group, _ = await accepted(None)
    assert SEND_MANY in group.scope["extensions"]
    assert "websocket.http.response" in group.scope["extensions"]  # hypercorn's own kept


@pytest.mark.parametrize(
    ("offer", "deflate"),
    [(None, False), (DEFLATE_OFFER, True)],
    ids=["no extension", "permessage-deflate (stateless: sent uncompressed)"],
)
async def test_each_text_is_a_message_of_its_own_and_all_leave_in_one_write(
    offer: bytes | None, deflate: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hypercorn.protocol.ws_stream.PerMessageDeflate", StatelessDeflate)
    stream, _, wire = await accepted(offer)
    await stream.app_send(send_many(TEXTS))
    assert len(wire.writes) == 1
    assert received(wire.writes[0], deflate=deflate) == TEXTS
    if deflate:  # RSV1 clear on every frame: nothing compressed, nothing for zlib to keep
        assert wire.writes[0][0] == 0x81


async def test_a_deflate_that_compresses_gets_frames_it_can_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """wsproto's own permessage-deflate (not ``StatelessDeflate``): wsproto compresses."""
    # A server started in this process (bridge.runner) swaps hypercorn's deflate for
    # StatelessDeflate for good; put wsproto's back for this test, whatever ran before.
    monkeypatch.setattr("hypercorn.protocol.ws_stream.PerMessageDeflate", PerMessageDeflate)
    stream, _, wire = await accepted(DEFLATE_OFFER)
    texts = ['{"type":"notification","n":' + str(i) + "}" * 50 for i in range(5)]
    await stream.app_send(send_many(texts))
    assert len(wire.writes) == 1
    assert wire.writes[0][0] & 0x40  # RSV1: compressed
    assert received(wire.writes[0], deflate=True) == texts


async def test_nothing_follows_the_close_frame_of_a_message_too_big() -> None:
    """The server closes on its own (1009) while the app still sends: dropped, as
    hypercorn drops a single message then."""
    stream, group, wire = await accepted(None, max_message_size=10)
    client = Connection(ConnectionType.CLIENT)
    await stream.handle(Data(stream_id=1, data=client.send(TextMessage(data="x" * 20))))
    assert group.to_app[-1] == {"type": "websocket.disconnect", "code": 1009}
    closing = len(wire.writes)
    await stream.app_send(send_many(["late"]))
    assert len(wire.writes) == closing
    client.receive_data(b"".join(wire.writes))
    events = list(client.events())
    assert len(events) == 1 and isinstance(events[0], CloseConnection)
    assert events[0].code == CloseReason.MESSAGE_TOO_BIG


class QueuedLink:
    """A session link with ``frames`` (serialized messages) waiting, then nothing."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames

    async def receive_frame(self) -> bytes | None:
        if self._frames:
            return self._frames.pop(0)
        await asyncio.Event().wait()
        return None

    def ready(self) -> bool:
        return bool(self._frames)


class RecordingSocket(BatchingWebsocket):
    """A ``BatchingWebsocket`` that records its batches (no server under it)."""

    def __init__(self, expected: int) -> None:
        self.batches: list[list[str]] = []
        self.expected = expected
        self.all_sent = asyncio.Event()

    async def send_many(self, texts: Any) -> None:
        self.batches.append(list(texts))
        if sum(map(len, self.batches)) >= self.expected:
            self.all_sent.set()


class State:
    def __init__(self) -> None:
        self.frames = FrameCache()
        self.deliveries = DeliveryFrames()
        self.metrics = BridgeMetrics(CollectorRegistry())


async def test_the_handler_hands_over_what_waits_at_once_within_the_bounds() -> None:
    count = ws.BATCH_MESSAGES + 3
    pong = stream_pb2.ConnectResponse(pong=stream_pb2.PongEvent()).SerializeToString()
    socket = RecordingSocket(count)
    link = QueuedLink([pong] * count)
    task = asyncio.create_task(ws._downstream(socket, link, State()))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(5):
            await socket.all_sent.wait()
    finally:
        task.cancel()
    assert [len(batch) for batch in socket.batches] == [ws.BATCH_MESSAGES, 3]
    assert all(text.startswith('{"type":"pong"') for text in socket.batches[0])


@pytest.mark.parametrize("advertised", [True, False], ids=["advertised", "not advertised"])
async def test_the_app_sends_a_batch_only_to_a_server_that_takes_one(advertised: bool) -> None:
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    if advertised:
        extensions[SEND_MANY] = {}
    scope: Any = {"extensions": extensions}
    connection = BatchingWebsocketConnection(None, scope)  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await connection.send_data(send, ["a", "b"])
    await connection.send_data(send, "c")
    if advertised:
        assert sent[0] == {"type": SEND_MANY, "texts": ["a", "b"]}
        assert [m.get("text") for m in sent[1:]] == ["c"]
    else:
        assert [(m["type"], m.get("text")) for m in sent] == [
            ("websocket.send", "a"),
            ("websocket.send", "b"),
            ("websocket.send", "c"),
        ]
