"""In-process unary calls end the way network gRPC calls do."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from tidings.v1 import admin_pb2

from server.engine.errors import InvalidArgument
from server.rpc.errors import ERROR_CODE_KEY, ERROR_FIELD_KEY, abort
from server.rpc.inprocess import PEER, InProcessUnary


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
