"""``bridge.h11write``: a response's head goes out with its body, in one write, and
nothing else is held back or reordered."""

from __future__ import annotations

from typing import Any, cast

import h11
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.events import Body, Data, EndBody, Response, StreamClosed

from bridge.h11write import CoalescingH11Protocol
from bridge.slim import SlimEventWrapper


class Context:
    """The part of hypercorn's ``WorkerContext`` the protocol uses."""

    event_class = SlimEventWrapper

    def __init__(self) -> None:
        self.terminated = SlimEventWrapper()


def protocol(request: bytes) -> tuple[CoalescingH11Protocol, list[Event]]:
    """A protocol that has read ``request``, and the events it sends."""
    sent: list[Event] = []

    async def send(event: Event) -> None:
        sent.append(event)

    config = Config()
    config.include_server_header = False
    config.include_date_header = False
    context: Any = Context()
    unused: Any = None  # the parts of a connection these tests do not reach
    proto = CoalescingH11Protocol(
        unused, config, context, unused, unused, False, unused, unused, cast(Any, send)
    )
    proto.connection.receive_data(request)
    assert isinstance(proto.connection.next_event(), h11.Request)
    return proto, sent


POST = b"POST /api/v1/notifications HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


async def test_the_head_is_written_with_the_body() -> None:
    proto, sent = protocol(POST)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await proto.stream_send(Response(stream_id=1, headers=headers, status_code=201))
    assert sent == []
    await proto.stream_send(Body(stream_id=1, data=b"{}"))
    await proto.stream_send(EndBody(stream_id=1))
    writes = [e.data for e in sent if isinstance(e, RawData) and e.data]
    assert writes == [
        b"HTTP/1.1 201 \r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    ]


async def test_a_head_without_a_body_goes_out_with_the_end() -> None:
    proto, sent = protocol(POST)
    headers = [(b"content-length", b"0")]
    await proto.stream_send(Response(stream_id=1, headers=headers, status_code=204))
    await proto.stream_send(EndBody(stream_id=1))
    assert [e.data for e in sent if isinstance(e, RawData)] == [
        b"HTTP/1.1 204 \r\ncontent-length: 0\r\n\r\n"
    ]


async def test_a_head_is_written_before_the_stream_closes() -> None:
    proto, sent = protocol(POST)
    headers = [(b"content-length", b"10")]
    await proto.stream_send(Response(stream_id=1, headers=headers, status_code=200))
    await proto.stream_send(StreamClosed(stream_id=1))  # the app failed before its body
    assert isinstance(sent[0], RawData)
    assert sent[0].data.startswith(b"HTTP/1.1 200 ")
    assert isinstance(sent[-1], Closed)


async def test_informational_heads_go_out_at_once() -> None:
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    proto, sent = protocol(upgrade)
    headers = [(b"upgrade", b"WebSocket"), (b"connection", b"Upgrade")]
    await proto.stream_send(Response(stream_id=1, headers=headers, status_code=101))
    assert len(sent) == 1 and isinstance(sent[0], RawData)
    assert sent[0].data.startswith(b"HTTP/1.1 101 ")
    await proto.stream_send(Data(stream_id=1, data=b"\x81\x00"))
    assert isinstance(sent[1], RawData) and sent[1].data == b"\x81\x00"
