"""The gRPC server of a node: both services, health checking and reflection."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tidings.v1 import admin_pb2, relay_pb2, stream_pb2

from server.auth import Authenticator
from server.engine import Engine
from server.rpc.admin import AdminServicer
from server.rpc.errors import Undecodable, abort, decoder
from server.rpc.inprocess import InProcessStubs
from server.rpc.relay import RelayServicer
from server.rpc.stream import StreamServicer
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

STREAM_SERVICE = stream_pb2.DESCRIPTOR.services_by_name["NotificationStream"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["NotificationAdminService"].full_name
RELAY_SERVICE = relay_pb2.DESCRIPTOR.services_by_name["SessionRelayService"].full_name

#: Keepalive and flow-control settings; the server tolerates client pings every 10 s.
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 1 << 20),
    ("grpc.so_reuseport", 0),
]


def _serialize(message: Any) -> bytes:
    """Responses may be pre-serialized bytes (shared by a fan-out) or messages."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def method_handlers(
    stream: StreamServicer, admin: AdminServicer, relay: RelayServicer
) -> dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]]:
    """Every rpc of the three services, by service and method name.

    Not the generated ``add_*Servicer_to_server``: those serialize responses with
    ``SerializeToString`` and decode requests with ``FromString``, while here a fan-out
    answers with bytes serialized once for every session (``_serialize``), and a request
    that does not decode is answered ``INVALID_ARGUMENT`` with the trailer of
    docs/PROTOCOL.md §7.4 (``server.rpc.errors.decoder``), not grpc's internal error. A
    test holds this table to the services' descriptors.
    """

    def unary(fn: Any, request: Any) -> grpc.RpcMethodHandler[Any, Any]:
        async def checked(message: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if isinstance(message, Undecodable):
                await abort(context, message.error())
            return await fn(message, context)

        return grpc.unary_unary_rpc_method_handler(
            checked, request_deserializer=decoder(request), response_serializer=_serialize
        )

    stream_methods = {
        "Connect": grpc.stream_stream_rpc_method_handler(
            stream.Connect,
            request_deserializer=decoder(stream_pb2.ConnectRequest),
            response_serializer=None,  # the servicer yields bytes (one call less per message)
        ),
        "ListNotifications": unary(stream.ListNotifications, stream_pb2.ListNotificationsRequest),
        "MarkRead": unary(stream.MarkRead, stream_pb2.MarkReadRequest),
        "GetUnreadCount": unary(stream.GetUnreadCount, stream_pb2.GetUnreadCountRequest),
        "WhoAmI": unary(stream.WhoAmI, stream_pb2.WhoAmIRequest),
        "MarkSeen": unary(stream.MarkSeen, stream_pb2.MarkSeenRequest),
        "MarkAllRead": unary(stream.MarkAllRead, stream_pb2.MarkAllReadRequest),
        "ArchiveNotification": unary(
            stream.ArchiveNotification, stream_pb2.ArchiveNotificationRequest
        ),
        "UnarchiveNotification": unary(
            stream.UnarchiveNotification, stream_pb2.UnarchiveNotificationRequest
        ),
        "DeleteNotification": unary(
            stream.DeleteNotification, stream_pb2.DeleteNotificationRequest
        ),
        "GetCounts": unary(stream.GetCounts, stream_pb2.GetCountsRequest),
        "GetPreferences": unary(stream.GetPreferences, stream_pb2.GetPreferencesRequest),
        "UpdatePreferences": unary(stream.UpdatePreferences, stream_pb2.UpdatePreferencesRequest),
    }
    admin_methods = {
        "CreateNotification": unary(admin.CreateNotification, admin_pb2.CreateNotificationRequest),
        "BroadcastNotification": unary(
            admin.BroadcastNotification, admin_pb2.BroadcastNotificationRequest
        ),
        "GetStats": unary(admin.GetStats, admin_pb2.GetStatsRequest),
        "GetConnectionStatus": unary(
            admin.GetConnectionStatus, admin_pb2.GetConnectionStatusRequest
        ),
        "DisconnectUser": unary(admin.DisconnectUser, admin_pb2.DisconnectUserRequest),
        "CreateNotifications": unary(
            admin.CreateNotifications, admin_pb2.CreateNotificationsRequest
        ),
    }
    relay_methods = {
        "Relay": grpc.stream_stream_rpc_method_handler(
            relay.Relay,
            request_deserializer=relay_pb2.RelayRequest.FromString,
            response_serializer=_serialize,
        ),
    }
    return {
        STREAM_SERVICE: stream_methods,
        ADMIN_SERVICE: admin_methods,
        RELAY_SERVICE: relay_methods,
    }


class GrpcServer:
    """A started grpc.aio server around one engine."""

    def __init__(self, engine: Engine, authenticator: Authenticator) -> None:
        self._engine = engine
        self._monitor: asyncio.Task[None] | None = None
        self._server = grpc.aio.server(options=SERVER_OPTIONS)
        self._health = health.aio.HealthServicer()
        self._stream = StreamServicer(engine, authenticator)
        self._admin = AdminServicer(engine, authenticator)
        self._relay = RelayServicer(engine, authenticator)
        self._server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(service, methods)
                for service, methods in method_handlers(
                    self._stream, self._admin, self._relay
                ).items()
            ]
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (
                STREAM_SERVICE,
                ADMIN_SERVICE,
                RELAY_SERVICE,
                health.SERVICE_NAME,
                reflection.SERVICE_NAME,
            ),
            self._server,
        )
        self.port = 0

    def in_process(self) -> InProcessStubs:
        """Stubs that call this server's handlers in-process (for a bridge in the same
        process): same messages and errors, no socket, no serialization."""
        return InProcessStubs.of(self._stream, self._admin, self._relay, self._health)

    async def start(self, addr: str) -> int:
        """Bind ``addr`` (port 0 picks a free one) and serve; returns the bound port."""
        self.port = self._server.add_insecure_port(addr)
        if self.port == 0:
            raise OSError(f"could not bind gRPC address {addr}")
        await self._server.start()
        await self._set_health(serving=True)
        self._monitor = asyncio.create_task(self._watch_health(), name="tidings-health")
        return self.port

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, then stop, letting calls finish for ``grace`` seconds."""
        await cancel_and_wait(self._monitor)
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)

    async def _set_health(self, *, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", STREAM_SERVICE, ADMIN_SERVICE, RELAY_SERVICE):
            await self._health.set(service, status)

    async def _watch_health(self) -> None:
        """Report NOT_SERVING while the store is unavailable (the engine probes it)."""
        serving = True
        while True:
            ok = self._engine.healthy
            if ok != serving:
                serving = ok
                await self._set_health(serving=ok)
                log.debug("health: %s", "SERVING" if ok else "NOT_SERVING")
            await self._engine.health_changed()
