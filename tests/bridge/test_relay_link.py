"""``RelaySessionLink`` and ``RelayStream`` against a fake relay call: no engine, no network.

The fake stands for the gRPC ``Relay`` call: it records what the bridge writes (a write
can be held, as when the engine stops reading) and hands the bridge the frames a test
gives it, as the engine would send them: parsed from the wire, or (``in-process``, every
test both ways) as the in-process servicer's ``LocalBatch``, deliveries as tuples.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import grpc
import pytest
from tidings.v1 import relay_pb2, stream_pb2

from bridge.upstream import (
    MAX_PENDING_COMMANDS,
    RelaySessionLink,
    RelayStream,
    StreamEnded,
)
from server.rpc.inprocess import LocalBatch, LocalDelivery

pytestmark = pytest.mark.timeout(10)


class FakeCall:
    """The relay call as the bridge sees it."""

    def __init__(self, local: bool = False) -> None:
        self.written: list[relay_pb2.RelayRequest] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self._local = local
        self._responses: asyncio.Queue[relay_pb2.RelayResponse | LocalBatch | None] = (
            asyncio.Queue()
        )
        self._changed = asyncio.Event()

    async def write(self, request: relay_pb2.RelayRequest) -> None:
        await self.writable.wait()
        self.written.append(request)
        self._changed.set()

    def __aiter__(self) -> FakeCall:
        return self

    async def __anext__(self) -> relay_pb2.RelayResponse | LocalBatch:
        response = await self._responses.get()
        if response is None:
            raise StopAsyncIteration
        return response

    def cancel(self) -> None:
        self._responses.put_nowait(None)

    def send(self, *frames: relay_pb2.RelayFrame) -> None:
        """The engine sends ``frames`` in one batch."""
        if not self._local:
            self._responses.put_nowait(relay_pb2.RelayResponse(frames=frames))
            return
        local: list[relay_pb2.RelayFrame | LocalDelivery] = [
            (f.session_id, f.notification_id, f.event)
            if f.notification_id and not f.HasField("allowance")
            else f
            for f in frames
        ]
        self._responses.put_nowait(LocalBatch(local))

    async def wait_written(self, count: int) -> list[relay_pb2.RelayRequest]:
        """Once ``count`` requests are written: all of them."""
        async with asyncio.timeout(5):
            while len(self.written) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.written

    def closes(self) -> list[relay_pb2.RelayClose]:
        return [r.close for r in self.written if r.WhichOneof("kind") == "close"]


class FakeStub:
    def __init__(self, local: bool = False) -> None:
        self.call = FakeCall(local)

    def Relay(self) -> FakeCall:
        return self.call


def greeting(sid: int, queued: int = 0, **allowance: int) -> relay_pb2.RelayFrame:
    event = stream_pb2.ConnectResponse(
        connection_established=stream_pb2.ConnectionEstablished(user_id="u", queued=queued)
    )
    frame = relay_pb2.RelayFrame(session_id=sid, event=event.SerializeToString())
    if allowance:
        frame.allowance.CopyFrom(relay_pb2.RelayAllowance(replay_events=queued, **allowance))
    return frame


def notification(sid: int, nid: int, body: str = "") -> relay_pb2.RelayFrame:
    event = stream_pb2.ConnectResponse()
    event.notification.notification.id = nid
    event.notification.notification.title = body
    return relay_pb2.RelayFrame(
        session_id=sid, event=event.SerializeToString(), notification_id=nid
    )


def pong(sid: int) -> relay_pb2.RelayFrame:
    event = stream_pb2.ConnectResponse(pong=stream_pb2.PongEvent())
    return relay_pb2.RelayFrame(session_id=sid, event=event.SerializeToString())


def end(sid: int, code: grpc.StatusCode = grpc.StatusCode.OK) -> relay_pb2.RelayFrame:
    return relay_pb2.RelayFrame(session_id=sid, end=relay_pb2.RelayEnd(code=code.value[0]))


class Bridge:
    """A relay stream over the fake call, and helpers to open links on it."""

    def __init__(self, local: bool = False) -> None:
        self.stub = FakeStub(local)
        self.call = self.stub.call
        self.stream = RelayStream(cast(Any, self.stub))

    def open(self, sid: int, params: stream_pb2.ConnectParams | None = None) -> RelaySessionLink:
        link = RelaySessionLink(self.stream, sid)
        self.stream.open(
            sid, (("x-tidings-user", "u"),), params or stream_pb2.ConnectParams(), link
        )
        return link

    async def close(self) -> None:
        await self.stream.close()


@pytest.fixture(params=["network", "in-process"])
async def bridge(request: pytest.FixtureRequest) -> Any:
    b = Bridge(local=request.param == "in-process")
    yield b
    await b.close()


async def kinds(link: RelaySessionLink, n: int) -> list[str]:
    async with asyncio.timeout(5):
        return [str((await link.receive()).WhichOneof("kind")) for _ in range(n)]  # type: ignore[union-attr]


async def test_open_carries_credentials_and_typed_parameters(bridge: Bridge) -> None:
    params = stream_pb2.ConnectParams(since=7)
    params.filter.mode = stream_pb2.FILTER_MODE_ONLY  # "none": only these, and no type
    bridge.open(1, params)
    (written,) = await bridge.call.wait_written(1)
    assert written.open.session_id == 1
    assert dict(written.open.metadata) == {"x-tidings-user": "u"}
    assert written.open.params == params


async def test_frames_arrive_in_order_and_the_greeting_establishes(bridge: Bridge) -> None:
    link = bridge.open(1)
    assert not link.established.done()
    bridge.call.send(greeting(1, queued=1, max_events=10, max_bytes=1 << 20), notification(1, 5))
    bridge.call.send(pong(1), notification(1, 6))
    assert await kinds(link, 4) == [
        "connection_established",
        "notification",
        "pong",
        "notification",
    ]
    assert link.established.done()
    bridge.call.send(end(1))
    async with asyncio.timeout(5):
        assert await link.receive() is None  # the engine ended the session with OK


async def test_what_was_not_passed_on_goes_back_by_id_on_close(bridge: Bridge) -> None:
    link = bridge.open(1)
    batch = (notification(1, 5), pong(1), notification(1, 6), notification(1, 7))
    bridge.call.send(greeting(1, max_events=10, max_bytes=1 << 20), *batch)
    # One batch is delivered at once: once two are received, all five wait in the link.
    assert await kinds(link, 2) == ["connection_established", "notification"]  # 5 passed on
    link.close()
    await bridge.call.wait_written(2)
    assert [list(c.undelivered_ids) for c in bridge.call.closes()] == [[6, 7]]
    # In flight when the close was sent: goes back too; the end closes the handshake.
    bridge.call.send(notification(1, 8), pong(1), end(1))
    written = await bridge.call.wait_written(3)
    assert list(written[2].close.undelivered_ids) == [8]
    assert link.ended is not None and link.ended.status is grpc.StatusCode.CANCELLED


async def test_a_browser_beyond_the_stated_allowance_is_closed_as_slow(bridge: Bridge) -> None:
    link = bridge.open(1)
    # Two events of lag allowed, the one replayed notification on top.
    bridge.call.send(greeting(1, queued=1, max_events=2, max_bytes=1 << 20), notification(1, 1))
    bridge.call.send(notification(1, 2))
    bridge.call.send(notification(1, 3))  # four waiting: greeting + replay + 2 → over
    async with asyncio.timeout(5):
        ended = await link.ending
    assert ended.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    await bridge.call.wait_written(2)
    assert [list(c.undelivered_ids) for c in bridge.call.closes()] == [[1, 2, 3]]
    with pytest.raises(StreamEnded):
        await link.receive()


async def test_the_replay_does_not_count_against_the_allowance(bridge: Bridge) -> None:
    link = bridge.open(1)
    replay = [notification(1, i) for i in range(1, 6)]
    bridge.call.send(greeting(1, queued=5, max_events=1, max_bytes=1 << 20), *replay)
    assert await kinds(link, 6) == ["connection_established"] + ["notification"] * 5
    assert link.ended is None


async def test_the_byte_allowance_counts_serialized_events(bridge: Bridge) -> None:
    link = bridge.open(1)
    bridge.call.send(greeting(1, max_events=100, max_bytes=1000))
    assert await kinds(link, 1) == ["connection_established"]
    bridge.call.send(notification(1, 1, "x" * 2000))  # alone: allowed, however big
    assert await kinds(link, 1) == ["notification"]
    bridge.call.send(notification(1, 2, "x" * 600), notification(1, 3, "x" * 600))
    async with asyncio.timeout(5):
        ended = await link.ending
    assert ended.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    await bridge.call.wait_written(2)
    assert [list(c.undelivered_ids) for c in bridge.call.closes()] == [[2, 3]]


async def test_a_browser_that_floods_the_outbox_is_closed_and_others_are_not(
    bridge: Bridge,
) -> None:
    flood, calm = bridge.open(1), bridge.open(2)
    await bridge.call.wait_written(2)
    bridge.call.writable.clear()  # the engine stops reading
    ping = stream_pb2.ConnectRequest(ping=stream_pb2.PingCommand())
    for _ in range(MAX_PENDING_COMMANDS):
        assert await flood.send(ping)
    assert await calm.send(ping)
    assert flood.ending.done() is False
    assert not await flood.send(ping)
    assert flood.ended is not None
    assert flood.ended.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert calm.ended is None
    bridge.call.writable.set()
    written = await bridge.call.wait_written(2 + MAX_PENDING_COMMANDS + 2)
    assert written[-1].WhichOneof("kind") == "close" and written[-1].close.session_id == 1


async def test_written_commands_free_their_room(bridge: Bridge) -> None:
    link = bridge.open(1)
    ping = stream_pb2.ConnectRequest(ping=stream_pb2.PingCommand())
    for round_ in range(3):
        for _ in range(MAX_PENDING_COMMANDS):
            assert await link.send(ping)
        await bridge.call.wait_written(1 + (round_ + 1) * MAX_PENDING_COMMANDS)
    assert link.ended is None


async def test_the_relay_ending_ends_every_link(bridge: Bridge) -> None:
    links = [bridge.open(sid) for sid in (1, 2)]
    bridge.call.cancel()
    for link in links:
        async with asyncio.timeout(5):
            ended = await link.ending
        assert ended.status is grpc.StatusCode.UNAVAILABLE
        assert not ended.established


# --- writes straight from the relay (``write_directly``) --------------------------------


class DirectWriter:
    """A socket's direct writer: takes the notifications at the head of what waits while
    ``writable``, records their ids in order, declines anything else."""

    def __init__(self) -> None:
        self.writable = True
        self.calls = 0
        self.ids: list[int] = []
        self.wrote = asyncio.Event()

    def __call__(self, frames: list[bytes], start: int) -> int:
        self.calls += 1
        if not self.writable:
            return 0
        taken = 0
        for data in frames[start:]:
            message = stream_pb2.ConnectResponse.FromString(data)
            if message.WhichOneof("kind") != "notification":
                break
            self.ids.append(message.notification.notification.id)
            taken += 1
        if taken:
            self.wrote.set()
        return taken


class Handler:
    """A socket's handler task: takes frames from the link one by one, records their kinds."""

    def __init__(self, link: RelaySessionLink) -> None:
        self.link = link
        self.got: list[str] = []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            data = await self.link.receive_frame()
            assert data is not None
            message = stream_pb2.ConnectResponse.FromString(data)
            kind = str(message.WhichOneof("kind"))
            if kind == "notification":
                kind += f" {message.notification.notification.id}"
            self.got.append(kind)
            self.changed.set()

    async def wait_for(self, count: int) -> list[str]:
        async with asyncio.timeout(5):
            while len(self.got) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.got


async def test_what_finds_the_handler_waiting_is_written_directly_and_order_holds(
    bridge: Bridge,
) -> None:
    link = bridge.open(1)
    direct = DirectWriter()
    link.write_directly(direct)
    handler = Handler(link)
    try:
        bridge.call.send(greeting(1, max_events=10, max_bytes=1 << 20))
        assert await handler.wait_for(1) == ["connection_established"]  # not a notification
        # One relay message: the two notifications at its head go straight to the socket
        # (one call), the handler is woken for the pong and what follows it.
        bridge.call.send(notification(1, 5), notification(1, 6), pong(1), notification(1, 7))
        assert await handler.wait_for(3) == ["connection_established", "pong", "notification 7"]
        assert direct.ids == [5, 6]
        # The handler waits again: the next one is written directly, the handler sleeps on.
        direct.wrote.clear()
        bridge.call.send(notification(1, 8))
        async with asyncio.timeout(5):
            await direct.wrote.wait()
        assert direct.ids == [5, 6, 8]
        assert len(handler.got) == 3
    finally:
        handler.task.cancel()


async def test_what_the_socket_cannot_take_wakes_the_handler_and_goes_back_on_close(
    bridge: Bridge,
) -> None:
    link = bridge.open(1)
    direct = DirectWriter()
    link.write_directly(direct)
    bridge.call.send(greeting(1, max_events=10, max_bytes=1 << 20))
    async with asyncio.timeout(5):
        assert await link.receive_frame() is not None  # the greeting
    waiting = asyncio.create_task(link.receive_frame())  # the handler, waiting
    bridge.call.send(notification(1, 5))
    async with asyncio.timeout(5):
        await direct.wrote.wait()
    assert direct.ids == [5] and not waiting.done()
    direct.writable = False  # the socket's transport is full: the handler must wait
    bridge.call.send(notification(1, 6), notification(1, 7))
    async with asyncio.timeout(5):
        first = await waiting
    assert first is not None
    assert stream_pb2.ConnectResponse.FromString(first).notification.notification.id == 6
    link.close()
    await bridge.call.wait_written(2)
    # 5 was written (by the direct path), 6 taken by the handler; 7 waited: it goes back.
    assert [list(c.undelivered_ids) for c in bridge.call.closes()] == [[7]]


async def test_a_busy_handler_gets_what_comes_meanwhile_itself(bridge: Bridge) -> None:
    """While the handler holds frames (writing them), nothing is written past it."""
    link, other = bridge.open(1), bridge.open(2)
    direct, other_direct = DirectWriter(), DirectWriter()
    link.write_directly(direct)
    other.write_directly(other_direct)
    bridge.call.send(greeting(1, max_events=10, max_bytes=1 << 20), notification(1, 5))
    bridge.call.send(greeting(2, max_events=10, max_bytes=1 << 20))
    assert await kinds(link, 2) == ["connection_established", "notification"]
    assert await kinds(other, 1) == ["connection_established"]
    waiting = asyncio.create_task(other.receive_frame())  # session 2's handler waits
    # Session 1's handler is busy (writing 5): what comes for it now waits for it, while
    # session 2's, in the same relay message, is written directly.
    bridge.call.send(notification(1, 6), notification(2, 9))
    async with asyncio.timeout(5):
        await other_direct.wrote.wait()
    assert other_direct.ids == [9] and not waiting.done()
    assert link.ready() and direct.ids == []
    assert await kinds(link, 1) == ["notification"]
    waiting.cancel()
