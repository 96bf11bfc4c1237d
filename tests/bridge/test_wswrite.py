"""Several messages, one write: ``GuardedWSStream`` taking ``SEND_MANY`` from the app.

The stream runs in memory (hypercorn injects ``send`` and the task group), and what it
writes is read back by a wsproto client connection: each text is a message of its own,
in order, whatever the extensions negotiated, and all of them leave in one write.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config
from hypercorn.protocol.events import Data, Event, Request
from hypercorn.protocol.h11 import H11Protocol
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
from bridge.wswrite import (
    SEND_MANY,
    WRITE_NOW,
    BatchingWebsocket,
    BatchingWebsocketConnection,
    DirectDeliveries,
    DirectWriter,
)

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


# --- write_now: the relay writing to an idle socket ---------------------------------------


class Transport:
    """The connection's transport as ``write_now`` sees it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0  # bytes the kernel has not taken yet
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Writer:
    """hypercorn's ``StreamWriter`` for the connection, over ``Transport``."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        pass


async def over_http11(
    offer: bytes | None = None, max_message_size: int = 65536
) -> tuple[wsguard.GuardedWSStream, Group, TCPServer, Transport]:
    """An accepted stream served over HTTP/1.1 as hypercorn does: stream →
    ``H11Protocol.stream_send`` → ``TCPServer.protocol_send`` → the writer."""
    stream, group, _ = await accepted(offer, max_message_size)
    transport = Transport()
    server = TCPServer.__new__(TCPServer)
    server.writer = Writer(transport)  # type: ignore[assignment]
    server.send_lock = asyncio.Lock()
    protocol = H11Protocol.__new__(H11Protocol)
    protocol.send = server.protocol_send
    stream.send = protocol.stream_send
    return stream, group, server, transport


async def test_write_now_writes_each_payload_as_a_message_in_one_write_after_the_handler() -> None:
    stream, _, _, transport = await over_http11()
    await stream.app_send(send_many(["first"]))  # the handler's path, same connection
    payloads = [text.encode() for text in TEXTS]
    assert stream.write_now(payloads)
    assert len(transport.writes) == 2
    assert received(b"".join(transport.writes), deflate=False) == ["first", *TEXTS]


async def test_write_now_writes_nothing_while_another_write_holds_the_connection() -> None:
    stream, _, server, transport = await over_http11()
    async with server.send_lock:  # e.g. the handler waiting for the transport to drain
        assert not stream.write_now([b"x"])
    assert transport.writes == []
    assert stream.write_now([b"x"])


async def test_write_now_leaves_a_full_transport_to_the_handler() -> None:
    stream, _, _, transport = await over_http11()
    transport.buffered = wsguard.DIRECT_MAX + 1  # the browser reads slowly
    assert not stream.write_now([b"x"])
    transport.buffered = wsguard.DIRECT_MAX
    assert stream.write_now([b"x"])
    transport.closing = True
    assert not stream.write_now([b"y"])
    assert len(transport.writes) == 1


async def test_write_now_sends_nothing_after_the_close_frame() -> None:
    stream, group, _, transport = await over_http11(max_message_size=10)
    client = Connection(ConnectionType.CLIENT)
    await stream.handle(Data(stream_id=1, data=client.send(TextMessage(data="x" * 20))))
    assert group.to_app[-1] == {"type": "websocket.disconnect", "code": 1009}
    closing = len(transport.writes)
    assert not stream.write_now([b"late"])
    assert len(transport.writes) == closing


async def test_a_deflate_that_compresses_keeps_the_handlers_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A socket that negotiated wsproto's own permessage-deflate gets compressed frames
    from the handler, never plain ones from ``write_now``."""
    monkeypatch.setattr("hypercorn.protocol.ws_stream.PerMessageDeflate", PerMessageDeflate)
    stream, _, _, transport = await over_http11(DEFLATE_OFFER)
    assert not stream.write_now([b"x"])
    assert transport.writes == []


async def test_the_stateless_deflate_is_written_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hypercorn.protocol.ws_stream.PerMessageDeflate", StatelessDeflate)
    stream, _, _, transport = await over_http11(DEFLATE_OFFER)
    assert stream.write_now([b"x"])
    assert received(transport.writes[0], deflate=True) == ["x"]


async def test_a_stream_not_over_http11_has_no_direct_writes() -> None:
    stream, _, wire = await accepted(None)  # under something else (HTTP/2 frames it again)
    handshake = len(wire.writes)
    assert not stream.write_now([b"x"])
    assert len(wire.writes) == handshake


async def test_the_app_gets_the_socket_only_from_a_server_that_offers_it() -> None:
    stream, group, _, transport = await over_http11()
    assert WRITE_NOW in group.scope["extensions"]
    connection = BatchingWebsocketConnection(None, group.scope)  # type: ignore[arg-type]
    state = State()
    writer = DirectWriter(DirectDeliveries(state.deliveries, state.metrics))
    await connection.send_data(stream.app_send, writer)
    assert writer.target is stream
    notification = stream_pb2.ConnectResponse()
    notification.notification.notification.id = 3
    assert writer([notification.SerializeToString()], 0) == 1  # through the stream
    expected = state.deliveries.frame(notification.SerializeToString())
    assert expected is not None
    assert received(transport.writes[-1], deflate=False) == [expected[0]]
    scope: Any = {"extensions": {}}
    plain = BatchingWebsocketConnection(None, scope)  # type: ignore[arg-type]
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    other = DirectWriter(DirectDeliveries(state.deliveries, state.metrics))
    await plain.send_data(send, other)
    assert other.target is None and sent == []
    assert other([b"\x12"], 0) == 0  # no target: the handler writes


async def test_direct_deliveries_write_the_notifications_at_the_head_and_count_them() -> None:
    state = State()
    direct = DirectDeliveries(state.deliveries, state.metrics)
    notification = stream_pb2.ConnectResponse()
    notification.notification.notification.id = 7
    notification.notification.notification.user_id = "u"
    notification.notification.notification.title = "T"
    pong = stream_pb2.ConnectResponse(pong=stream_pb2.PongEvent())
    frames = [pong.SerializeToString(), notification.SerializeToString()] * 2

    class Target:
        def __init__(self, takes: bool) -> None:
            self.takes = takes
            self.written: list[list[bytes]] = []

        def write_now(self, payloads: Any) -> bool:
            if self.takes:
                self.written.append(list(payloads))
            return self.takes

    target = Target(True)
    assert direct.write(target, frames, 0) == 0  # a pong first: the handler's
    assert direct.write(target, frames, 1) == 1  # up to the next pong
    expected = state.deliveries.frame(frames[1])
    assert expected is not None
    assert target.written == [[expected[0].encode()]]
    registry = state.metrics.registry
    sent = {"type": "notification"}
    assert registry.get_sample_value("tidings_bridge_ws_messages_sent_total", sent) == 1
    assert registry.get_sample_value("tidings_bridge_delivery_latency_seconds_count") == 1
    assert direct.write(Target(False), frames, 3) == 0  # the socket cannot take it


async def test_write_now_frames_one_payload_or_several_of_any_length_exactly() -> None:
    stream, _, _, transport = await over_http11()
    payloads = [text.encode() for text in TEXTS]
    for payload in payloads:  # one message per write: the header kept by length
        assert stream.write_now([payload])
        assert transport.writes[-1] == wsguard.text_frame_header(len(payload)) + payload
    assert stream.write_now(payloads)
    assert transport.writes[-1] == b"".join(
        wsguard.text_frame_header(len(payload)) + payload for payload in payloads
    )
    assert received(b"".join(transport.writes), deflate=False) == [*TEXTS, *TEXTS]


async def test_direct_writes_are_counted_by_the_end_of_the_turn_once_each() -> None:
    """The relay's direct writes of one turn are counted together: by the end of the
    turn, or at any collection before it, each exactly once."""
    state = State()
    direct = DirectDeliveries(state.deliveries, state.metrics)
    notification = stream_pb2.ConnectResponse()
    notification.notification.notification.id = 7
    notification.notification.notification.user_id = "u"
    notification.notification.notification.created_at.GetCurrentTime()
    frame = notification.SerializeToString()

    class Target:
        def write_now(self, payloads: Any) -> bool:
            return True

    registry = state.metrics.registry
    sent = {"type": "notification"}
    count = "tidings_bridge_delivery_latency_seconds_count"
    fast = {"le": "0.1"}  # created just now: written well within 100 ms
    for _ in range(3):
        assert direct.write(Target(), [frame, frame], 0) == 2
    assert registry.get_sample_value("tidings_bridge_ws_messages_sent_total", sent) == 6
    assert registry.get_sample_value(count) == 6  # collected before the turn ended
    assert direct.write(Target(), [frame], 0) == 1
    await asyncio.sleep(0)  # the end of the turn
    await asyncio.sleep(0)
    assert state.metrics._held == []  # counted without a collection
    assert registry.get_sample_value("tidings_bridge_ws_messages_sent_total", sent) == 7
    assert registry.get_sample_value(count) == 7
    assert registry.get_sample_value("tidings_bridge_delivery_latency_seconds_bucket", fast) == 7
