"""The Python Publisher against a real server: idempotent create under retry, bounded retries."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import grpc
import jwt
import pytest
from tidings.client import (
    Backoff,
    InvalidArgumentError,
    NewNotification,
    PermissionDeniedError,
    Publisher,
    UnavailableError,
)
from tidings.v1 import stream_pb2, stream_pb2_grpc

from tests.harness import TEST_SECRET, ServerProcess

FAST = Backoff(base=0.01, cap=0.05)


class LoseFirstResponse(grpc.aio.UnaryUnaryClientInterceptor):
    """Lets the first call reach the server and complete, then reports UNAVAILABLE, as if
    the connection broke while the answer was on its way back."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        self.requests.append(request)
        call = await continuation(client_call_details, request)
        if len(self.requests) == 1:
            await call  # the server has committed the notification
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="the answer was lost",
            )
        return call


class CountAttempts(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self) -> None:
        self.count = 0

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        self.count += 1
        return await continuation(client_call_details, request)


async def _inbox(address: str, user: str) -> list[int]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = stream_pb2_grpc.NotificationStreamStub(channel)
        page = await stub.ListNotifications(
            stream_pb2.ListNotificationsRequest(), metadata=[("x-tidings-user", user)]
        )
    return [n.id for n in page.notifications]


async def test_a_retried_create_makes_exactly_one_notification(server: ServerProcess) -> None:
    lose = LoseFirstResponse()
    async with (
        asyncio.timeout(20),
        Publisher(server.grpc_addr, interceptors=[lose], backoff=FAST) as publisher,
    ):
        result = await publisher.create("9", "order", "Shipped", data={"order": 12})
    assert len(lose.requests) == 2
    # The retry carried the first attempt's key, so the server returned the first one.
    assert lose.requests[0].idempotency_key == lose.requests[1].idempotency_key != ""
    assert result.created is False
    assert result.notification.data == {"order": 12}
    assert await _inbox(server.grpc_addr, "9") == [result.notification.id]


async def test_each_create_call_gets_its_own_idempotency_key(server: ServerProcess) -> None:
    async with asyncio.timeout(20), Publisher(server.grpc_addr) as publisher:
        first = await publisher.create("9", "t", "same")
        second = await publisher.create("9", "t", "same")
        again = await publisher.create("9", "t", "same", idempotency_key="job-1")
        repeat = await publisher.create("9", "t", "same", idempotency_key="job-1")
    assert first.notification.id != second.notification.id
    assert (again.created, repeat.created) == (True, False)
    assert repeat.notification.id == again.notification.id


async def test_create_many_is_one_batch_in_order_and_safe_to_retry(
    server: ServerProcess,
) -> None:
    lose = LoseFirstResponse()
    items = [
        NewNotification("7", "order", "Paid", data={"order": 1}, priority="high"),
        NewNotification(8, "order", "Shipped"),
        NewNotification("7", "order", "Again", idempotency_key="mine"),
    ]
    async with (
        asyncio.timeout(20),
        Publisher(server.grpc_addr, interceptors=[lose], backoff=FAST) as publisher,
    ):
        results = await publisher.create_many(items)
        with pytest.raises(InvalidArgumentError) as err:
            await publisher.create_many([items[0], NewNotification("7", "order", "")])
    # The retry carried the first attempt's keys: the server returned what it had made.
    first, retry = lose.requests[0].notifications, lose.requests[1].notifications
    assert [i.idempotency_key for i in first] == [i.idempotency_key for i in retry]
    assert first[2].idempotency_key == "mine" and first[0].idempotency_key
    assert [r.created for r in results] == [False, False, False]
    assert [r.notification.title for r in results] == ["Paid", "Shipped", "Again"]
    assert results[0].notification.data == {"order": 1}
    assert results[0].notification.priority == "high"
    assert results[1].notification.user_id == "8"
    ids = [r.notification.id for r in results]
    assert ids == sorted(ids)
    assert err.value.field == "notifications[1].title"
    assert sorted(await _inbox(server.grpc_addr, "7")) == [ids[0], ids[2]]


async def test_unavailable_is_retried_a_bounded_number_of_times() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"
    counter = CountAttempts()
    async with (
        asyncio.timeout(20),
        Publisher(target, retries=2, backoff=FAST, interceptors=[counter]) as publisher,
    ):
        with pytest.raises(UnavailableError):
            await publisher.create("1", "t", "nobody listens")
        assert counter.count == 3
        counter.count = 0
        with pytest.raises(UnavailableError):
            await publisher.broadcast("t", "never retried", all_users=True)
        assert counter.count == 1


async def test_other_errors_are_not_retried_and_name_the_field(server: ServerProcess) -> None:
    counter = CountAttempts()
    async with (
        asyncio.timeout(20),
        Publisher(server.grpc_addr, interceptors=[counter], backoff=FAST) as publisher,
    ):
        with pytest.raises(InvalidArgumentError) as err:
            await publisher.create("1", "t", "")
    assert counter.count == 1
    assert err.value.field == "title"


async def test_admin_calls_need_the_admin_role(database_url: str) -> None:
    def token(**claims: Any) -> str:
        return jwt.encode({"sub": "bob", "exp": int(time.time()) + 600, **claims}, TEST_SECRET)

    async with (
        asyncio.timeout(20),
        ServerProcess("--jwt-secret", TEST_SECRET, role="grpc", database_url=database_url) as srv,
    ):
        async with Publisher(srv.grpc_addr, token=token()) as user:
            with pytest.raises(PermissionDeniedError):
                await user.create("bob", "t", "self-service")
            assert (await user.status()).user_id == "bob"
        async with Publisher(srv.grpc_addr, token=token(roles=["admin"])) as admin:
            assert (await admin.create("bob", "t", "from an admin")).created
            assert await admin.broadcast("t", "everyone", all_users=True) == 1
            stats = await admin.stats()
            assert stats.node_id and stats.nodes[0].node_id == stats.node_id
