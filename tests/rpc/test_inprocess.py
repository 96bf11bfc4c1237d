"""In-process calls (unary, and the relay's stream) end the way network gRPC calls do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import grpc
import pytest
from tidings.v1 import admin_pb2

from server.engine.errors import InvalidArgument
from server.rpc.errors import ERROR_CODE_KEY, ERROR_FIELD_KEY, abort
from server.rpc.inprocess import (
    PEER,
    STREAM_WINDOW,
    InProcessStream,
    InProcessStubs,
    InProcessUnary,
)


class Servicer:
    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.release = asyncio.Event()

    async def Echo(self, request: Any, context: Any) -> Any:
        self.seen.append((tuple(context.invocation_metadata()), context.peer()))
        return request

    async def Refuse(self, request: Any, context: Any) -> Any:
        await abort(context, InvalidArgument("notifications[2].title", "is required"))

    async def Hang(self, request: Any, context: Any) -> Any:
        await self.release.wait()

    async def Crash(self, request: Any, context: Any) -> Any:
        raise RuntimeError("boom")


async def test_the_servicer_gets_the_message_and_metadata_and_the_answer_is_returned() -> None:
    servicer = Servicer()
    request = admin_pb2.GetStatsRequest()
    answer = await InProcessUnary(servicer.Echo)(
        request, metadata=(("x-tidings-user", "7"),), timeout=5
    )
    assert answer is request  # no serialization, no copy
    assert servicer.seen == [((("x-tidings-user", "7"),), PEER)]


async def test_abort_is_an_rpc_error_with_code_details_and_trailers() -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await InProcessUnary(Servicer().Refuse)(admin_pb2.GetStatsRequest(), timeout=5)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "notifications[2].title: is required"
    trailers = dict(error.trailing_metadata() or ())
    assert trailers == {
        ERROR_CODE_KEY: "invalid_message",
        ERROR_FIELD_KEY: "notifications[2].title",
    }


async def test_a_deadline_is_deadline_exceeded_and_a_crash_is_unknown() -> None:
    servicer = Servicer()
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await InProcessUnary(servicer.Hang)(admin_pb2.GetStatsRequest(), timeout=0.01)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as crashed:
        await InProcessUnary(servicer.Crash)(admin_pb2.GetStatsRequest(), timeout=5)
    assert crashed.value.code() == grpc.StatusCode.UNKNOWN


# --- the relay stream, in-process -------------------------------------------------------


class Streamer:
    """A bidirectional handler: answers each request with ``(request, n)`` and, on
    ``"burst"``, ``count`` responses at once; records its clean-up."""

    def __init__(self, count: int = 0) -> None:
        self.count = count
        self.sent = 0
        self.progress = asyncio.Event()
        self.closed = asyncio.Event()

    async def sent_at_least(self, n: int) -> None:
        async with asyncio.timeout(5):
            while self.sent < n:
                self.progress.clear()
                await self.progress.wait()

    async def Chat(self, requests: AsyncIterable[Any], context: Any) -> AsyncIterator[Any]:
        try:
            async for request in requests:
                if request == "burst":
                    for n in range(self.count):
                        self.sent += 1
                        self.progress.set()
                        yield ("burst", n)
                elif request == "crash":
                    raise RuntimeError("boom")
                elif request == "refuse":
                    await abort(context, InvalidArgument("since", "must be a positive integer"))
                elif request == "wire":
                    yield b"bytes for the wire"
                else:
                    yield (request, 0)
        finally:
            self.closed.set()


def stream(handler: Streamer) -> InProcessStream[Any, Any]:
    return InProcessStream(handler.Chat, lambda data: ("parsed", data))


async def test_requests_reach_the_handler_in_order_and_answers_come_back() -> None:
    call = stream(Streamer())
    for word in ("a", "b", "wire"):
        await call.write(word)
    answers = aiter(call)
    assert [await anext(answers) for _ in range(3)] == [
        ("a", 0),
        ("b", 0),
        ("parsed", b"bytes for the wire"),  # what the handler prepared for the wire
    ]
    call.cancel()


async def test_an_unread_stream_holds_the_handler_back_and_cancel_closes_it() -> None:
    handler = Streamer(count=10 * STREAM_WINDOW)
    call = stream(handler)
    await call.write("burst")
    await handler.sent_at_least(STREAM_WINDOW)
    for _ in range(10):
        await asyncio.sleep(0)  # the handler gets turns of the loop, and stays held
    assert handler.sent == STREAM_WINDOW
    answers = aiter(call)
    assert await anext(answers) == ("burst", 0)
    await handler.sent_at_least(STREAM_WINDOW + 1)
    assert handler.sent == STREAM_WINDOW + 1  # one read, one more room
    assert call.cancel()
    await asyncio.wait_for(handler.closed.wait(), 5)  # its clean-up ran
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_to_the_end(answers)  # what was answered before the cancel, then the end
    assert caught.value.code() == grpc.StatusCode.CANCELLED
    with pytest.raises(grpc.aio.AioRpcError):
        await call.write("late")


async def test_a_handler_that_does_not_read_holds_the_writer_back() -> None:
    release = asyncio.Event()
    taken: list[Any] = []

    async def slow(requests: AsyncIterable[Any], context: Any) -> AsyncIterator[Any]:
        await release.wait()
        async for request in requests:
            taken.append(request)
            yield request

    call: InProcessStream[Any, Any] = InProcessStream(slow, lambda data: data)
    for n in range(STREAM_WINDOW):
        await asyncio.wait_for(call.write(n), 5)  # the window takes these at once
    blocked = asyncio.ensure_future(call.write(STREAM_WINDOW))
    for _ in range(10):
        await asyncio.sleep(0)  # the writer gets turns of the loop, and stays held
    assert not blocked.done()
    release.set()
    await asyncio.wait_for(blocked, 5)  # the handler took one: room for it
    answers = aiter(call)
    assert [await anext(answers) for _ in range(STREAM_WINDOW + 1)] == list(
        range(STREAM_WINDOW + 1)
    )
    call.cancel()
    with pytest.raises(grpc.aio.AioRpcError):
        await read_to_the_end(answers)


async def test_a_writer_held_back_is_released_when_the_call_ends() -> None:
    async def deaf(requests: AsyncIterable[Any], context: Any) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield None

    call: InProcessStream[Any, Any] = InProcessStream(deaf, lambda data: data)
    for n in range(STREAM_WINDOW):
        await call.write(n)
    blocked = asyncio.ensure_future(call.write("one too many"))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(blocked, 5)
    assert caught.value.code() == grpc.StatusCode.CANCELLED


@pytest.mark.parametrize(
    ("request_", "code"),
    [("crash", grpc.StatusCode.UNKNOWN), ("refuse", grpc.StatusCode.INVALID_ARGUMENT)],
)
async def test_a_handler_that_fails_ends_the_stream_with_its_code(
    request_: str, code: grpc.StatusCode
) -> None:
    handler = Streamer()
    call = stream(handler)
    await call.write("a")
    await call.write(request_)
    answers = aiter(call)
    assert await anext(answers) == ("a", 0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await anext(answers)
    assert caught.value.code() == code
    assert handler.closed.is_set()


async def read_to_the_end(answers: AsyncIterator[Any]) -> None:
    async for _ in answers:
        pass


async def test_a_bridge_in_the_engines_process_relays_in_process() -> None:
    from bridge.upstream import Upstream

    class Health:
        async def Check(self, request: Any, context: Any) -> Any:
            return None

    stubs = InProcessStubs.of(object(), object(), Streamer(), Health())
    upstream = Upstream("127.0.0.1:1", local=stubs)
    try:
        assert upstream.relay is stubs.relay
    finally:
        await upstream.close()
