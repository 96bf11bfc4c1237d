"""Bytes that are not a valid message: INVALID_ARGUMENT, no ghost session, no traceback."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from tidings.v1 import admin_pb2, stream_pb2

from tests.auth_tokens import token
from tests.grpc.conftest import ADMIN, Node, Stream, auth
from tests.waiting import until

#: Field 1, length-delimited, with a length varint that never ends.
GARBAGE = b"\x0a\xff\xff\xff"

STREAM = "/tidings.v1.NotificationStream/"
ADMIN_SERVICE = "/tidings.v1.NotificationAdminService/"
UNARY = [
    (STREAM + "ListNotifications", stream_pb2.ListNotificationsResponse),
    (STREAM + "MarkRead", stream_pb2.MarkReadResponse),
    (STREAM + "GetUnreadCount", stream_pb2.GetUnreadCountResponse),
    (ADMIN_SERVICE + "CreateNotification", admin_pb2.CreateNotificationResponse),
    (ADMIN_SERVICE + "BroadcastNotification", admin_pb2.BroadcastNotificationResponse),
    (ADMIN_SERVICE + "GetStats", admin_pb2.GetStatsResponse),
    (ADMIN_SERVICE + "GetConnectionStatus", admin_pb2.GetConnectionStatusResponse),
    (ADMIN_SERVICE + "DisconnectUser", admin_pb2.DisconnectUserResponse),
]


def raw(data: bytes) -> bytes:
    return data


async def connected(node: Node, user: str) -> bool:
    reply = await node.admin.GetConnectionStatus(
        admin_pb2.GetConnectionStatusRequest(user_id=user), metadata=auth(ADMIN), timeout=5
    )
    return reply.connected


async def test_an_undecodable_connect_message_ends_the_stream_and_the_session(node: Node) -> None:
    connect = node.channel.stream_stream(
        STREAM + "Connect",
        request_serializer=raw,
        response_deserializer=stream_pb2.ConnectResponse.FromString,
    )
    stream = Stream(connect(metadata=auth(token("ghost"))))
    node.streams.append(stream)
    await stream.hello()

    await stream.call.write(GARBAGE)

    assert await stream.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ConnectRequest" in await stream.call.details()
    await until(lambda: _not(connected(node, "ghost")))
    stats = await node.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=auth(ADMIN))
    assert stats.total_connections == 0

    created = [(await node.create("ghost", title=str(i))).id for i in range(3)]
    again = await node.connect("ghost")
    hello = await again.hello()
    assert hello.queued == 3
    assert await again.notifications(3) == created


async def _not(check: Any) -> bool:
    return not await check


@pytest.mark.parametrize(("method", "reply"), UNARY, ids=[m.rsplit("/", 1)[1] for m, _ in UNARY])
@pytest.mark.parametrize("credentials", ["none", "admin"])
async def test_an_undecodable_unary_request_is_an_invalid_argument(
    node: Node,
    method: str,
    reply: Any,
    credentials: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    call = node.channel.unary_unary(
        method, request_serializer=raw, response_deserializer=reply.FromString
    )
    metadata = auth(ADMIN) if credentials == "admin" else ()

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call(GARBAGE, metadata=metadata, timeout=5)

    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failed.value.details()
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == []
    assert len([r for r in caplog.records if "decod" in r.getMessage()]) <= 1
