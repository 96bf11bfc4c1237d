"""The engine as the bridge sees it: one gRPC channel, its stubs, and session links.

A browser WebSocket talks to the engine through a ``SessionLink``, the narrow
interface the WebSocket handler depends on. ``Upstream.open_session`` hands out one
``Connect`` stream per link today; a multiplexing implementation (many browser
sessions over few streams) can replace ``GrpcSessionLink`` without touching the
handler.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Protocol

import grpc
from grpc_health.v1 import health_pb2
from tidings.v1 import admin_pb2_grpc, stream_pb2, stream_pb2_grpc

from bridge.metadata import Metadata

ERROR_CODE_KEY: Final = "tidings-error-code"
ERROR_FIELD_KEY: Final = "tidings-error-field"

#: Unary calls that take longer than this fail with DEADLINE_EXCEEDED (HTTP 503).
CALL_TIMEOUT: Final = 10.0
HEALTH_TIMEOUT: Final = 2.0

#: The engine tolerates pings every 10 s; keepalive notices a dead engine within ~40 s.
CHANNEL_OPTIONS: Final[list[tuple[str, Any]]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.enable_retries", 0),
]


class StreamEnded(Exception):
    """The engine ended a session with a non-OK status.

    ``established`` says whether ``connection_established`` had arrived: a stream that
    fails before it never reached a session (engine unreachable, credentials refused).
    """

    def __init__(
        self,
        status: grpc.StatusCode,
        details: str,
        *,
        error_code: str | None = None,
        established: bool = True,
    ) -> None:
        super().__init__(f"{status.name}: {details}")
        self.status = status
        self.details = details
        self.error_code = error_code
        self.established = established


def trailer(error: grpc.aio.AioRpcError, key: str) -> str | None:
    """One value of the call's trailing metadata, or None."""
    for k, v in error.trailing_metadata() or ():
        if k == key and isinstance(v, str):
            return v
    return None


class SessionLink(Protocol):
    """One browser session's link to the engine."""

    async def receive(self) -> stream_pb2.ConnectResponse | None:
        """The next server message; None when the engine ended the session with OK.

        Raises ``StreamEnded`` for any other end.
        """
        ...

    async def send(self, request: stream_pb2.ConnectRequest) -> bool:
        """Pass one client command on; False once the session has ended."""
        ...

    def close(self) -> None:
        """Tear the session down (idempotent); the engine sees the client go."""
        ...


class GrpcSessionLink:
    """A ``SessionLink`` that is one ``Connect`` stream of its own."""

    __slots__ = ("_call", "_established")

    def __init__(
        self, call: grpc.aio.StreamStreamCall[stream_pb2.ConnectRequest, stream_pb2.ConnectResponse]
    ) -> None:
        self._call = call
        self._established = False

    async def receive(self) -> stream_pb2.ConnectResponse | None:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise StreamEnded(
                exc.code(),
                exc.details() or "",
                error_code=trailer(exc, ERROR_CODE_KEY),
                established=self._established,
            ) from None
        if message is grpc.aio.EOF:
            return None
        assert isinstance(message, stream_pb2.ConnectResponse)
        self._established = True
        return message

    async def send(self, request: stream_pb2.ConnectRequest) -> bool:
        if self._call.done():
            return False
        try:
            await self._call.write(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return False  # the call finished meanwhile
        return True

    def close(self) -> None:
        self._call.cancel()


class Upstream:
    """The engine's gRPC services over one channel. Create and close inside the loop."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stream = stream_pb2_grpc.NotificationStreamStub(self.channel)
        self.admin = admin_pb2_grpc.NotificationAdminServiceStub(self.channel)
        self._health_check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

    def open_session(self, metadata: Metadata) -> SessionLink:
        """Start a live session with the caller's metadata; the engine speaks first."""
        return GrpcSessionLink(self.stream.Connect(metadata=metadata))

    async def serving(self) -> bool:
        """Whether the engine's health service reports SERVING for the whole server."""
        try:
            answer = await self._health_check(
                health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_TIMEOUT
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self.channel.close()
