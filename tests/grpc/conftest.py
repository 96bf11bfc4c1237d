"""A real grpc.aio server on an ephemeral port, in this process, on a fresh database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from tidings.v1 import admin_pb2, admin_pb2_grpc, notification_pb2, stream_pb2, stream_pb2_grpc

from server.auth import Authenticator
from server.engine import Engine, EngineConfig, SessionLimits
from server.rpc.server import GrpcServer
from server.store import open_store
from server.store.migrate import upgrade
from tests.auth_tokens import token
from tests.harness import TEST_SECRET

ADMIN = token("ops", admin=True)


def auth(tok: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {tok}"),)


class Stream:
    """One ``Connect`` call, read with timeouts."""

    def __init__(self, call: Any) -> None:
        self.call = call

    async def recv(
        self, timeout: float = 5.0, *, heartbeats: bool = False
    ) -> stream_pb2.ConnectResponse:
        """The next message; heartbeats, which may come at any moment, are skipped
        unless ``heartbeats`` is true."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.call.read()
                assert msg is not grpc.aio.EOF, "stream ended"
                if heartbeats or msg.WhichOneof("kind") != "heartbeat":
                    return msg  # type: ignore[no-any-return]

    async def recv_kind(self, kind: str, timeout: float = 5.0) -> Any:
        """The next message, which must be of ``kind``; returns that oneof's value.

        Heartbeats in between are skipped unless ``kind`` is ``"heartbeat"``."""
        msg = await self.recv(timeout, heartbeats=kind == "heartbeat")
        assert msg.WhichOneof("kind") == kind, msg
        return getattr(msg, kind)

    async def hello(self) -> stream_pb2.ConnectionEstablished:
        return await self.recv_kind("connection_established")  # type: ignore[no-any-return]

    async def notifications(self, n: int) -> list[int]:
        ids = []
        for _ in range(n):
            ids.append((await self.recv_kind("notification")).notification.id)
        return ids

    async def send(self, **kind: Any) -> None:
        await self.call.write(stream_pb2.ConnectRequest(**kind))

    async def status(self, timeout: float = 5.0) -> grpc.StatusCode:
        """Read until the stream ends; its status code."""
        async with asyncio.timeout(timeout):
            try:
                while await self.call.read() is not grpc.aio.EOF:
                    pass
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return await self.call.code()  # type: ignore[no-any-return]

    def cancel(self) -> None:
        self.call.cancel()


@dataclass
class Node:
    """An engine behind a real gRPC server, and a channel to it."""

    engine: Engine
    server: GrpcServer
    channel: grpc.aio.Channel
    streams: list[Stream] = field(default_factory=list)

    @property
    def users(self) -> stream_pb2_grpc.NotificationStreamAsyncStub:
        return stream_pb2_grpc.NotificationStreamStub(self.channel)

    @property
    def admin(self) -> admin_pb2_grpc.NotificationAdminServiceAsyncStub:
        return admin_pb2_grpc.NotificationAdminServiceStub(self.channel)

    async def connect(
        self, user: str, *, since: int | None = None, types: str | None = None, tok: str = ""
    ) -> Stream:
        md = [("authorization", f"Bearer {tok or token(user)}")]
        if since is not None:
            md.append(("tidings-since", str(since)))
        if types is not None:
            md.append(("tidings-types", types))
        stream = Stream(self.users.Connect(metadata=md))
        self.streams.append(stream)
        return stream

    async def create(self, user: str, **fields: Any) -> notification_pb2.Notification:
        fields.setdefault("type", "t")
        fields.setdefault("title", "hello")
        reply = await self.admin.CreateNotification(
            admin_pb2.CreateNotificationRequest(user_id=user, **fields), metadata=auth(ADMIN)
        )
        return reply.notification


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node(database_url: str) -> AsyncIterator[NodeFactory]:
    """Start nodes on the test's database: ``await make_node(heartbeat_interval=…)``."""
    nodes: list[Node] = []
    await upgrade(database_url)

    async def make(
        *, heartbeat_interval: float = 30.0, max_offline_queue: int = 100, **limits: Any
    ) -> Node:
        config = EngineConfig(
            max_offline_queue=max_offline_queue,
            session=SessionLimits(heartbeat_interval=heartbeat_interval, **limits),
        )
        engine = Engine(open_store(database_url), config)
        await engine.start()
        server = GrpcServer(engine, Authenticator(secret=TEST_SECRET, insecure=False))
        port = await server.start("127.0.0.1:0")
        node = Node(engine, server, grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        for stream in node.streams:
            stream.cancel()
        await node.channel.close()
        engine_running = node.engine.running
        await node.server.stop(0)
        if engine_running:
            await node.engine.stop()


@pytest.fixture
async def node(make_node: NodeFactory) -> Node:
    return await make_node()
