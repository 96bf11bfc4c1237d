"""A database that goes away or hangs, against a real server process on real PostgreSQL.

* Lost: producers are told to retry (gRPC ``UNAVAILABLE``, HTTP 503 ``unavailable``) at
  once, health follows the store both ways within about a second, and the log says so
  once each way instead of a traceback per call.
* Hanging: SIGTERM still ends the process within a few seconds.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tidings.v1 import admin_pb2, admin_pb2_grpc, stream_pb2_grpc

from server.store.migrate import upgrade
from tests.auth_tokens import token
from tests.grpc.conftest import ADMIN, Stream, auth
from tests.harness import TEST_SECRET, ServerProcess
from tests.proxy import TcpProxy
from tests.waiting import until

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

#: "At once": a refused create answers well within this (it never waits for a timeout).
AT_ONCE = 2.0
#: Health follows the store within a second (it is probed every 0.5 s when idle);
#: the margin is for a loaded machine.
HEALTH_WITHIN = 2.0


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


class Database:
    """One test database that can be cut off (existing sessions killed, no new ones)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = urlsplit(url).path.lstrip("/")
        self._admin_dsn = _dsn(urlunsplit(urlsplit(url)._replace(path="/postgres")))

    async def cut(self) -> None:
        admin = await asyncpg.connect(self._admin_dsn)
        try:
            await admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                self.name,
            )
        finally:
            await admin.close()

    async def restore(self) -> None:
        admin = await asyncpg.connect(self._admin_dsn)
        try:
            await admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
        finally:
            await admin.close()


@pytest.fixture
async def database(pg_database_url: str) -> AsyncIterator[Database]:
    await upgrade(pg_database_url)
    db = Database(pg_database_url)
    yield db
    await db.restore()


async def grpc_create(
    channel: grpc.aio.Channel, user: str, timeout: float = AT_ONCE
) -> grpc.StatusCode:
    stub = admin_pb2_grpc.NotificationAdminServiceStub(channel)
    try:
        await stub.CreateNotification(
            admin_pb2.CreateNotificationRequest(user_id=user, type="t", title="x"),
            metadata=auth(ADMIN),
            timeout=timeout,
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def rest_create(http: httpx.AsyncClient, user: str) -> httpx.Response:
    return await http.post(
        "/api/v1/notifications", json={"user_id": user, "type": "t", "title": "x"}
    )


async def grpc_health(channel: grpc.aio.Channel) -> int:
    stub: Any = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=AT_ONCE)
    return reply.status  # type: ignore[no-any-return]


def lines(log: list[str], start: int, pattern: str) -> list[str]:
    return [line for line in log[start:] if re.search(pattern, line)]


async def test_a_lost_database_is_unavailable_at_once_and_health_follows_it(
    database: Database,
) -> None:
    server = await ServerProcess(
        "--jwt-secret", TEST_SECRET, "--no-migrate", database_url=database.url
    ).start()
    try:
        async with (
            grpc.aio.insecure_channel(server.grpc_addr) as channel,
            httpx.AsyncClient(
                base_url=server.http_url,
                headers={"authorization": f"Bearer {ADMIN}"},
                timeout=AT_ONCE + 8,
            ) as http,
        ):
            assert await grpc_create(channel, "u") == grpc.StatusCode.OK
            assert await grpc_health(channel) == SERVING
            outage_starts = len(server.log)

            await database.cut()
            # Nobody calls: the probe notices.
            await until(lambda: _is(grpc_health(channel), NOT_SERVING), within=HEALTH_WITHIN)

            for _ in range(20):
                assert await grpc_create(channel, "u") == grpc.StatusCode.UNAVAILABLE
                response = await rest_create(http, "u")
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "unavailable"
            assert await grpc_health(channel) == NOT_SERVING
            assert (await http.get("/healthz")).status_code == 503
            # While it stays down, the probes keep failing: none of them may add a line.
            await asyncio.sleep(2)

            await database.restore()
            restored = asyncio.get_running_loop().time()
            await until(lambda: _is(grpc_health(channel), SERVING), within=HEALTH_WITHIN)
            back_after = asyncio.get_running_loop().time() - restored
            assert (await http.get("/healthz")).status_code == 200
            assert await grpc_create(channel, "u") == grpc.StatusCode.OK
            assert (await rest_create(http, "u")).status_code == 201
    finally:
        assert await server.stop() == 0, server.output

    outage = server.log[outage_starts:]
    assert lines(server.log, outage_starts, "Traceback") == [], "\n".join(outage)
    assert lines(server.log, outage_starts, r" ERROR ") == [], "\n".join(outage)
    assert len(lines(server.log, outage_starts, r" WARNING ")) == 1, "\n".join(outage)
    assert len(lines(server.log, outage_starts, "store unavailable")) == 1, "\n".join(outage)
    assert len(lines(server.log, outage_starts, "store available again")) == 1, "\n".join(outage)
    print(f"health SERVING again {back_after:.2f} s after the database came back")


async def _is(status: Awaitable[int], wanted: int) -> bool:
    try:
        return await status == wanted
    except grpc.aio.AioRpcError:
        return False


async def _holding(proxy: TcpProxy, n: int) -> bool:
    return proxy.holding >= n


@pytest.mark.parametrize("role", ["grpc", "all"])
async def test_sigterm_while_the_database_hangs_exits_within_seconds(
    database: Database, role: str
) -> None:
    target = urlsplit(database.url)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        proxied = urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}"))
        server = await ServerProcess(
            "--jwt-secret", TEST_SECRET, "--no-migrate", database_url=proxied, role=role
        ).start()
        try:
            async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
                stream = Stream(
                    stream_pb2_grpc.NotificationStreamStub(channel).Connect(
                        metadata=auth(token("live"))
                    )
                )
                await stream.hello()
                for _ in range(3):
                    assert await grpc_create(channel, "live") == grpc.StatusCode.OK
                assert len(await stream.notifications(3)) == 3

                proxy.freeze()
                # A create and a connect the database will never answer: their store
                # calls are in flight when the signal comes.
                hanging = [
                    asyncio.create_task(grpc_create(channel, "live", timeout=30)),
                    asyncio.create_task(
                        Stream(
                            stream_pb2_grpc.NotificationStreamStub(channel).Connect(
                                metadata=auth(token("late"))
                            )
                        ).status(timeout=30)
                    ),
                ]
                await until(lambda: _holding(proxy, 2), within=5)
                stopping = asyncio.get_running_loop().time()
                code = await server.stop(signal.SIGTERM, timeout=30)
                took = asyncio.get_running_loop().time() - stopping
                stream.cancel()
                outcomes = await asyncio.gather(*hanging)
        finally:
            await server.kill()
    assert code == 0, server.output
    # The shutdown's own budget is SHUTDOWN_TIMEOUT (4 s) from the signal; the rest is the
    # process's teardown, which a loaded machine stretches (6.0 s was seen at a load of 10).
    assert took < 8, f"exit took {took:.1f} s\n{server.output}"
    assert outcomes == [grpc.StatusCode.UNAVAILABLE] * 2, outcomes
    print(f"exited {took:.2f} s after SIGTERM")
