"""A closed connection is freed at once, by reference counting: none leaves a reference
cycle that waits for the interpreter's full collection (docs/RELIABILITY.md §5).

Under churn those collections run minutes apart (the young-generation threshold is
large, ``tidingsd.runtime.settle_memory``) and take long on a big heap: every cycle a
closed WebSocket or ``Connect`` call left was resident memory until then.

The node runs in this process (engine, gRPC server and bridge, as ``tidings serve``
wires them), so its objects can be watched. The sessions live through a full
collection first, as on a server where they lived for minutes; then, with the
collector disabled, the clients leave and every watched object must go.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
import websockets
from hypercorn.asyncio.tcp_server import TCPServer
from tidings.v1 import admin_pb2, admin_pb2_grpc, stream_pb2, stream_pb2_grpc

from bridge.runner import run_bridge
from server.auth import Authenticator
from server.config import Settings
from server.engine import Engine, Session
from server.rpc.server import GrpcServer
from server.store import open_store
from server.store.migrate import upgrade
from tests.waiting import until
from tidingsd.runtime import engine_config

OPS = (("x-tidings-user", "ops"),)
#: Sessions per transport.
SESSIONS = 20


@dataclass
class Node:
    ws_url: str
    channel: grpc.aio.Channel
    engine: Engine


class Announced(logging.Handler):
    """Catches the bridge's ``http listening on HOST:PORT``."""

    def __init__(self) -> None:
        super().__init__()
        self.addr: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("http listening on ") and not self.addr.done():
            self.addr.set_result(message.rsplit(" ", 1)[1])


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    """``tidings serve --insecure`` in this process, on a fresh SQLite file."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}"
    await upgrade(url)
    settings = Settings(insecure=True, http_addr="127.0.0.1:0", database_url=url)
    engine = Engine(open_store(url), engine_config(settings))
    await engine.start()
    grpc_server = GrpcServer(engine, Authenticator(insecure=True))
    upstream = f"127.0.0.1:{await grpc_server.start('127.0.0.1:0')}"
    announced = Announced()
    logger = logging.getLogger("tidings")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(announced)
    stop = asyncio.Event()
    bridge = asyncio.create_task(run_bridge(settings, upstream, stop, grpc_server.in_process()))
    channel = grpc.aio.insecure_channel(upstream)
    try:
        async with asyncio.timeout(20):
            await asyncio.wait((announced.addr, bridge), return_when=asyncio.FIRST_COMPLETED)
        addr = announced.addr.result()
        yield Node(f"ws://{addr}/api/v1/ws/notifications", channel, engine)
    finally:
        logger.removeHandler(announced)
        logger.setLevel(level)
        await channel.close()
        stop.set()
        async with asyncio.timeout(20):
            await bridge
        await grpc_server.stop(0)
        await engine.stop()


def _queues_and_events() -> Counter[str]:
    """How many ``asyncio.Queue`` and ``asyncio.Event`` are alive, by class name."""
    gc.collect()
    alive = (o for o in gc.get_objects() if isinstance(o, asyncio.Queue | asyncio.Event))
    return Counter(type(o).__name__ for o in alive)


async def kind(call: Any) -> str | None:
    """The kind of the next message of a ``Connect`` call."""
    message = await call.read()
    assert isinstance(message, stream_pb2.ConnectResponse), message
    return message.WhichOneof("kind")


async def test_closed_sessions_and_connections_are_freed_without_a_full_collection(
    node: Node,
) -> None:
    admin = admin_pb2_grpc.NotificationAdminServiceStub(node.channel)
    stream = stream_pb2_grpc.NotificationStreamStub(node.channel)
    queues_and_events = _queues_and_events()
    browsers = [
        await websockets.connect(f"{node.ws_url}?user_id=mem-b{i}", compression=None)
        for i in range(SESSIONS)
    ]
    for ws in browsers:
        assert orjson.loads(await ws.recv())["type"] == "connection_established"
    # An idle browser socket holds no asyncio.Queue (four deques from the start) and no
    # asyncio.Event (one): 7.6 KiB of each socket when hypercorn and Quart made theirs.
    grown = _queues_and_events() - queues_and_events
    assert grown["Queue"] < SESSIONS and grown["Event"] < SESSIONS, dict(grown)
    calls = [stream.Connect(metadata=[("x-tidings-user", f"mem-g{i}")]) for i in range(SESSIONS)]
    for call in calls:
        assert await kind(call) == "connection_established"
    # Each session delivers something, as they do under traffic.
    for i in range(SESSIONS):
        for user in (f"mem-b{i}", f"mem-g{i}"):
            request = admin_pb2.CreateNotificationRequest(user_id=user, type="a", title="t")
            await admin.CreateNotification(request, metadata=OPS)
    for ws in browsers:
        assert orjson.loads(await ws.recv())["type"] == "notification"
    for call in calls:
        assert await kind(call) == "notification"

    gc.collect()  # what is alive now is old: only a full collection would look at it again
    watched = [weakref.ref(o) for o in gc.get_objects() if isinstance(o, Session | TCPServer)]
    kinds = [type(ref()).__name__ for ref in watched]
    assert kinds.count("Session") == 2 * SESSIONS
    assert len(kinds) - kinds.count("Session") >= SESSIONS  # one TCPServer per socket
    del kinds

    gc.disable()
    try:
        for ws in browsers:
            await ws.close()
        for call in calls:
            call.cancel()

        async def all_freed() -> bool:
            return all(ref() is None for ref in watched)

        try:
            await until(all_freed, within=10)
        except TimeoutError:
            left = Counter(type(ref()).__name__ for ref in watched if ref() is not None)
            pytest.fail(f"still alive without a full collection: {dict(left)}")
    finally:
        gc.enable()
    assert node.engine.node_stats().total_connections == 0
