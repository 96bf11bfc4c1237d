"""A server process restarted or killed with SIGKILL loses no committed notification."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import grpc
import pytest
from tidings.v1 import admin_pb2, admin_pb2_grpc, stream_pb2_grpc

from tests.auth_tokens import token
from tests.grpc.conftest import ADMIN, Stream, auth
from tests.harness import TEST_SECRET, ServerProcess

pytestmark = pytest.mark.timeout(90)


def grpc_server(database_url: str, *args: str) -> ServerProcess:
    return ServerProcess("--jwt-secret", TEST_SECRET, *args, database_url=database_url, role="grpc")


async def create_many(addr: str, user: str, n: int) -> list[int]:
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = admin_pb2_grpc.NotificationAdminServiceStub(channel)
        replies = [
            await stub.CreateNotification(
                admin_pb2.CreateNotificationRequest(user_id=user, type="t", title=str(i)),
                metadata=auth(ADMIN),
            )
            for i in range(n)
        ]
    return [r.notification.id for r in replies]


async def receive(addr: str, user: str, *, since: int | None = None) -> list[int]:
    """Connect, and collect the replayed backlog."""
    md = [("authorization", f"Bearer {token(user)}")]
    if since is not None:
        md.append(("tidings-since", str(since)))
    async with grpc.aio.insecure_channel(addr) as channel:
        stream = Stream(stream_pb2_grpc.NotificationStreamStub(channel).Connect(metadata=md))
        hello = await stream.hello()
        ids = await stream.notifications(hello.queued)
        stream.cancel()
    return ids


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_queued_notifications_survive_a_restart(database_url: str, stop: str) -> None:
    first = await grpc_server(database_url).start()
    try:
        acknowledged = await create_many(first.grpc_addr, "durable", 30)
    finally:
        if stop == "sigterm":
            assert await first.stop(signal.SIGTERM) == 0, first.output
        else:
            await first.kill()
    async with grpc_server(database_url) as second:
        assert await receive(second.grpc_addr, "durable") == acknowledged


async def test_sigkill_mid_stream_then_resume_with_since(database_url: str) -> None:
    server = await grpc_server(database_url).start()
    acknowledged = await create_many(server.grpc_addr, "mid", 10)
    got = (await receive(server.grpc_addr, "mid"))[:4]  # the client processed four
    more = await create_many(server.grpc_addr, "mid", 5)
    await server.kill()
    async with grpc_server(database_url) as again:
        resumed = await receive(again.grpc_addr, "mid", since=got[-1])
    assert got + resumed == acknowledged + more


async def test_sigterm_closes_streams_with_unavailable_and_exits_zero(database_url: str) -> None:
    server = await grpc_server(database_url).start()
    async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
        call = stream_pb2_grpc.NotificationStreamStub(channel).Connect(metadata=auth(token("bye")))
        stream = Stream(call)
        await stream.hello()
        loop = asyncio.get_running_loop()
        started = loop.time()
        server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert await stream.status() == grpc.StatusCode.UNAVAILABLE
    assert await server.stop() == 0
    assert loop.time() - started < 5
    assert "shutting down" in server.output


def test_serve_refuses_to_start_without_a_key_or_insecure(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tidingsd.cli", "serve", "--role", "grpc"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode != 0
    assert "--jwt-secret" in result.stderr
    assert "--insecure" in result.stderr


async def test_insecure_mode_warns_and_uses_the_user_header(database_url: str) -> None:
    async with ServerProcess("--insecure", database_url=database_url, role="grpc") as server:
        assert "INSECURE MODE" in server.output
        async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
            md = (("x-tidings-user", "7"),)
            stream = Stream(stream_pb2_grpc.NotificationStreamStub(channel).Connect(metadata=md))
            assert (await stream.hello()).user_id == "7"
            stream.cancel()
            default = Stream(stream_pb2_grpc.NotificationStreamStub(channel).Connect())
            assert (await default.hello()).user_id == "1"
            default.cancel()
