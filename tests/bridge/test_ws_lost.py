"""A connection that breaks under the relay (the kernel's TCP_USER_TIMEOUT giving up on a
stalled browser, a reset) is an everyday event: one info line, no traceback."""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any, cast

import grpc
import pytest
from prometheus_client import CollectorRegistry
from tidings.v1 import stream_pb2

from bridge import ws
from bridge.jsonwire import FrameCache
from bridge.metrics import BridgeMetrics
from bridge.upstream import StreamEnded


class StalledSocket:
    """A WebSocket whose writes fail the way a socket the kernel timed out does."""

    async def send(self, data: str) -> None:
        raise TimeoutError(errno.ETIMEDOUT, "Connection timed out")

    async def receive(self) -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class OneMessageLink:
    """A session link with one message waiting."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.ending: asyncio.Future[StreamEnded] = loop.create_future()
        self.established: asyncio.Future[None] = loop.create_future()
        self.established.set_result(None)
        self.ended: StreamEnded | None = None
        self._messages = [stream_pb2.ConnectResponse(pong=stream_pb2.PongEvent())]

    async def receive(self) -> stream_pb2.ConnectResponse | None:
        if self._messages:
            return self._messages.pop()
        await asyncio.Event().wait()
        raise StreamEnded(grpc.StatusCode.CANCELLED, "")

    async def send(self, request: stream_pb2.ConnectRequest) -> bool:
        return True

    def reject(self, code: str, message: str) -> None:
        pass

    def close(self) -> None:
        pass


class State:
    def __init__(self) -> None:
        self.frames = FrameCache()
        self.metrics = BridgeMetrics(CollectorRegistry())
        self.max_message_bytes = 65536
        self.draining: asyncio.Future[None] = asyncio.get_running_loop().create_future()


async def test_a_connection_lost_under_the_relay_is_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tidings.bridge")
    async with asyncio.timeout(5):
        ending = await ws._relay(
            cast(Any, StalledSocket()), cast(Any, OneMessageLink()), cast(Any, State())
        )
    assert ending is ws.LOST
    records = [r for r in caplog.records if r.name == "tidings.bridge"]
    assert [r.levelno for r in records] == [logging.INFO], records
    assert records[0].exc_info is None
    assert "connection lost" in records[0].getMessage()
