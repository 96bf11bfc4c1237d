"""Reference: the least a grpc.aio server can do per ``CreateNotification``.

    python -m bench.refs.grpc_create_raw --port 0

Serves ``tidings.v1.NotificationAdminService/CreateNotification`` with the generated
protobuf messages on the stock asyncio loop: it parses the request and answers a
``Notification`` with a counter for id and the current time, storing nothing. What a
Tidings create costs beyond this is the engine, the store and the checks.
"""

from __future__ import annotations

import itertools
from typing import Any

import grpc
from tidings.v1 import admin_pb2, notification_pb2

from bench.refs._common import parse_args, ready, run

IDS = itertools.count(1)


async def create(
    request: admin_pb2.CreateNotificationRequest, context: grpc.aio.ServicerContext[Any, Any]
) -> admin_pb2.CreateNotificationResponse:
    """A notification with the next id and the current time; nothing stored."""
    notification = notification_pb2.Notification(
        id=next(IDS),
        user_id=request.user_id,
        type=request.type,
        title=request.title,
        message=request.message,
    )
    notification.created_at.GetCurrentTime()
    return admin_pb2.CreateNotificationResponse(notification=notification, created=True)


async def main(host: str, port: int) -> None:
    """Serve until killed."""
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        create,
        request_deserializer=admin_pb2.CreateNotificationRequest.FromString,
        response_serializer=admin_pb2.CreateNotificationResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "tidings.v1.NotificationAdminService", {"CreateNotification": handler}
            )
        ]
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    ready(host, bound)
    await server.wait_for_termination()


if __name__ == "__main__":
    args = parse_args(__doc__.split("\n\n")[0], default_loop="asyncio")
    run(main(args.host, args.port), args.loop)
