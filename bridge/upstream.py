"""The engine as the bridge sees it: one gRPC channel, its stubs, and session links.

A browser WebSocket talks to the engine through a ``SessionLink``, the narrow
interface the WebSocket handler depends on. The links of a bridge share one
``SessionRelayService.Relay`` stream: each behaves exactly as its own ``Connect``
call would (same credentials, messages and endings), but the engine batches the
events of all sessions into few messages, and an idle browser costs no gRPC stream.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final, Protocol

import grpc
from grpc_health.v1 import health_pb2
from tidings.v1 import admin_pb2_grpc, relay_pb2, relay_pb2_grpc, stream_pb2, stream_pb2_grpc

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


class RelaySessionLink:
    """A ``SessionLink`` carried, with many others, by one ``Relay`` stream.

    Frames wait here until the WebSocket handler takes them. A browser that falls more
    than ``max_buffer`` frames behind ends its session as slow (the engine's own rule
    for the same case); whatever it had not taken goes back to the engine, which
    queues it again.
    """

    __slots__ = (
        "_ended",
        "_established",
        "_frames",
        "_head",
        "_max",
        "_relay",
        "_sid",
        "_waiter",
    )

    def __init__(self, relay: _RelayStream, sid: int, max_buffer: int) -> None:
        self._relay = relay
        self._sid = sid
        self._max = max_buffer
        # A list and a read index rather than a deque: an idle link holds an empty buffer
        # for hours, and a deque allocates 760 bytes up front.
        self._frames: list[bytes] = []
        self._head = 0
        self._waiter: asyncio.Future[None] | None = None
        self._ended: StreamEnded | None = None
        self._established = False

    # --- the relay's side ---

    def deliver(self, frame: bytes) -> None:
        if self._ended is not None:
            return
        if len(self._frames) - self._head >= self._max:
            self.end(StreamEnded(grpc.StatusCode.RESOURCE_EXHAUSTED, "the client did not keep up"))
            return
        self._frames.append(frame)
        self._wake()

    def end(self, ended: StreamEnded) -> None:
        if self._ended is None:
            ended.established = ended.established and self._established
            self._ended = ended
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- SessionLink ---

    async def receive(self) -> stream_pb2.ConnectResponse | None:
        while self._head == len(self._frames) or self._slow:
            if self._ended is not None:
                if self._ended.status is grpc.StatusCode.OK:
                    return None
                raise self._ended
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frame = self._frames[self._head]
        self._head += 1
        if self._head == len(self._frames):
            self._frames.clear()
            self._head = 0
        message = stream_pb2.ConnectResponse.FromString(frame)
        self._established = True
        return message

    @property
    def _slow(self) -> bool:
        return self._ended is not None and self._ended.status is grpc.StatusCode.RESOURCE_EXHAUSTED

    async def send(self, request: stream_pb2.ConnectRequest) -> bool:
        if self._ended is not None:
            return False
        self._relay.send(
            relay_pb2.RelayRequest(
                command=relay_pb2.RelayCommand(session_id=self._sid, request=request)
            )
        )
        return True

    def close(self) -> None:
        if not self._relay.forget(self._sid):
            return
        undelivered = [
            msg.notification.notification.id
            for msg in map(stream_pb2.ConnectResponse.FromString, self._frames[self._head :])
            if msg.WhichOneof("kind") == "notification"
        ]
        self._frames.clear()
        self._head = 0
        if self._ended is None or self._slow:
            self._relay.send(
                relay_pb2.RelayRequest(
                    close=relay_pb2.RelayClose(session_id=self._sid, undelivered_ids=undelivered)
                )
            )
        self.end(StreamEnded(grpc.StatusCode.CANCELLED, "closed"))


class _RelayStream:
    """One ``Relay`` call and the session links it carries."""

    def __init__(self, stub: relay_pb2_grpc.SessionRelayServiceAsyncStub) -> None:
        self._call = stub.Relay()
        self._links: dict[int, RelaySessionLink] = {}
        self._outbox: deque[relay_pb2.RelayRequest] = deque()
        self._wake = asyncio.Event()
        self.broken = False
        self._tasks = (
            asyncio.create_task(self._read(), name="tidings-relay-read"),
            asyncio.create_task(self._write(), name="tidings-relay-write"),
        )

    def open(self, sid: int, metadata: Metadata, link: RelaySessionLink) -> None:
        self._links[sid] = link
        self.send(
            relay_pb2.RelayRequest(
                open=relay_pb2.RelayOpen(session_id=sid, metadata=dict(metadata))
            )
        )

    def send(self, request: relay_pb2.RelayRequest) -> None:
        if not self.broken:
            self._outbox.append(request)
            self._wake.set()

    def forget(self, sid: int) -> bool:
        """Drop a link; whether it was still there."""
        return self._links.pop(sid, None) is not None

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    await self._call.write(self._outbox.popleft())
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the reader reports how the call ended

    async def _read(self) -> None:
        ended = StreamEnded(grpc.StatusCode.UNAVAILABLE, "the engine closed the relay")
        try:
            async for response in self._call:
                for frame in response.frames:
                    link = self._links.get(frame.session_id)
                    if link is None:
                        continue
                    if frame.HasField("end"):
                        del self._links[frame.session_id]
                        link.end(_ended(frame.end))
                    else:
                        link.deliver(frame.event)
        except grpc.aio.AioRpcError as exc:
            ended = StreamEnded(exc.code(), exc.details() or "", established=True)
        finally:
            self.broken = True
            links, self._links = self._links, {}
            for link in links.values():
                link.end(StreamEnded(ended.status, ended.details))

    async def close(self) -> None:
        self._call.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


_STATUS_BY_CODE = {status.value[0]: status for status in grpc.StatusCode}


def _ended(end: relay_pb2.RelayEnd) -> StreamEnded:
    return StreamEnded(
        _STATUS_BY_CODE.get(end.code, grpc.StatusCode.UNKNOWN),
        end.message,
        error_code=end.error_code or None,
    )


class Upstream:
    """The engine's gRPC services over one channel. Create and close inside the loop."""

    def __init__(self, target: str, *, max_session_buffer: int = 1000) -> None:
        self.target = target
        self.max_session_buffer = max_session_buffer
        self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stream = stream_pb2_grpc.NotificationStreamStub(self.channel)
        self.admin = admin_pb2_grpc.NotificationAdminServiceStub(self.channel)
        self.relay = relay_pb2_grpc.SessionRelayServiceStub(self.channel)
        self._relay: _RelayStream | None = None
        self._next_sid = 0
        self._health_check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

    def open_session(self, metadata: Metadata) -> SessionLink:
        """Start a live session with the caller's metadata; the engine speaks first."""
        if self._relay is None or self._relay.broken:
            self._relay = _RelayStream(self.relay)
        self._next_sid += 1
        link = RelaySessionLink(self._relay, self._next_sid, self.max_session_buffer)
        self._relay.open(self._next_sid, metadata, link)
        return link

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
        if self._relay is not None:
            await self._relay.close()
        await self.channel.close()
